"""Filter significance and structured filter pruning (hanif2018 §V).

For a producer layer ``i`` (a Conv2d with ``N_i`` filters) and its consumer ``i+1`` (the next
Conv2d or Linear, which reads the producer's output channels after any pooling / activation /
normalisation in between):

- :func:`l1_significance`: the usual ranking, L1 norm of each filter's weights (hanif2018 ref. [6]).
- :func:`data_aware_significance`: the paper's ranking. For each output channel ``j`` of layer ``i``,
  ``μ_a, σ_a`` = mean and standard deviation of the consumer's input activations of channel ``j``
  over a calibration subset (all images and positions), and ``μ_w, σ_w`` = mean and standard
  deviation of the consumer's weights that read channel ``j`` (channel ``j`` of all its filters).
  Assuming independence, the product's statistics are Eq. (1)
  ``σ_j = sqrt(σ_a²σ_w² + σ_a²μ_w² + σ_w²μ_a²)`` and Eq. (2) ``μ_j = μ_a μ_w``; the filter's
  significance is ``s_j = 2σ_j + μ_j`` (step 4), and the filters with the smallest ``s_j`` are pruned.
- :func:`pruned`: removes filters by zeroing them and the consumer's input channels that read them
  (shapes kept; the consumer's zeroed channels make the removal exact whatever lies in between,
  batch norm included). :func:`macs_saved` counts what a real removal saves, the filter's own MACs
  ``h_{i+1}·w_{i+1}·k_i²·x_i`` plus the consumer's MACs on that channel, as §V describes.

A Linear consumer after ``flatten`` reads channel ``j`` as the contiguous block of
``in_features / N_i`` features ``[j·B, (j+1)·B)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
from torch import nn

from axlib import validate


def _layers(model: nn.Module, producer: str, consumer: str) -> tuple[nn.Conv2d, nn.Conv2d | nn.Linear]:
    named = dict(model.named_modules())
    for name, kind in ((producer, (nn.Conv2d,)), (consumer, (nn.Conv2d, nn.Linear))):
        if name not in named or not isinstance(named[name], kind):
            allowed = [n for n, m in named.items() if isinstance(m, kind)]
            raise validate.ParameterError(f"layer {name!r} is not a {'/'.join(k.__name__ for k in kind)} of the model; "
                                          f"allowed: {allowed}")
    prod, cons = named[producer], named[consumer]
    n = prod.out_channels
    if isinstance(cons, nn.Conv2d) and (cons.in_channels != n or cons.groups != 1):
        raise ValueError(f"{consumer} (in_channels={cons.in_channels}, groups={cons.groups}) does not read the "
                         f"{n} channels of {producer} densely")
    if isinstance(cons, nn.Linear) and cons.in_features % n:
        raise ValueError(f"{consumer}.in_features={cons.in_features} is not a multiple of {producer}'s {n} channels")
    return prod, cons


def _channel_view(t: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C, ...) or flattened (N, C·B) -> (C, everything else) float64."""
    t = t.detach().double()
    t = t.reshape(t.shape[0], channels, -1)
    return t.transpose(0, 1).reshape(channels, -1)


