"""DRAM bit errors on stored words (akhlaghi2020 §4.4.1, Eqs. 4.2 and 4.11).

A DRAM run at reduced voltage (or refresh/timing) flips each stored bit with probability ``p`` (the
bit error rate, BER). An ``n``-bit word is then wrong with probability (Eq. 4.11)

    α = 1 - (1 - p)^n,

and the thesis injects the error statistically (Eq. 4.2): ``x̃ = α·E + (1 - α)·x`` with ``E`` drawn
uniformly over the representable range (its "Error Model 0", after Koppula et al.). Three modes:

- ``"expected"`` — Eq. 4.2 literally, one fresh uniform ``E`` per value and pass; differentiable in
  ``p`` (used for learning, and reported).
- ``"bernoulli"`` — each value is *replaced* by ``E`` with probability ``α`` (what a faulty word
  does); not differentiable in ``p``; reported next to the first.
- ``"bitflip"`` — fixed point only: each of the ``n`` bits of the two's-complement code flips with
  probability ``p``; realises the BER itself (used to check Eq. 4.11).

:func:`inject` registers removable forward pre-hooks (weights are perturbed in a copy passed to the
layer, never in place), with one ``torch.Generator`` per layer seeded from ``seed`` and the layer's
position: the same seed, inputs and batch order give the same errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from axlib import validate

MODES = ("expected", "bernoulli", "bitflip")
BER_RANGE = (0.0, 1.0)


def word_error_rate(p: torch.Tensor | float, n: torch.Tensor | float) -> torch.Tensor:
    """Eq. (4.11): probability that an ``n``-bit word holds at least one flipped bit, BER ``p``."""
    p = torch.as_tensor(p, dtype=torch.float64 if not torch.is_tensor(p) else p.dtype)
    return 1.0 - torch.exp(torch.as_tensor(n, dtype=p.dtype) * torch.log1p(-p.clamp(max=1.0 - 1e-12)))


def check_ber(name: str, p) -> float:
    """A BER must lie in [0, 1]."""
    return validate.number(name, p, *BER_RANGE)


def corrupt(x: torch.Tensor, alpha: torch.Tensor, lo: float, hi: float, generator: torch.Generator,
            mode: str = "expected") -> torch.Tensor:
    """Eq. (4.2) on ``x`` with word error rate ``alpha`` (scalar or broadcastable), ``E ~ U[lo, hi]``.

    ``mode="expected"``: ``α·E + (1-α)·x``; ``"bernoulli"``: ``E`` where a uniform draw < ``α``, else ``x``.
    """
    validate.choice("mode", mode, MODES[:2])
    e = torch.empty_like(x).uniform_(lo, hi, generator=generator)
    if mode == "expected":
        return alpha * e + (1.0 - alpha) * x
    hit = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < alpha
    return torch.where(hit, e, x)


def flip_bits(x: torch.Tensor, p: float, n_bits: int, frac_bits: int, generator: torch.Generator) -> torch.Tensor:
    """Flip each bit of the ``n_bits`` two's-complement fixed-point code of ``x`` (``frac_bits`` after the
    point; ``x`` must already be on that grid) independently with probability ``p``."""
    validate.integer("n_bits", n_bits, 1, 32)
    code = torch.round(x.double() * 2.0 ** frac_bits).to(torch.int64)
    code = torch.bitwise_and(code, (1 << n_bits) - 1)            # two's complement, n bits
    flips = torch.zeros_like(code)
    for b in range(n_bits):
        hit = torch.rand(x.shape, generator=generator, device=x.device) < p
        flips |= hit.to(torch.int64) << b
    code = torch.bitwise_xor(code, flips)
    code = torch.where(code >= (1 << (n_bits - 1)), code - (1 << n_bits), code)   # back to signed
    return (code.double() / 2.0 ** frac_bits).to(x.dtype)


@dataclass
class OperandErrors:
    """DRAM errors of one operand of one layer: word error rate ``alpha`` and the range of ``E``."""

    alpha: torch.Tensor | float
    lo: float
    hi: float


class DramHandle:
    """Removable handle of :func:`inject`; ``remove()`` restores the model's behaviour exactly."""

    def __init__(self, hooks: list):
        self.hooks = hooks

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        self.hooks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def inject(model: nn.Module, inputs: Mapping[str, OperandErrors] | None = None,
           weights: Mapping[str, OperandErrors] | None = None, seed: int = 0, mode: str = "expected") -> DramHandle:
    """DRAM errors on the inputs and/or weights of the named conv/linear layers of ``model`` (Eq. 4.2).

    Weights get fresh errors on every forward pass (a re-read from DRAM) and are restored right after
    it, so the parameters are unchanged outside the call. Layers missing from both maps are untouched;
    ``remove()`` (or ``with``) takes every hook away. For learning BERs by gradient descent use
    :func:`corrupt` inside the layer (``axlib.methods.learned_approx``): this hook path is not
    differentiable in the error rate of the weights.
    """
    validate.choice("mode", mode, MODES[:2])
    inputs, weights = dict(inputs or {}), dict(weights or {})
    named = dict(model.named_modules())
    bad = sorted(n for n in set(inputs) | set(weights) if not isinstance(named.get(n), (nn.Conv2d, nn.Linear)))
    if bad:
        layers = [n for n, m in named.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
        raise validate.ParameterError(f"DRAM errors name unknown or non-conv/linear layer(s) {bad}; layers: {layers}")
    order = {n: i for i, n in enumerate(named)}
    hooks = []
    for name in sorted(set(inputs) | set(weights), key=order.get):
        m, inp, wt = named[name], inputs.get(name), weights.get(name)
        gen = torch.Generator().manual_seed(seed * 100003 + order[name])
        saved = {}

        def pre(mod, args, inp=inp, wt=wt, gen=gen, saved=saved):
            if wt is not None:
                saved["w"] = mod.weight.data
                mod.weight.data = corrupt(mod.weight.data, wt.alpha, wt.lo, wt.hi, gen, mode)
            if inp is None:
                return None
            return (corrupt(args[0], inp.alpha, inp.lo, inp.hi, gen, mode),) + tuple(args[1:])

        def post(mod, _args, _out, saved=saved):
            if "w" in saved:
                mod.weight.data = saved.pop("w")

        hooks += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]
    return DramHandle(hooks)
