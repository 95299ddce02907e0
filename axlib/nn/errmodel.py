"""Neuron-wise model of an approximate multiplier's error (delaparra2021 §4.2, Eqs. 5-12), the
baseline weight-error model (Eq. 16, Hammad et al.) and per-layer AWGN at the measured SNR
(hanif2018, delaparra2021 §5).

**Measurement** (§4.2, Fig. 2). For every approximated layer ``l`` the same quantized input codes go
through the exact op ``f`` and the approximate op ``f̃``; ``ε_l = Ỹ_l − Y_l`` in float output units,
before the bias (quantization noise is not part of the model). Fig. 2 itself is not in our text;
our reading is that the inputs of every layer come from the exact quantized network, so each
layer's error is local (``propagate=False``); ``propagate=True`` feeds each layer the approximate
outputs of the layers before it (an ablation). :func:`collect` streams per-neuron statistics over
``p`` images in float64: ``μ_y, σ_y, μ_ε, σ_ε`` and Eq. (5)'s Pearson coefficient
``ρ = Cov(y, ε) / (σ_y σ_ε)`` (0 where ``σ_y`` or ``σ_ε`` is 0). A neuron is one output position:
``[C, H, W]`` for a convolution, ``[out]`` for a fully connected layer. Standard deviations are the
population ones (divide by ``p``); batches are merged with Chan et al.'s pairwise update, so the
result does not depend on the batch size beyond float64 rounding.

**Error model** (Eqs. 6-12). :func:`apply_error_model` adds, at the output of every modelled layer
(before the activation, Fig. 5), ``Ξ = σ_ε (ρ S1 + √(1 − ρ²) S2) + μ_ε`` with
``S1 = (Y − μ_y) / σ_y`` computed at run time from the layer's exact pre-bias output ``Y``
(differentiable, so Eqs. 14-15 follow from autograd: ``∂Ξ/∂w = σ_ε ρ ∂S1/∂w``; ``S1 = 0`` where
``σ_y = 0``) and ``S2 ~ N(0, 1)`` drawn fresh at every forward from a per-layer ``torch.Generator``
seeded from ``seed`` and the layer's position. Coefficients: ``a1 = ρ σ_ε`` (Eq. 9),
``a2 = σ_ε √(1 − ρ²)`` (Eq. 10).

**Baseline** (Eq. 16): ``Y = X ∗ (W ⊙ Err) + b`` with ``Err`` i.i.d. per weight element, redrawn each
forward, ``Err ~ N(1 + μ_r, σ_r²)``; ``μ_r, σ_r`` are the mean and standard deviation of the signed
relative error ``(approx − exact) / max(1, |exact|)`` over all operand pairs of the multiplier
(:func:`relative_error_moments`; the paper says only "characterised by the MRE and standard
deviation"). One distribution for every layer; applied to the weight codes of the exact path.

**AWGN** (§5): per layer ``SNR_l = 10 log10(P_y / P_ε)`` with ``P_y`` the mean square of the exact
pre-bias output and ``P_ε = mean(ε²)`` over the same images (:func:`awgn_snr_db`), injected with
:func:`axlib.nn.noise.inject` (zero mean, ``σ² = P_ε``).

Every model is a set of removable hooks on :class:`axlib.nn.ApproxLayer` modules: ``handle.remove()``
restores the plain layers bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from axlib import validate
from axlib.multipliers import Multiplier
from axlib.nn.approx import ApproxLayer


@dataclass(frozen=True)
class NeuronStats:
    """Per-neuron statistics of one layer over ``n`` images; arrays float64 of the neuron shape
    (``[C, H, W]`` or ``[out]``), output units (ρ dimensionless, in [-1, 1])."""

    mu_y: np.ndarray
    sigma_y: np.ndarray
    mu_e: np.ndarray
    sigma_e: np.ndarray
    rho: np.ndarray
    n: int
    power_y: float   # mean over neurons and images of y², output units squared
    power_e: float   # mean over neurons and images of ε²

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mu_y.shape)

    @property
    def snr_db(self) -> float:
        """``10 log10(P_y / P_ε)`` (inf for an exact multiplier)."""
        if self.power_e <= 0:
            return math.inf
        return 10.0 * math.log10(self.power_y / self.power_e) if self.power_y > 0 else -math.inf

    def significant_fraction(self, level: float | None = None) -> float:
        """Fraction of neurons with ``|ρ| > level`` (default ``2/√n``, about 5 % significance for ρ = 0)."""
        level = 2.0 / math.sqrt(self.n) if level is None else float(level)
        return float(np.mean(np.abs(self.rho) > level))

    def arrays(self) -> dict[str, np.ndarray]:
        return {"mu_y": self.mu_y, "sigma_y": self.sigma_y, "mu_e": self.mu_e, "sigma_e": self.sigma_e,
                "rho": self.rho}


class StatsAccumulator:
    """Streaming float64 moments of ``(y, ε)`` per neuron (Chan et al.'s pairwise merge)."""

    def __init__(self):
        self.n = 0
        self.mean_y = self.mean_e = self.m2_y = self.m2_e = self.c_ye = None
        self.sq_y = self.sq_e = 0.0

    def update(self, y: torch.Tensor, approx: torch.Tensor) -> None:
        """Add a batch: ``y`` exact and ``approx`` approximate outputs, shape ``[B, *neuron]``."""
        if y.shape != approx.shape or y.dim() < 2:
            raise ValueError(f"exact and approximate outputs must share a [batch, ...] shape; got {tuple(y.shape)} "
                             f"and {tuple(approx.shape)}")
        y = y.detach().to("cpu", torch.float64)
        e = approx.detach().to("cpu", torch.float64) - y
        nb = y.shape[0]
        my, me = y.mean(0), e.mean(0)
        dy, de = y - my, e - me
        m2y, m2e, cye = (dy * dy).sum(0), (de * de).sum(0), (dy * de).sum(0)
        self.sq_y += float((y * y).sum())
        self.sq_e += float((e * e).sum())
        if self.n == 0:
            self.n, self.mean_y, self.mean_e, self.m2_y, self.m2_e, self.c_ye = nb, my, me, m2y, m2e, cye
            return
        if my.shape != self.mean_y.shape:
            raise ValueError(f"neuron shape changed from {tuple(self.mean_y.shape)} to {tuple(my.shape)}")
        na, n = self.n, self.n + nb
        ddy, dde = my - self.mean_y, me - self.mean_e
        f = na * nb / n
        self.mean_y = self.mean_y + ddy * (nb / n)
        self.mean_e = self.mean_e + dde * (nb / n)
        self.m2_y = self.m2_y + m2y + ddy * ddy * f
        self.m2_e = self.m2_e + m2e + dde * dde * f
        self.c_ye = self.c_ye + cye + ddy * dde * f
        self.n = n

    def result(self) -> NeuronStats:
        if self.n == 0:
            raise ValueError("no samples were collected")
        var_y, var_e = (self.m2_y / self.n).clamp_min(0), (self.m2_e / self.n).clamp_min(0)
        sy, se = var_y.sqrt(), var_e.sqrt()
        denom = (self.m2_y * self.m2_e).clamp_min(0).sqrt()
        rho = torch.where(denom > 0, self.c_ye / torch.where(denom > 0, denom, torch.ones_like(denom)),
                          torch.zeros_like(denom)).clamp(-1.0, 1.0)
        count = self.n * self.mean_y.numel()
        return NeuronStats(self.mean_y.numpy(), sy.numpy(), self.mean_e.numpy(), se.numpy(), rho.numpy(), self.n,
                           self.sq_y / count, self.sq_e / count)


def _approx_layers(model: nn.Module, layers: Sequence[str] | None) -> dict[str, ApproxLayer]:
    found = {n: m for n, m in model.named_modules() if isinstance(m, ApproxLayer)}
    if not found:
        raise validate.ParameterError("the model has no ApproxLayer; build it with axlib.nn.approximate first")
    if layers is None:
        return found
    names = validate.as_list("layers", layers)
    unknown = [n for n in names if n not in found]
    if unknown:
        raise validate.ParameterError(f"parameter layers names unknown approximated layer(s) {unknown}; "
                                      f"approximated layers: {list(found)}")
    return {n: found[n] for n in names}


def _bias(layer: ApproxLayer, out: torch.Tensor):
    b = layer.layer.bias
    if b is None:
        return None
    return b.view((1, -1, 1, 1) if out.dim() == 4 else (1, -1))


def _tap(model: nn.Module, batches: Iterable, mods: dict[str, ApproxLayer], on_batch, propagate: bool,
         max_images: int | None, progress: bool, desc: str) -> int:
    """Run ``batches`` through ``model``; ``on_batch(name, exact, approx)`` gets every approximated
    layer's exact and approximate pre-bias outputs. Returns the number of images seen."""
    if max_images is not None:
        validate.integer("max_images", max_images, lo=1)
    state = {"take": None}

    def hook(m: ApproxLayer, args, out, n: str):
        take = state["take"]
        exact = m.exact_products(args[0])
        b = _bias(m, out)
        approx = out if b is None else out - b
        on_batch(n, exact[:take], approx[:take])
        if propagate:
            return None
        return exact if b is None else exact + b

    hooks = [m.register_forward_hook(lambda m_, a_, o_, n=n: hook(m_, a_, o_, n)) for n, m in mods.items()]
    was_training = model.training
    model.eval()
    seen = 0
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=max_images, desc=desc, unit="img", disable=not progress)
        with torch.no_grad():
            for batch in batches:
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                take = x.shape[0] if max_images is None else min(x.shape[0], max_images - seen)
                if take <= 0:
                    break
                state["take"] = take
                model(x[:take])
                seen += take
                bar.update(take)
        bar.close()
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if seen == 0:
        raise validate.ParameterError("no images to collect error statistics on: the batches were empty")
    return seen