def consumer_weight_stats(consumer: nn.Conv2d | nn.Linear, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation of the consumer weights reading each channel."""
    w = consumer.weight.detach().double()
    w = w.transpose(0, 1).reshape(channels, -1) if isinstance(consumer, nn.Conv2d) else \
        w.reshape(w.shape[0], channels, -1).transpose(0, 1).reshape(channels, -1)
    return w.mean(1).numpy(), w.std(1, unbiased=False).numpy()


@torch.no_grad()
def consumer_input_stats(model: nn.Module, consumer: str, channels: int, batches: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation per channel of the consumer's input over ``batches``
    of ``(x, y)`` (all images and positions; accumulated in float64)."""
    layer = dict(model.named_modules())[consumer]
    s1 = torch.zeros(channels, dtype=torch.float64)
    s2 = torch.zeros(channels, dtype=torch.float64)
    count = [0]

    def hook(_m, args):
        v = _channel_view(args[0], channels).cpu()
        s1.add_(v.sum(1))
        s2.add_(v.pow(2).sum(1))
        count[0] += v.shape[1]

    h = layer.register_forward_pre_hook(hook)
    try:
        for x, _ in batches:
            model(x)
    finally:
        h.remove()
    if not count[0]:
        raise ValueError("no calibration batches were given")
    mean = s1 / count[0]
    var = (s2 / count[0] - mean.pow(2)).clamp(min=0)
    return mean.numpy(), var.sqrt().numpy()


def l1_significance(conv: nn.Conv2d) -> np.ndarray:
    """L1 norm of each filter's weights, shape (out_channels,)."""
    return conv.weight.detach().double().abs().reshape(conv.out_channels, -1).sum(1).numpy()


def product_stats(mu_a, sigma_a, mu_w, sigma_w) -> tuple[np.ndarray, np.ndarray]:
    """Eqs. (1)-(2) of hanif2018: std and mean of the product of independent activation and weight."""
    mu_a, sigma_a, mu_w, sigma_w = map(np.asarray, (mu_a, sigma_a, mu_w, sigma_w))
    sigma = np.sqrt(sigma_a**2 * sigma_w**2 + sigma_a**2 * mu_w**2 + sigma_w**2 * mu_a**2)
    return sigma, mu_a * mu_w


def data_aware_significance(model: nn.Module, producer: str, consumer: str, batches: Iterable) -> pd.DataFrame:
    """One row per filter of ``producer``: the statistics of steps 1-3, ``significance`` = 2σ + μ
    (step 4), the L1 norm, and both rankings (0 = least significant, pruned first)."""
    prod, cons = _layers(model, producer, consumer)
    n = prod.out_channels
    mu_a, sigma_a = consumer_input_stats(model, consumer, n, batches)
    mu_w, sigma_w = consumer_weight_stats(cons, n)
    sigma, mu = product_stats(mu_a, sigma_a, mu_w, sigma_w)
    df = pd.DataFrame({"producer": producer, "consumer": consumer, "filter": np.arange(n), "mu_a": mu_a,
                       "sigma_a": sigma_a, "mu_w": mu_w, "sigma_w": sigma_w, "mu": mu, "sigma": sigma,
                       "significance": 2 * sigma + mu, "l1": l1_significance(prod)})
    df["rank_data_aware"] = prune_order(df["significance"].to_numpy()).argsort()
    df["rank_l1"] = prune_order(df["l1"].to_numpy()).argsort()
    return df


def prune_order(scores: np.ndarray) -> np.ndarray:
    """Filter indices from least to most significant (ties broken by index, so deterministic)."""
    return np.lexsort((np.arange(len(scores)), np.asarray(scores)))


@contextlib.contextmanager
@torch.no_grad()
def pruned(model: nn.Module, producer: str, consumer: str, filters: Iterable[int]):
    """Within the block, ``filters`` of ``producer`` are removed: their weights and bias and the
    consumer's weights reading them are zero. Restored exactly on exit."""
    prod, cons = _layers(model, producer, consumer)
    idx = sorted({int(f) for f in filters})
    if idx and (idx[0] < 0 or idx[-1] >= prod.out_channels):
        raise validate.ParameterError(f"filters must lie in [0, {prod.out_channels - 1}], got {idx}")
    saved = [(p, p.detach().clone()) for p in (prod.weight, prod.bias, cons.weight) if p is not None]
    try:
        prod.weight[idx] = 0
        if prod.bias is not None:
            prod.bias[idx] = 0
        if isinstance(cons, nn.Conv2d):
            cons.weight[:, idx] = 0
        else:
            block = cons.in_features // prod.out_channels
            cols = [c for j in idx for c in range(j * block, (j + 1) * block)]
            cons.weight[:, cols] = 0
        yield model
    finally:
        for p, v in saved:
            p.copy_(v)


@torch.no_grad()
def macs_saved(model: nn.Module, producer: str, consumer: str, example: torch.Tensor) -> dict:
    """MACs per image of the two layers and what removing one filter of ``producer`` saves.

    ``per_filter_own = h_{i+1}·w_{i+1}·k_i²·x_i/groups`` (the filter's output channel) and
    ``per_filter_consumer`` = the consumer's MACs on that input channel (``h·w·k²·N_{i+1}`` for a
    conv, ``out_features·B`` for a linear layer); measured with one forward pass of ``example``."""
    prod, cons = _layers(model, producer, consumer)
    shapes = {}
    hooks = [m.register_forward_hook(lambda _m, _a, out, n=n: shapes.__setitem__(n, tuple(out.shape[1:])))
             for n, m in ((producer, prod), (consumer, cons))]
    try:
        model(example[:1])
    finally:
        for h in hooks:
            h.remove()
    _, ho, wo = shapes[producer]
    own = ho * wo * prod.kernel_size[0] * prod.kernel_size[1] * prod.in_channels // prod.groups
    if isinstance(cons, nn.Conv2d):
        _, hc, wc = shapes[consumer]
        per_cons = hc * wc * cons.kernel_size[0] * cons.kernel_size[1] * cons.out_channels
        cons_total = per_cons * cons.in_channels
    else:
        per_cons = cons.out_features * (cons.in_features // prod.out_channels)
        cons_total = cons.out_features * cons.in_features
    return {"producer_macs": own * prod.out_channels, "consumer_macs": cons_total, "per_filter_own": own,
            "per_filter_consumer": per_cons, "per_filter_total": own + per_cons}
