"""White Gaussian noise (plus a constant bias) at the output of chosen layers (hanif2018 §IV-A).

hanif2018 mimic approximate hardware inside a convolutional layer by adding white Gaussian noise
to that layer's output and give the noise as an absolute power in dBW: variance
``σ² = 10^(P_dBW / 10)`` (output units squared; e.g. 20 dBW -> σ = 10). Here the noise can also be
given as a signal-to-noise ratio: ``σ² = P_signal / 10^(SNR_dB / 10)``, where ``P_signal`` is the
layer's mean squared output measured on a calibration pass (:func:`output_power`). Fig. 6 adds a
constant ``bias`` to every output value on top of the noise.

:func:`inject` registers removable forward hooks (the model itself is never modified) and returns a
handle that also tallies the injected noise and the clean output power per layer, so the realised
SNR can be checked. Noise comes from one ``torch.Generator`` per layer, seeded from ``seed`` and the
layer's position, created on the output's device (CPU or CUDA): the same seed, inputs and batch
order give the same noise. With no noise and zero bias a hook returns the output untouched, so
outputs equal the clean model's bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from axlib import validate


def dbw_to_variance(power_dbw: float) -> float:
    """Noise variance of an absolute power in dBW: ``10^(P/10)`` (``-inf`` dBW -> 0)."""
    return 0.0 if power_dbw == -math.inf else 10.0 ** (power_dbw / 10.0)


def snr_to_variance(snr_db: float, signal_power: float) -> float:
    """Noise variance giving ``snr_db`` for a signal of mean square ``signal_power``."""
    return signal_power / 10.0 ** (snr_db / 10.0)


def _modules(model: nn.Module, layers: Sequence[str]) -> dict[str, nn.Module]:
    named = dict(model.named_modules())
    unknown = [n for n in layers if n not in named or n == ""]
    if unknown:
        choices = [n for n, m in named.items() if isinstance(m, (nn.Conv2d, nn.Linear))]
        raise validate.ParameterError(f"parameter layers names unknown layer(s) {unknown}; conv/linear layers: {choices}")
    return {n: named[n] for n in layers}


@torch.no_grad()
def output_power(model: nn.Module, layers: Sequence[str], batches: Iterable) -> dict[str, float]:
    """Mean squared output of each layer over ``batches`` of ``(x, y)`` (the calibration pass)."""
    mods = _modules(model, layers)
    sums = {n: [0.0, 0] for n in layers}

    def tally(out: torch.Tensor, acc: list) -> None:
        acc[0] += float(out.double().pow(2).sum())
        acc[1] += out.numel()

    hooks = [m.register_forward_hook(lambda _m, _a, out, acc=sums[n]: tally(out, acc)) for n, m in mods.items()]
    try:
        for x, _ in batches:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return {n: s / max(c, 1) for n, (s, c) in sums.items()}


@dataclass
class LayerNoise:
    """Noise of one layer: standard deviation (output units), bias, and running tallies."""

    std: float
    bias: float
    seed: int
    reference_power: float | None = None   # calibrated clean output power (SNR mode)
    generators: dict = field(default_factory=dict)
    signal_sq: float = 0.0
    noise_sq: float = 0.0
    noise_sum: float = 0.0
    count: int = 0

    def generator(self, device: torch.device) -> torch.Generator:
        key = str(device)
        if key not in self.generators:
            self.generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self.generators[key]


class NoiseHandle:
    """Returned by :func:`inject`: ``remove()`` (or leave the ``with`` block) to restore the model."""

    def __init__(self, noise: dict[str, LayerNoise], hooks: list):
        self.noise, self._hooks = noise, hooks

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def __enter__(self) -> NoiseHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def realised(self) -> dict[str, dict[str, float]]:
        """Per layer: output power seen before the layer's own noise (it includes noise propagated
        from earlier noisy layers), injected noise power (variance about its mean), its mean, and the
        realised SNR in dB — against the calibrated clean power in SNR mode, else against the power seen."""
        out = {}
        for n, s in self.noise.items():
            c = max(s.count, 1)
            mean = s.noise_sum / c
            var = s.noise_sq / c - mean**2
            signal = s.signal_sq / c
            ref = s.reference_power if s.reference_power is not None else signal
            out[n] = {"signal_power": signal, "reference_power": ref, "noise_power": var, "noise_mean": mean,
                      "snr_db": 10 * math.log10(ref / var) if var > 0 and ref > 0 else math.inf}
        return out


def inject(model: nn.Module, layers: str | Sequence[str], power_dbw: float | None = None,
           snr_db: float | Mapping[str, float] | None = None,
           bias: float = 0.0, seed: int = 0, signal_power: Mapping[str, float] | None = None,
           calib: Iterable | None = None) -> NoiseHandle:
    """Add ``N(bias, σ²)`` to the outputs of ``layers`` of ``model`` during its forward passes.

    Give the noise either as ``power_dbw`` (absolute, σ² = 10^(P/10)) or as ``snr_db`` relative to
    each layer's output power, taken from ``signal_power`` or measured on ``calib`` batches first;
    ``snr_db`` may be one value or a layer -> dB mapping (e.g. each layer's measured SNR of an
    approximate multiplier, :func:`axlib.nn.errmodel.awgn_snr_db`).
    Neither: bias only. ``bias`` is a constant added to every output value (output units).
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    mods = _modules(model, layers)
    if power_dbw is not None and snr_db is not None:
        raise validate.ParameterError("give the noise as power_dbw or as snr_db, not both")
    validate.integer("seed", seed, lo=0)
    if isinstance(snr_db, Mapping):
        missing = [n for n in layers if n not in snr_db]
        if missing:
            raise validate.ParameterError(f"parameter snr_db has no value for layer(s) {missing}")
    if snr_db is not None and signal_power is None:
        if calib is None:
            raise validate.ParameterError("snr_db needs the layers' output power: pass signal_power or calib batches")
        signal_power = output_power(model, layers, calib)
    noise = {}
    for i, n in enumerate(layers):
        if power_dbw is not None:
            var = dbw_to_variance(float(power_dbw))
        elif snr_db is not None:
            db = snr_db[n] if isinstance(snr_db, Mapping) else snr_db
            var = snr_to_variance(float(db), float(signal_power[n]))
        else:
            var = 0.0
        ref = float(signal_power[n]) if snr_db is not None else None
        noise[n] = LayerNoise(math.sqrt(var), float(bias), seed * 1_000_003 + i, ref)

    def hook(_m, _args, out, s: LayerNoise):
        if s.std == 0.0 and s.bias == 0.0:
            return None
        eps = torch.randn(out.shape, generator=s.generator(out.device), device=out.device, dtype=out.dtype) * s.std
        if s.bias:
            eps = eps + s.bias
        # tallies: float32 BLAS dot products and a pairwise sum (relative error ~1e-4, i.e. < 0.001 dB);
        # converting large maps to float64 first made the tallies cost more than the forward pass
        flat_out, flat_eps = out.detach().reshape(-1), eps.reshape(-1)
        s.signal_sq += float(torch.dot(flat_out, flat_out))
        s.noise_sq += float(torch.dot(flat_eps, flat_eps))
        s.noise_sum += float(flat_eps.sum())
        s.count += out.numel()
        return out + eps

    hooks = [m.register_forward_hook(lambda m_, a_, o_, s=noise[n]: hook(m_, a_, o_, s)) for n, m in mods.items()]
    return NoiseHandle(noise, hooks)