def collect(model: nn.Module, batches: Iterable, layers: Sequence[str] | None = None, propagate: bool = False,
            max_images: int | None = None, progress: bool = False) -> dict[str, NeuronStats]:
    """Per-neuron statistics (:class:`NeuronStats`) of every approximated layer of ``model``.

    ``model`` holds :class:`ApproxLayer` modules with their approximate multiplier (from
    :func:`axlib.nn.approximate`); ``batches`` yields ``(x, y)`` or ``x``; ``max_images`` caps the
    number of images ``p``. ``propagate=False`` (default, our reading of Fig. 2): each layer passes
    its exact output on, so every layer sees the exact quantized network's inputs.
    """
    mods = _approx_layers(model, layers)
    acc = {n: StatsAccumulator() for n in mods}
    _tap(model, batches, mods, lambda n, y, a: acc[n].update(y, a), propagate, max_images, progress,
         "error statistics")
    return {n: a.result() for n, a in acc.items()}


def collect_samples(model: nn.Module, batches: Iterable, neurons: Mapping[str, Sequence[int]],
                    propagate: bool = False, max_images: int | None = None, progress: bool = False
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Raw samples of chosen neurons: ``{layer: (y, ε)}``, float64 arrays ``[images, len(neurons[layer])]``
    of the exact pre-bias output and the error, for neurons given as flat indices into the layer's
    neuron shape (``[C, H, W]`` in C order: channel 0, row 0, column j is index j). Same reading of
    Fig. 2 as :func:`collect`."""
    mods = _approx_layers(model, list(neurons))
    idx = {n: torch.as_tensor(np.asarray(neurons[n], dtype=np.int64)) for n in mods}
    ys: dict[str, list] = {n: [] for n in mods}
    es: dict[str, list] = {n: [] for n in mods}

    def keep(n, y, a):
        flat_y, flat_a = y.detach().flatten(1).double(), a.detach().flatten(1).double()
        if len(idx[n]) and int(idx[n].max()) >= flat_y.shape[1]:
            raise validate.ParameterError(f"parameter neurons: layer {n} has {flat_y.shape[1]} neurons, index "
                                          f"{int(idx[n].max())} asked")
        ys[n].append(flat_y[:, idx[n]].cpu())
        es[n].append((flat_a[:, idx[n]] - flat_y[:, idx[n]]).cpu())

    _tap(model, batches, mods, keep, propagate, max_images, progress, "neuron samples")
    return {n: (torch.cat(ys[n]).numpy(), torch.cat(es[n]).numpy()) for n in mods}


class ModelHandle:
    """Removable hooks of an error model; ``remove()`` restores the plain layers."""

    def __init__(self, hooks: list, layers: dict[str, ApproxLayer] | None = None):
        self._hooks, self._layers = hooks, layers or {}

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        for m in self._layers.values():
            m.weight_error = None
        self._layers = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


def _generator(seed: int, i: int, device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed * 1_000_003 + i)
    return g


class _NeuronModel:
    """Tensors of Eq. (12) for one layer, moved to the output's device and dtype on first use."""

    def __init__(self, s: NeuronStats, seed: int, index: int):
        self.stats, self.seed, self.index = s, seed, index
        self._cache: dict = {}
        self._gen: dict = {}

    def tensors(self, like: torch.Tensor):
        key = (like.device, like.dtype)
        if key not in self._cache:
            s = self.stats
            t = {k: torch.as_tensor(v, dtype=like.dtype, device=like.device) for k, v in s.arrays().items()}
            inv_sy = torch.where(t["sigma_y"] > 0, 1.0 / torch.where(t["sigma_y"] > 0, t["sigma_y"], 1.0), 0.0)
            a1 = t["rho"] * t["sigma_e"]                                           # Eq. (9)
            a2 = t["sigma_e"] * torch.sqrt((1.0 - t["rho"] ** 2).clamp_min(0))     # Eq. (10)
            self._cache[key] = (t["mu_y"], inv_sy, a1, a2, t["mu_e"])
        return self._cache[key]

    def generator(self, device) -> torch.Generator:
        if device not in self._gen:
            self._gen[device] = _generator(self.seed, self.index, device)
        return self._gen[device]

    def error(self, y: torch.Tensor) -> torch.Tensor:
        """``Ξ`` of Eq. (12) for exact pre-bias outputs ``y`` ``[B, *neuron]``."""
        mu_y, inv_sy, a1, a2, mu_e = self.tensors(y)
        if tuple(y.shape[1:]) != tuple(mu_y.shape):
            raise ValueError(f"layer output {tuple(y.shape[1:])} does not match the statistics' neuron shape "
                             f"{tuple(mu_y.shape)} (collected at another input size?)")
        s1 = (y - mu_y) * inv_sy
        s2 = torch.randn(y.shape, generator=self.generator(y.device), device=y.device, dtype=y.dtype)
        return a1 * s1 + a2 * s2 + mu_e


def apply_error_model(model: nn.Module, stats: Mapping[str, NeuronStats], seed: int = 0) -> ModelHandle:
    """Add Eq. (12)'s ``Ξ`` to the output of every layer named in ``stats`` (hooks; removable).

    The layers should be exact fake-quantized :class:`ApproxLayer` modules (``multiplier=None``): the
    model's ``Y`` is then the exact quantized output, as in the paper's retraining (Fig. 5)."""
    validate.integer("seed", seed, lo=0)
    mods = _approx_layers(model, list(stats))
    models = {n: _NeuronModel(stats[n], seed, i) for i, n in enumerate(mods)}

    def hook(m: ApproxLayer, _args, out, nm: _NeuronModel):
        b = _bias(m, out)
        y = out if b is None else out - b
        return out + nm.error(y)

    hooks = [m.register_forward_hook(lambda m_, a_, o_, nm=models[n]: hook(m_, a_, o_, nm)) for n, m in mods.items()]
    return ModelHandle(hooks)


def relative_error_moments(mult: Multiplier, signed_mean: bool = True) -> tuple[float, float]:
    """``(μ_r, σ_r)`` of the signed relative error ``(approx − exact) / max(1, |exact|)`` over all operand
    pairs of ``mult`` (Eq. 16's distribution). ``signed_mean=False`` gives the paper's literal
    reading, ``μ_r = sign(mean error) · MRE`` with MRE the mean of the absolute relative error."""
    exact = mult.exact_table().astype(np.float64)
    rel = (mult.table.astype(np.float64) - exact) / np.maximum(1.0, np.abs(exact))
    sigma = float(rel.std())
    if signed_mean:
        return float(rel.mean()), sigma
    return float(np.sign(rel.mean()) * np.abs(rel).mean()), sigma


def apply_weight_error(model: nn.Module, mu_r: float, sigma_r: float, layers: Sequence[str] | None = None,
                       seed: int = 0) -> ModelHandle:
    """Eq. (16): every forward multiplies each weight code of the named (default: all) exact
    :class:`ApproxLayer` modules by a fresh ``Err ~ N(1 + μ_r, σ_r²)`` (removable)."""
    validate.integer("seed", seed, lo=0)
    validate.number("sigma_r", sigma_r, lo=0.0)
    validate.number("mu_r", mu_r)
    mods = _approx_layers(model, layers)
    for n, m in mods.items():
        if m.multiplier is not None:
            raise validate.ParameterError(f"layer {n} uses {m.multiplier.name}; the weight-error model needs the "
                                          "exact path (approximate(model, None, ...))")
    gens: dict = {}

    def factor(i: int, w: torch.Tensor) -> torch.Tensor:
        key = (i, w.device)
        if key not in gens:
            gens[key] = _generator(seed, i, w.device)
        z = torch.randn(w.shape, generator=gens[key], device=w.device, dtype=w.dtype)
        return 1.0 + mu_r + sigma_r * z

    for i, m in enumerate(mods.values()):
        m.weight_error = (lambda w, i=i: factor(i, w))
    return ModelHandle([], dict(mods))


def awgn_snr_db(stats: Mapping[str, NeuronStats]) -> dict[str, float]:
    """Per layer ``10 log10(P_y / P_ε)`` of the measured error (the AWGN comparison of §5)."""
    return {n: s.snr_db for n, s in stats.items()}


def apply_awgn(model: nn.Module, stats: Mapping[str, NeuronStats], seed: int = 0):
    """Zero-mean white Gaussian noise of variance ``P_ε`` at each layer's output (SNR of
    :func:`awgn_snr_db` relative to ``P_y``), through :func:`axlib.nn.noise.inject`; returns its handle."""
    from axlib.nn import noise

    mods = _approx_layers(model, list(stats))
    finite = [n for n in mods if stats[n].power_e > 0 and stats[n].power_y > 0]
    snr = {n: stats[n].snr_db for n in finite}
    power = {n: stats[n].power_y for n in finite}
    return noise.inject(model, finite, snr_db=snr, signal_power=power, seed=seed)


__all__ = ["ModelHandle", "NeuronStats", "StatsAccumulator", "apply_awgn", "apply_error_model", "apply_weight_error",
           "awgn_snr_db", "collect", "collect_samples", "relative_error_moments"]
