"""Quantization-aware training (fake quantization during training), as ponzina2022 §4 use for the
last 20 training epochs of their networks (after Jacob et al. 2018).

Inside :func:`fake_quantized_training` every Conv2d/Linear computes with its weight and its input
rounded to the grid that :func:`axlib.nn.approximate_layers` will use at inference for the same
scheme: weights symmetric with ``Δ_w = max|W| / (2^(bw-1) - 1)``; inputs unsigned with
``Δ_x = max x / (2^ba - 1)`` when the batch has no negative value, else signed with
``Δ_x = max|x| / (2^(ba-1) - 1)``. The steps follow the current weights and the current batch (not a
calibration set: the one difference from inference). Rounding passes gradients straight through.
Batch-norm layers are trained unfolded (folding happens at inference).

The weights are wrapped with :mod:`torch.nn.utils.parametrize`, which keeps the same ``Parameter``
objects (an optimiser built before keeps working); :func:`plain_state_dict` gives the state dict
under the plain names, so checkpoints load into the unwrapped network.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn.utils import parametrize


def fake_quantize(z: torch.Tensor, bits: int, signed: bool) -> torch.Tensor:
    """``z`` rounded to the ``bits``-bit grid spanning its own largest magnitude (straight-through)."""
    hi = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    step = (z.detach().abs().max() if signed else z.detach().max()).clamp_min(1e-12) / hi
    q = z / step
    return (q + (torch.round(q) - q).detach()) * step


class _WeightFakeQuant(nn.Module):
    def __init__(self, bits: int):
        super().__init__()
        self.bits = bits

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return fake_quantize(w, self.bits, signed=True)


@contextlib.contextmanager
def fake_quantized_training(model: nn.Module, scheme: str = "8/16"):
    """Run ``model`` with fake-quantized weights and inputs (``scheme`` "W/A") inside the block."""
    from axlib.nn.approx import scheme_bits

    w_bits, a_bits = scheme_bits(scheme)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    hooks = []

    def quantize_input(_m, args):
        x = args[0]
        return (fake_quantize(x, a_bits, signed=bool((x.detach() < 0).any())),) + tuple(args[1:])

    try:
        for m in layers:
            parametrize.register_parametrization(m, "weight", _WeightFakeQuant(w_bits))
            hooks.append(m.register_forward_pre_hook(quantize_input))
        yield model
    finally:
        for h in hooks:
            h.remove()
        for m in layers:
            if parametrize.is_parametrized(m, "weight"):
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)


def plain_state_dict(model: nn.Module) -> dict:
    """``model.state_dict()`` with parametrized weights under their plain names (``conv1.weight``)."""
    return {k.replace("parametrizations.", "").replace(".original", ""): v for k, v in model.state_dict().items()}


def is_fake_quantized(model: nn.Module) -> bool:
    """Whether some Conv2d/Linear of ``model`` is inside :func:`fake_quantized_training` now."""
    return any(isinstance(m, (nn.Conv2d, nn.Linear)) and parametrize.is_parametrized(m, "weight")
               for m in model.modules())
