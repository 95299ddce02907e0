"""Quantize every Conv2d/Linear layer's input and weights of a torch model.

Workflow (moons2016 §3.1): ``calibrate`` records the largest |input| and |weight| of each layer
over a calibration pass; ``plan`` turns them into power-of-two exponents, one for the whole
network (``mode="global"``: the maximum over all inputs *and* weights) or one per layer input
and one per layer weights (``mode="per_layer"``), with bit-widths uniform or per layer;
``quantized(model, plan)`` runs the model with those quantizers applied and restores it after.
Biases and everything outside conv/linear layers stay in float (accumulator precision).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from axlib import validate
from axlib.quant.fixedpoint import BITS_RANGE, pow2_exponent, quantize

MODES = ("global", "per_layer")
QUANTIZED_TYPES = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class LayerQuant:
    """Quantizer settings of one layer; ``None`` bits leave that operand in float."""

    input_bits: int | None
    input_exponent: int
    weight_bits: int | None
    weight_exponent: int


def layer_names(model: nn.Module) -> list[str]:
    """Names of the Conv2d/Linear layers of ``model``, in definition (= execution) order."""
    return [name for name, m in model.named_modules() if isinstance(m, QUANTIZED_TYPES)]


@torch.no_grad()
def calibrate(model: nn.Module, batches: Iterable) -> dict[str, dict[str, float]]:
    """Largest |input| and |weight| per quantized layer over all ``batches`` of ``(x, y)``.

    Returns ``{layer: {"input_max_abs": float, "input_min": float, "weight_max_abs": float}}``.
    """
    model.eval()
    modules = dict(model.named_modules())
    names = layer_names(model)
    stats = {n: {"input_max_abs": 0.0, "input_min": float("inf"), "weight_max_abs": modules[n].weight.abs().max().item()}
             for n in names}
    hooks = []
    for n in names:
        def hook(_m, args, n=n):
            stats[n]["input_max_abs"] = max(stats[n]["input_max_abs"], args[0].abs().max().item())
            stats[n]["input_min"] = min(stats[n]["input_min"], args[0].min().item())
        hooks.append(modules[n].register_forward_pre_hook(hook))
    try:
        for xb, _ in batches:
            model(xb)
    finally:
        for h in hooks:
            h.remove()
    return stats


def plan(ranges: Mapping[str, Mapping[str, float]], mode: str,
         input_bits: int | None | Mapping[str, int | None],
         weight_bits: int | None | Mapping[str, int | None]) -> dict[str, LayerQuant]:
    """Quantization plan from calibrated ``ranges``.

    ``input_bits`` / ``weight_bits``: one int for all layers, ``None`` for float, or a mapping
    layer -> bits (layers missing from it stay float).
    """
    validate.choice("mode", mode, MODES)
    names = list(ranges)
    in_bits = _per_layer("input_bits", input_bits, names)
    w_bits = _per_layer("weight_bits", weight_bits, names)
    if mode == "global":
        g = pow2_exponent(max(max(r["input_max_abs"], r["weight_max_abs"]) for r in ranges.values()))
        exps = {n: (g, g) for n in names}
    else:
        exps = {n: (pow2_exponent(ranges[n]["input_max_abs"]), pow2_exponent(ranges[n]["weight_max_abs"]))
                for n in names}
    return {n: LayerQuant(in_bits[n], exps[n][0], w_bits[n], exps[n][1]) for n in names}


def _per_layer(name: str, bits, layers: list[str]) -> dict[str, int | None]:
    if bits is None or isinstance(bits, int):
        mapping = {layer: bits for layer in layers}
    else:
        unknown = sorted(set(bits) - set(layers))
        if unknown:
            raise validate.ParameterError(f"parameter {name} names unknown layer(s) {unknown}; layers: {layers}")
        mapping = {layer: bits.get(layer) for layer in layers}
    for layer, b in mapping.items():
        if b is not None:
            validate.integer(f"{name}[{layer}]", b, *BITS_RANGE)
    return mapping


@contextlib.contextmanager
def quantized(model: nn.Module, layer_plan: Mapping[str, LayerQuant]):
    """Run ``model`` with quantized weights and inputs inside the ``with`` block; restore after."""
    modules = dict(model.named_modules())
    saved, hooks = {}, []
    try:
        for name, q in layer_plan.items():
            m = modules[name]
            if q.weight_bits is not None:
                saved[name] = m.weight.data.clone()
                m.weight.data.copy_(quantize(m.weight.data, q.weight_bits, q.weight_exponent))
            if q.input_bits is not None:
                def hook(_m, args, q=q):
                    return (quantize(args[0], q.input_bits, q.input_exponent),) + tuple(args[1:])
                hooks.append(m.register_forward_pre_hook(hook))
        yield model
    finally:
        for h in hooks:
            h.remove()
        for name, w in saved.items():
            modules[name].weight.data.copy_(w)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with each BatchNorm2d folded into the conv it follows.

    Pairs are found by name within a module: ``convX`` followed by ``bnX`` (the CIFAR ResNet
    layout). The folded conv gets ``w' = w·γ/σ`` and bias ``b' = β + (b - μ)·γ/σ``, the BN
    becomes Identity, so the network computes the same function (eval mode) and the quantizer
    sees the weights an accelerator would hold.
    """
    model = copy.deepcopy(model).eval()
    for parent in model.modules():
        children = dict(parent.named_children())
        for cname, conv in children.items():
            bn = children.get("bn" + cname.removeprefix("conv")) if cname.startswith("conv") else None
            if not isinstance(conv, nn.Conv2d) or not isinstance(bn, nn.BatchNorm2d):
                continue
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                               conv.padding, conv.dilation, conv.groups, bias=True)
            folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            folded.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
            setattr(parent, cname, folded)
            setattr(parent, "bn" + cname.removeprefix("conv"), nn.Identity())
    return model
