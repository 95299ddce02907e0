"""Conv2d/Linear layers whose products go through an approximate multiplier (delaparra2021 §3,
ponzina2022 §3).

Inputs and weights are quantized to integer codes per Eq. (1) of delaparra2021:
``Z̃ = round(Z / Δ_Z)`` clipped to ``[-2^(bw-1), 2^(bw-1) - 1]`` (signed) — and to
``[0, 2^bw - 1]`` for non-negative activations (post-ReLU, unsigned). Every product of an
activation code and a weight code goes through the multiplier's truth table (exact integer sums;
``axlib.kernels.dispatch`` picks the numba LUT kernel or the exact low-rank torch path, whichever
it measured faster), the sum is rescaled by ``Δ_x·Δ_w`` and the float bias is added.

Quantization schemes (:data:`SCHEMES`, weight bits / activation bits): ``"8/8"`` (delaparra2021),
``"8/16"`` and ``"4/8"`` (ponzina2022). 8x8 tables (:class:`axlib.multipliers.Multiplier`) serve
8/8 and 4/8 layers (4-bit weight codes are a subset of the table's 8-bit range); 8/16 layers need
an 8-bit x 16-bit multiplier (:class:`axlib.multipliers.wide.ByteSlicedMultiplier`: Exact16, MulF6B,
Mul8VH), computed as one LUT pass per byte of the activation codes, shifted and summed exactly.

Signedness (recorded in ``convention``): signed circuits (``mul8s``) take both operands as int8;
unsigned circuits are used in sign-magnitude, ``sign(x)·sign(w)·U[|x|, |w|]``. Non-negative
activations through a signed 8-bit circuit are limited to 7-bit codes 0..127 (step ``max/127``).

Training uses a straight-through estimator: the forward value is the approximate output, the
gradient is that of the exact product of the dequantized operands.

Step sizes ``Δ`` come from a calibration pass: ``Δ = max|Z| / (2^(bw-1) - 1)`` for signed
operands and ``max Z / (2^bw - 1)`` for unsigned activations (neither paper states its rule).
Works on CPU and CUDA (the LUT kernel itself runs on the host).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from axlib import quant
from axlib.kernels import dispatch
from axlib.multipliers import Multiplier
from axlib.multipliers.wide import ByteSlicedMultiplier
from axlib.validate import ParameterError


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


#: The papers' quantization schemes: name -> (weight bits, activation bits). Any "W/A" string with
#: widths in 2..16 is accepted by :func:`scheme_bits`.
SCHEMES = {"8/8": (8, 8), "8/16": (8, 16), "4/8": (4, 8)}


def scheme_bits(scheme: str) -> tuple[int, int]:
    """``"W/A"`` -> (weight bits, activation bits), e.g. ``"8/16"`` -> (8, 16)."""
    parts = str(scheme).split("/")
    if len(parts) != 2 or not all(p.isdigit() and 2 <= int(p) <= 16 for p in parts):
        raise ParameterError(f"parameter scheme has invalid value {scheme!r}; allowed: 'W/A' with bit-widths in "
                             f"2..16, e.g. {list(SCHEMES)}")
    return int(parts[0]), int(parts[1])


def activation_code_range(multiplier, a_bits: int, a_signed: bool) -> tuple[int, int]:
    """Integer code range of a layer's activations for ``multiplier`` (None: fake quantization)."""
    if a_signed:
        return -(2 ** (a_bits - 1)), 2 ** (a_bits - 1) - 1
    if isinstance(multiplier, Multiplier) and multiplier.signed:
        return 0, min(2**a_bits - 1, multiplier.operand_range("a")[1])
    return 0, 2**a_bits - 1


def _check_bits(multiplier, a_bits: int, w_bits: int) -> None:
    if isinstance(multiplier, ByteSlicedMultiplier):
        if w_bits > multiplier.narrow_bits or a_bits > multiplier.wide_bits:
            raise ValueError(f"{multiplier.name} multiplies {multiplier.narrow_bits}-bit weights by "
                             f"{multiplier.wide_bits}-bit activations; got {w_bits}-bit weights, {a_bits}-bit activations")
    elif isinstance(multiplier, Multiplier):
        if w_bits > multiplier.w_bits or a_bits > multiplier.a_bits:
            raise ValueError(f"{multiplier.name} is a {multiplier.a_bits}x{multiplier.w_bits} multiplier; it cannot take "
                             f"{a_bits}-bit activations and {w_bits}-bit weights (use scheme 8/8 or 4/8, or an 8x16 "
                             f"multiplier for 8/16)")
    elif multiplier is not None:
        raise TypeError(f"multiplier must be a Multiplier, a ByteSlicedMultiplier or None, got {type(multiplier).__name__}")


