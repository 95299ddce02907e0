"""Conv2d/Linear layers whose products go through an approximate multiplier (delaparra2021 §3).

Inputs and weights are quantized to integer codes per Eq. (1) of delaparra2021:
``Z̃ = round(Z / Δ_Z)`` clipped to ``[-2^(bw-1), 2^(bw-1) - 1]`` (signed) — and to
``[0, 2^bw - 1]`` for non-negative activations (post-ReLU, unsigned). Every product of an
activation code and a weight code is a truth-table lookup (``axlib.kernels.lut_conv2d`` /
``lut_gemm``, exact integer sums), the sum is rescaled by ``Δ_x·Δ_w`` and the float bias is added.

Signedness (recorded in :func:`operand_table`): signed circuits (``mul8s``) take both operands as
int8; unsigned circuits are used in sign-magnitude, ``sign(x)·sign(w)·U[|x|, |w|]``.

Training uses a straight-through estimator: the forward value is the approximate output, the
gradient is that of the exact product of the dequantized operands.

Step sizes ``Δ`` come from a calibration pass: ``Δ = max|Z| / (2^(bw-1) - 1)`` for signed
operands and ``max Z / (2^bw - 1)`` for unsigned activations (the paper does not state its rule).
The LUT path runs on CPU (numba); CUDA tensors are moved to the CPU for it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from axlib import quant
from axlib.kernels import lut_conv2d, lut_gemm
from axlib.multipliers import Multiplier


def quantize_codes(z: torch.Tensor, bits: int, step: float, signed: bool = True) -> torch.Tensor:
    """Integer codes of Eq. (1), delaparra2021 (float tensor holding integers).

    Rounding passes gradients straight through (STE), clipping blocks them outside the range.
    """
    lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    q = z / step
    return (q + (torch.round(q) - q).detach()).clamp(lo, hi)


def operand_table(mult: Multiplier, a_signed: bool) -> tuple[np.ndarray, int, int, str]:
    """``(table, a_offset, w_offset, convention)`` for activation codes (signed or not) x int8 weights."""
    if mult.signed:
        if not a_signed:
            # unsigned activations through a signed circuit: codes stay within [0, 127] (7 bits)
            return mult.table, mult.a_offset, mult.w_offset, f"{mult.convention}; activations limited to 0..127"
        return mult.table, mult.a_offset, mult.w_offset, mult.convention
    na, nw = mult.table.shape
    w = np.arange(nw) - nw // 2
    if a_signed:
        a = np.arange(na) - na // 2
        t = np.sign(a)[:, None] * np.sign(w)[None, :] * mult.table[np.abs(a)[:, None], np.abs(w)[None, :]]
        return t, na // 2, nw // 2, f"sign-magnitude around {mult.name} (both operands)"
    t = np.sign(w)[None, :] * mult.table[:, np.abs(w)]
    return t, 0, nw // 2, f"unsigned activations x sign-magnitude weights around {mult.name}"


class _LutProduct(torch.autograd.Function):
    """Forward: approximate integer result; backward: gradient of the exact product (STE)."""

    @staticmethod
    def forward(ctx, approx: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
        return approx

    @staticmethod
    def backward(ctx, grad):
        return None, grad


class ApproxLayer(nn.Module):
    """Wraps a Conv2d or Linear. ``multiplier=None`` gives the exact fake-quantized float path.

    ``a_step`` / ``w_step``: quantization steps Δ of inputs and weights; ``a_signed``: whether the
    input codes are signed (first layer on normalised images) or unsigned (after ReLU).
    """

    def __init__(self, layer: nn.Conv2d | nn.Linear, multiplier: Multiplier | None, a_step: float, w_step: float,
                 a_signed: bool, bits: int = 8):
        super().__init__()
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            raise TypeError(f"ApproxLayer wraps Conv2d or Linear, got {type(layer).__name__}")
        if isinstance(layer, nn.Conv2d) and (layer.dilation != (1, 1) or layer.padding_mode != "zeros"):
            raise ValueError("ApproxLayer supports zero padding and dilation 1 only")
        self.layer, self.multiplier, self.bits = layer, multiplier, bits
        self.a_step, self.w_step, self.a_signed = float(a_step), float(w_step), bool(a_signed)
        if multiplier is not None:
            self.table, self.a_offset, self.w_offset, self.convention = operand_table(multiplier, a_signed)
        else:
            self.convention = "exact (fake-quantized float)"

    def extra_repr(self) -> str:
        name = self.multiplier.name if self.multiplier is not None else "exact"
        return f"multiplier={name}, bits={self.bits}, a_signed={self.a_signed}"

    def _linear_op(self, x, w):
        if isinstance(self.layer, nn.Conv2d):
            return F.conv2d(x, w, None, self.layer.stride, self.layer.padding, 1, self.layer.groups)
        return F.linear(x, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = quantize_codes(x, self.bits, self.a_step, self.a_signed)
        if self.multiplier is not None and self.multiplier.signed and not self.a_signed:
            xq = xq.clamp(max=2 ** (self.bits - 1) - 1)
        wq = quantize_codes(self.layer.weight, self.bits, self.w_step, True)
        scale = self.a_step * self.w_step
        exact = None
        if self.multiplier is None or torch.is_grad_enabled():
            exact = self._linear_op(xq, wq) * scale
        if self.multiplier is None:
            out = exact
        else:
            xi = xq.detach().to("cpu", torch.int64).numpy()
            wi = wq.detach().to("cpu", torch.int64).numpy()
            if isinstance(self.layer, nn.Conv2d):
                acc = lut_conv2d(xi, wi, self.table, self.layer.stride, self.layer.padding, self.layer.groups,
                                 self.a_offset, self.w_offset)
            else:
                acc = lut_gemm(xi, wi.T, self.table, self.a_offset, self.w_offset)
            approx = torch.from_numpy(acc.astype(np.float64)).to(x.device, x.dtype) * scale
            out = approx if exact is None else _LutProduct.apply(approx, exact)
        if self.layer.bias is not None:
            shape = (1, -1, 1, 1) if isinstance(self.layer, nn.Conv2d) else (1, -1)
            out = out + self.layer.bias.view(shape)
        return out


@torch.no_grad()
def approximate(model: nn.Module, multiplier: Multiplier | None, calib: Iterable, bits: int = 8,
                layers: list[str] | None = None, fold_bn: bool = True) -> nn.Module:
    """A copy of ``model`` with the chosen Conv2d/Linear layers (default: all) replaced by
    :class:`ApproxLayer` using ``multiplier`` (None: exact fake quantization), steps calibrated
    on ``calib`` batches of ``(x, y)``. Batch norm is folded into the convolutions first."""
    model = quant.fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    names = quant.layer_names(model)
    chosen = names if layers is None else list(layers)
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        from axlib.validate import ParameterError

        raise ParameterError(f"parameter layers names unknown layer(s) {unknown}; layers: {names}")
    stats = quant.calibrate(model, calib)
    modules = dict(model.named_modules())
    for n in chosen:
        layer = modules[n]
        a_signed = stats[n]["input_min"] < 0
        a_levels = 2 ** (bits - 1) - 1 if a_signed else 2**bits - 1
        a_step = max(stats[n]["input_max_abs"], 1e-12) / a_levels
        w_step = max(stats[n]["weight_max_abs"], 1e-12) / (2 ** (bits - 1) - 1)
        parent_name, _, child = n.rpartition(".")
        parent = modules[parent_name] if parent_name else model
        setattr(parent, child, ApproxLayer(layer, multiplier, a_step, w_step, a_signed, bits))
    return model
