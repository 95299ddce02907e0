"""Quantizers with a *continuous*, learnable bit count (akhlaghi2020 §4.4.1, §4.5.2, §4.5.3).

Two number formats, both rounding to nearest (ties to even):

- **fixed point** (Eq. 4.1): ``m`` integer bits (fixed), ``q`` fractional bits and a sign bit,
  ``n = 1 + m + q`` bits in all; value ``round(x·2^q)/2^q`` clipped to ``[-2^m, 2^m - 2^-q]``.
  At integer ``q`` this is :func:`axlib.quant.quantize` ``(x, 1 + m + q, m)`` exactly.
- **BFloat mantissa** (§4.5.3): keep the sign and the 8 exponent bits of float32 and round the
  23-bit mantissa to ``q ∈ [0, 7]`` bits (``q = 7`` is BFloat16 itself); ``n = 9 + q`` bits.
  Implemented with int32 bit operations on the float32 pattern (exact; NaN/inf are left alone).

A continuous ``q`` mixes the two neighbouring integer formats,
``Q_q(x) = (1 - φ)·Q_⌊q⌋(x) + φ·Q_⌈q⌉(x)``, ``φ = q - ⌊q⌋``, so the output moves linearly between
them and ``∂Q/∂q = Q_⌈q⌉(x) - Q_⌊q⌋(x)``; rounding is straight-through in ``x`` (``∂Q/∂x = 1``).
``q`` may be a scalar (per layer) or a vector broadcast along one dimension of ``x`` (per output
filter of a weight tensor: ``dim=0``; per input channel of a feature map: ``dim=1``).
"""

from __future__ import annotations

import torch

from axlib import validate

FORMATS = ("fixed", "bfloat")
#: Largest mantissa bits of the BFloat format (BFloat16 keeps 7 of float32's 23).
BFLOAT_MANTISSA = 7
FLOAT32_MANTISSA = 23
#: Bit counts a learnable quantizer may take (Eq. 4.10 parameters are clamped into this range).
BITS_RANGE = (0.0, 32.0)


def fixed_point(x: torch.Tensor, frac_bits: torch.Tensor | int, int_bits: int) -> torch.Tensor:
    """Eq. (4.1) with clipping: ``round(x·2^q)/2^q`` in ``[-2^m, 2^m - 2^-q]``, ``q`` integer-valued.

    ``frac_bits`` is an int or an integer-valued tensor broadcastable against ``x``.
    """
    scale = torch.as_tensor(2.0, dtype=x.dtype, device=x.device) ** torch.as_tensor(frac_bits, dtype=x.dtype,
                                                                                        device=x.device)
    hi = 2.0 ** int_bits - 1.0 / scale
    return torch.minimum(torch.clamp(torch.round(x * scale) / scale, min=-(2.0 ** int_bits)), hi)


def bfloat_mantissa(x: torch.Tensor, mant_bits: torch.Tensor | int) -> torch.Tensor:
    """Round the float32 mantissa of ``x`` to ``mant_bits`` ∈ [0, 23] bits, nearest-even (§4.5.3).

    Sign and exponent are kept (a carry out of the mantissa increments the exponent, as a hardware
    rounder does); the result is float32.
    """
    xf = x.detach().float().contiguous()
    bits = xf.view(torch.int32)
    m = torch.as_tensor(mant_bits)
    if m.numel() == 1:                                  # one bit count: scalar shifts (fast path)
        drop = FLOAT32_MANTISSA - int(m)
        if drop <= 0:
            return x.detach().float().to(x.dtype)
        lsb = torch.bitwise_and(torch.bitwise_right_shift(bits, drop), 1)
        rounded = torch.bitwise_and(bits + ((1 << (drop - 1)) - 1) + lsb, ~((1 << drop) - 1))
        return torch.where(torch.isfinite(xf), rounded, bits).view(torch.float32).to(x.dtype)
    drop = (FLOAT32_MANTISSA - torch.as_tensor(mant_bits, device=x.device)).to(torch.int32).expand_as(bits)
    one = torch.ones_like(bits)
    half = torch.where(drop > 0, torch.bitwise_left_shift(one, (drop - 1).clamp(min=0)) - 1, torch.zeros_like(bits))
    lsb = torch.where(drop > 0, torch.bitwise_and(torch.bitwise_right_shift(bits, drop), one), torch.zeros_like(bits))
    mask = torch.bitwise_not(torch.bitwise_left_shift(one, drop) - 1)
    rounded = torch.bitwise_and(bits + half + lsb, mask)
    finite = torch.isfinite(xf)
    out = torch.where(finite, rounded, bits).view(torch.float32)
    return out.to(x.dtype)


def _quantize(x: torch.Tensor, bits: torch.Tensor, fmt: str, int_bits: int) -> torch.Tensor:
    return fixed_point(x, bits, int_bits) if fmt == "fixed" else bfloat_mantissa(x, bits)


def _broadcast(q: torch.Tensor, x: torch.Tensor, dim: int | None) -> torch.Tensor:
    if q.dim() == 0:
        return q
    if dim is None or q.numel() != x.shape[dim]:
        raise ValueError(f"per-channel bits of length {q.numel()} do not match dimension {dim} of shape "
                         f"{tuple(x.shape)}")
    shape = [1] * x.dim()
    shape[dim] = q.numel()
    return q.view(shape)


def learnable_quantize(x: torch.Tensor, q: torch.Tensor, fmt: str = "fixed", int_bits: int = 0,
                       dim: int | None = None) -> torch.Tensor:
    """``Q_q(x)`` with a continuous bit count ``q`` (module docstring); differentiable in ``x`` and ``q``.

    ``fmt="fixed"``: ``q`` fractional bits, ``int_bits`` integer bits (Eq. 4.1). ``fmt="bfloat"``:
    ``q`` mantissa bits (``int_bits`` unused). ``q`` is clamped to ``[0, 32]`` (fixed) or
    ``[0, 7]`` (bfloat) before use; scalar ``q`` per layer, a vector along ``dim`` per channel.
    """
    validate.choice("fmt", fmt, FORMATS)
    top = BITS_RANGE[1] if fmt == "fixed" else BFLOAT_MANTISSA
    q = _broadcast(q.clamp(0.0, top), x, dim)
    if not torch.is_grad_enabled() and bool((q == torch.floor(q)).all()):
        return _quantize(x, q, fmt, int_bits)          # inference at integer bits: one format, same value
    lo_bits = torch.floor(q.detach())
    hi_bits = torch.ceil(q.detach())
    phi = q - lo_bits
    lo = _quantize(x.detach(), lo_bits, fmt, int_bits)
    hi = _quantize(x.detach(), hi_bits, fmt, int_bits)
    return _ste(x, lo, hi, phi)


def _ste(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """``lo + φ·(hi - lo)`` in value; gradient 1 to ``x`` and ``hi - lo`` to ``φ``."""
    return (x - x.detach()) + lo + phi * (hi - lo)


def word_bits(q: torch.Tensor, fmt: str, int_bits: int = 0) -> torch.Tensor:
    """Bits of one stored word: ``1 + m + q`` (fixed point, Eq. 4.1) or ``9 + q`` (BFloat, §4.5.3)."""
    validate.choice("fmt", fmt, FORMATS)
    return 1 + int_bits + q if fmt == "fixed" else 9 + q