class ApproxLayer(nn.Module):
    """Wraps a Conv2d or Linear. ``multiplier=None`` gives the exact fake-quantized float path.

    ``a_step`` / ``w_step``: quantization steps Δ of inputs and weights; ``a_signed``: whether the
    input codes are signed (first layer on normalised images) or unsigned (after ReLU); ``bits`` /
    ``w_bits``: activation / weight bit-widths (``w_bits`` defaults to ``bits``); ``path``: product
    path for :func:`axlib.kernels.dispatch.conv2d` (None: ``AXLIB_APPROX_PATH``, default "auto").
    :meth:`exact_products` gives the exact quantized output before the bias (the reference of the
    error statistics in :mod:`axlib.nn.errmodel`).
    """

    def __init__(self, layer: nn.Conv2d | nn.Linear, multiplier, a_step: float, w_step: float,
                 a_signed: bool, bits: int = 8, w_bits: int | None = None, path: str | None = None):
        super().__init__()
        if not isinstance(layer, (nn.Conv2d, nn.Linear)):
            raise TypeError(f"ApproxLayer wraps Conv2d or Linear, got {type(layer).__name__}")
        if isinstance(layer, nn.Conv2d) and (layer.dilation != (1, 1) or layer.padding_mode != "zeros"):
            raise ValueError("ApproxLayer supports zero padding and dilation 1 only")
        w_bits = bits if w_bits is None else w_bits
        _check_bits(multiplier, bits, w_bits)
        self.layer, self.multiplier, self.bits, self.w_bits, self.path = layer, multiplier, bits, w_bits, path
        self.a_step, self.w_step, self.a_signed = float(a_step), float(w_step), bool(a_signed)
        self.a_lo, self.a_hi = activation_code_range(multiplier, bits, a_signed)
        self.passes: list[tuple[int, dispatch.PreparedTable, int]] = []   # (shift, table, byte index or -1)
        #: optional ``f(weight codes) -> factor`` multiplied into the weight codes of the exact path each
        #: forward (the weight-error model of delaparra2021 Eq. 16, :mod:`axlib.nn.errmodel`)
        self.weight_error = None
        if multiplier is None:
            self.convention = "exact (fake-quantized float)"
        elif isinstance(multiplier, ByteSlicedMultiplier):
            for k, (shift, table) in enumerate(multiplier.byte_pass_tables()):
                self.passes.append((shift, dispatch.PreparedTable(table, 255, 128, f"{multiplier.name}[byte {k}]"), k))
            self.convention = (f"sign-magnitude around {multiplier.name}: one LUT pass per activation byte "
                               f"(signed byte values -255..255), shifted by 8 bits per byte")
        else:
            table, a_off, w_off, self.convention = operand_table(multiplier, a_signed)
            self.passes.append((0, dispatch.PreparedTable(table, a_off, w_off, multiplier.name), -1))

    def extra_repr(self) -> str:
        name = self.multiplier.name if self.multiplier is not None else "exact"
        return f"multiplier={name}, w_bits={self.w_bits}, a_bits={self.bits}, a_signed={self.a_signed}"

    def _linear_op(self, x, w):
        if isinstance(self.layer, nn.Conv2d):
            return F.conv2d(x, w, None, self.layer.stride, self.layer.padding, 1, self.layer.groups)
        return F.linear(x, w)

    def _integer_products(self, xi: torch.Tensor, wi: torch.Tensor) -> torch.Tensor:
        """Σ over the passes of the LUT convolution / GEMM of the codes (int64)."""
        acc = None
        for shift, table, byte in self.passes:
            xk = xi if byte < 0 else torch.sign(xi) * ((xi.abs() >> (8 * byte)) & 0xFF)
            if isinstance(self.layer, nn.Conv2d):
                part = dispatch.conv2d(xk, wi, table, self.layer.stride, self.layer.padding, self.layer.groups, self.path)
            else:
                part = dispatch.linear(xk, wi, table, self.path)
            part = part << shift if shift else part
            acc = part if acc is None else acc + part
        return acc

    def _codes(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xq = quantize_codes(x, self.bits, self.a_step, self.a_signed).clamp(self.a_lo, self.a_hi)
        wq = quantize_codes(self.layer.weight, self.w_bits, self.w_step, True)
        return xq, wq

    def exact_products(self, x: torch.Tensor) -> torch.Tensor:
        """The exact quantized layer output before the bias, ``Δ_x·Δ_w·(X̃ ∗ W̃)`` (float output units,
        differentiable through the straight-through codes); ``weight_error`` is not applied."""
        xq, wq = self._codes(x)
        return self._linear_op(xq, wq) * (self.a_step * self.w_step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq, wq = self._codes(x)
        if self.weight_error is not None:
            if self.multiplier is not None:
                raise ValueError("weight_error multiplies the weight codes of the exact path; this layer uses "
                                 f"{self.multiplier.name}")
            wq = wq * self.weight_error(wq)
        scale = self.a_step * self.w_step
        exact = None
        if self.multiplier is None or torch.is_grad_enabled():
            exact = self._linear_op(xq, wq) * scale
        if self.multiplier is None:
            out = exact
        else:
            acc = self._integer_products(xq.detach().round().long(), wq.detach().round().long())
            approx = acc.to(torch.float64).to(x.device, x.dtype) * scale
            out = approx if exact is None else _LutProduct.apply(approx, exact)
        if self.layer.bias is not None:
            shape = (1, -1, 1, 1) if isinstance(self.layer, nn.Conv2d) else (1, -1)
            out = out + self.layer.bias.view(shape)
        return out


@dataclass(frozen=True)
class LayerConfig:
    """How one layer is approximated: its multiplier (None: exact fake quantization) and scheme."""

    multiplier: Multiplier | ByteSlicedMultiplier | None
    scheme: str = "8/8"

    def __post_init__(self):
        scheme_bits(self.scheme)


def _replace(model: nn.Module, modules: Mapping[str, nn.Module], name: str, new: nn.Module) -> None:
    """Put ``new`` in place of the submodule ``name`` of ``model`` (``modules``: its named modules)."""
    parent_name, _, child = name.rpartition(".")
    setattr(modules[parent_name] if parent_name else model, child, new)


@torch.no_grad()
def approximate_layers(model: nn.Module, calib: Iterable, config: Mapping[str, LayerConfig], fold_bn: bool = True,
                       path: str | None = None) -> nn.Module:
    """A copy of ``model`` where every layer named in ``config`` is an :class:`ApproxLayer` with its
    own multiplier and scheme (heterogeneous configurations, ponzina2022); the other layers stay
    float. Steps are calibrated on ``calib`` batches of ``(x, y)``; batch norm is folded first."""
    model = quant.fold_batchnorm(model) if fold_bn else copy.deepcopy(model).eval()
    names = quant.layer_names(model)
    unknown = sorted(set(config) - set(names))
    if unknown:
        raise ParameterError(f"parameter layers names unknown layer(s) {unknown}; layers: {names}")
    stats = quant.calibrate(model, calib)
    modules = dict(model.named_modules())
    for n, cfg in config.items():
        w_bits, a_bits = scheme_bits(cfg.scheme)
        layer = modules[n]
        a_signed = stats[n]["input_min"] < 0
        _, a_hi = activation_code_range(cfg.multiplier, a_bits, a_signed)
        a_step = max(stats[n]["input_max_abs"], 1e-12) / a_hi
        w_step = max(stats[n]["weight_max_abs"], 1e-12) / (2 ** (w_bits - 1) - 1)
        _replace(model, modules, n, ApproxLayer(layer, cfg.multiplier, a_step, w_step, a_signed, a_bits, w_bits, path))
    return model


def approximate(model: nn.Module, multiplier, calib: Iterable, bits: int = 8, layers: list[str] | None = None,
                fold_bn: bool = True, scheme: str | None = None, path: str | None = None) -> nn.Module:
    """A copy of ``model`` with the chosen Conv2d/Linear layers (default: all) replaced by
    :class:`ApproxLayer` using ``multiplier`` (None: exact fake quantization), steps calibrated
    on ``calib`` batches of ``(x, y)``. Batch norm is folded into the convolutions first.

    ``scheme`` (``"8/8"``, ``"8/16"``, ``"4/8"``, or any ``"W/A"``: weight/activation bits) overrides
    ``bits``, which sets both widths."""
    names = quant.layer_names(quant.fold_batchnorm(model) if fold_bn else model)
    chosen = names if layers is None else list(layers)
    scheme = f"{bits}/{bits}" if scheme is None else scheme
    return approximate_layers(model, calib, {n: LayerConfig(multiplier, scheme) for n in chosen}, fold_bn, path)


def with_multiplier(model: nn.Module, multiplier, layers: Iterable[str] | None = None) -> nn.Module:
    """A copy of ``model`` whose :class:`ApproxLayer` modules (default: all; else those named) compute
    with ``multiplier`` (None: exact fake quantization), keeping their weights, steps, widths and
    activation code range (a multiplier that needs another code range is a ``ValueError``).

    Used to evaluate a network retrained with one error model by behavioural simulation, or with
    another multiplier (delaparra2021 Table 7)."""
    model = copy.deepcopy(model)
    found = {n: m for n, m in model.named_modules() if isinstance(m, ApproxLayer)}
    chosen = list(found) if layers is None else list(layers)
    unknown = [n for n in chosen if n not in found]
    if unknown:
        raise ParameterError(f"parameter layers names unknown approximated layer(s) {unknown}; "
                             f"approximated layers: {list(found)}")
    modules = dict(model.named_modules())
    for n in chosen:
        m = found[n]
        new = ApproxLayer(m.layer, multiplier, m.a_step, m.w_step, m.a_signed, m.bits, m.w_bits, m.path)
        if multiplier is None:
            new.a_lo, new.a_hi = m.a_lo, m.a_hi          # the exact path keeps the quantization grid
        elif (new.a_lo, new.a_hi) != (m.a_lo, m.a_hi):
            raise ValueError(f"layer {n}: {getattr(multiplier, 'name', multiplier)} takes activation codes "
                             f"{new.a_lo}..{new.a_hi}, the layer was calibrated for {m.a_lo}..{m.a_hi}; "
                             "calibrate a new model with axlib.nn.approximate instead")
        _replace(model, modules, n, new)
    return model
