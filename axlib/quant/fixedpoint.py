"""n-bit signed fixed point with a power-of-two scale (moons2016 §3.1, rescaling "rounded to
the next factor of two").

A value range ``[-2^e, 2^e)`` is covered by ``n`` bits in two's complement (sign bit included):
step ``Δ = 2^(e - n + 1)``, codes ``q ∈ [-2^(n-1), 2^(n-1) - 1]``, value ``q·Δ``. Rounding is to
the nearest code (ties to even); values outside the range are clipped to the extreme codes.
"""

from __future__ import annotations

import math

import torch

from axlib import validate

BITS_RANGE = (1, 32)


def pow2_exponent(max_abs: float) -> int:
    """Smallest integer ``e`` with ``2^e >= max_abs`` (``max_abs`` > 0; 0 gives ``e = 0``)."""
    if not math.isfinite(max_abs) or max_abs < 0:
        raise ValueError(f"max_abs must be finite and >= 0, got {max_abs}")
    if max_abs == 0:
        return 0
    m, e = math.frexp(max_abs)  # max_abs = m * 2^e, m in [0.5, 1)
    return e - 1 if m == 0.5 else e


def representable_range(bits: int, exponent: int) -> tuple[float, float, float]:
    """``(lowest, highest, step)`` of ``bits``-bit fixed point covering ``[-2^exponent, 2^exponent)``."""
    validate.integer("bits", bits, *BITS_RANGE)
    step = 2.0 ** (exponent - bits + 1)
    return -(2.0 ** (bits - 1)) * step, (2.0 ** (bits - 1) - 1) * step, step


def quantize(x: torch.Tensor, bits: int, exponent: int) -> torch.Tensor:
    """Round ``x`` to ``bits``-bit fixed point over ``[-2^exponent, 2^exponent)``, clipping outside.

    Exact in ``x``'s own floating-point type: dividing and multiplying by the power of two
    ``step`` only shifts exponents, and rounding a float to an integer is exact.
    """
    lo, hi, step = representable_range(bits, exponent)
    return (torch.round(x / step) * step).clamp_(lo, hi)
