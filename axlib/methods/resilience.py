"""Error-resilience analysis of CNNs (hanif2018): per-layer Gaussian noise, bias, and filter pruning.

Every experiment runs on one :class:`Setup`: a network with its batch norms folded into the
convolutions (the weights an accelerator holds; the "output of a conv layer" is then what the
hardware computes), a calibration split and a disjoint test split drawn from one seeded
permutation of the evaluation images (hanif2018 §V-A: 2000 calibration / 5000 test images of the
ImageNet validation set; here by default the same counts from the CIFAR-10 test set), the clean
test logits, and the clean output power of every conv layer on the calibration split.

- :func:`noise_point` (Fig. 5): white Gaussian noise at the output of one conv layer, given as an
  SNR in dB against that layer's calibrated power or as an absolute power in dBW
  (σ² = 10^(P/10), :mod:`axlib.nn.noise`); top-1 and top-5 on the test split.
- :func:`noise_point` with ``bias_sigma`` (Fig. 6): the same noise plus a constant bias, given in
  units of the noise's standard deviation.
- :func:`channel_distributions` (Figs. 7-8): histograms of the input activations of 4 channels of a
  consumer layer and of the consumer's weights reading those channels.
- :func:`pruning_point` (Figs. 10-11): the ``n_pruned`` least significant filters of one conv
  layer removed (:func:`axlib.methods.significance.pruned`), ranked by L1 norm, by the data-aware
  significance s_j = 2σ + μ of Eqs. (1)-(2) (statistics from the calibration split only), or at
  random (a reference, not in the paper); MACs saved counted as §V describes.

Points are cached by :func:`axlib.sweep.run_grid`. A point only re-runs the network from the
stage holding the changed layer (:mod:`axlib.models.stages`), on cached stage inputs, so its
result is identical to a full forward pass.
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from axlib import config, data, models, quant, sweep, validate
from axlib.methods import significance as sig
from axlib.models import stages as stages_mod
from axlib.models.census import layer_census
from axlib.nn import noise as noise_mod

BATCH = 500
RANKINGS = ("l1", "data_aware", "random")
LEVEL_UNITS = ("snr_db", "dbw")
NOISE_VERSION = "hanif2018-noise-v1"
PRUNE_VERSION = "hanif2018-prune-v1"

#: What hanif2018 state in words about their figures (VGG-f, 5000 ImageNet validation images, top-5).
PAPER_FIG05 = pd.DataFrame([
    ("conv2", 30.0, 0.10, "below", "30 dBW at the output of CONV-2 leaves under 10 % top-5 accuracy (§IV-A)"),
    ("conv4", 30.0, 0.70, "about", "the same 30 dBW at CONV-4 leaves about 70 % top-5 accuracy (§IV-A)"),
], columns=["layer", "power_dbw", "top5", "relation", "paper_text"])
PAPER_FIG06 = "zero-mean noise gives the best accuracy; 20 dBW WGN plus a bias (§IV-A, Fig. 6)"
PAPER_FIG11 = ("the data-aware ranking predicts better for CONV 1, 2 and 4 and is comparable for the other "
               "conv layers (§V-A, Figs. 10-11)")
PAPER_BETTER_LAYERS = ("conv1", "conv2", "conv4")


def noise_layers(net: nn.Module) -> list[str]:
    """Names of every Conv2d of ``net`` in forward order (the layers Fig. 5 perturbs)."""
    return [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]


def prunable_pairs(net: nn.Module) -> list[tuple[str, str]]:
    """(producer conv, consumer layer) pairs whose filters can be removed exactly.

    A chain network (VGG-f style, LeNet, CifarQuick, AlexNet): each conv and the next Conv2d/Linear.
    A CIFAR ResNet: the first conv of each basic block and the block's second conv; the stem conv and
    the second convs feed residual additions, so removing their filters would change the shortcut
    path as well, and they are left out (as the paper's VGG-f has no such layers).
    """
    from axlib.models.resnet_cifar import CifarResNet

    named = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if isinstance(net, CifarResNet):
        return [(n, n[:-1] + "2") for n, m in named if n.endswith(".conv1")]
    pairs = []
    for (n, m), (n2, _) in zip(named, named[1:]):
        if isinstance(m, nn.Conv2d):
            pairs.append((n, n2))
    return pairs


def check_pairs(net: nn.Module, producers) -> list[tuple[str, str]]:
    """The (producer, consumer) pairs of ``producers`` ("all" or a list of producer names)."""
    pairs = prunable_pairs(net)
    if producers == "all":
        return pairs
    names = validate.as_list("producers", producers)
    allowed = [p for p, _ in pairs]
    bad = [n for n in names if n not in allowed]
    if bad:
        raise validate.ParameterError(f"parameter producers: {bad} cannot be pruned exactly; allowed: {allowed}")
    return [pc for pc in pairs if pc[0] in names]


def validate_common(model: str, n_calib: int, n_test, seed: int) -> None:
    validate.choice("model", model, list(models.MODELS))
    validate.integer("n_calib", n_calib, lo=1, hi=50000)
    if n_test is not None:
        validate.integer("n_test", n_test, lo=1, hi=50000)
    validate.integer("seed", seed, lo=0)


class Setup:
    """A BN-folded network with disjoint calibration/test batches and its clean reference numbers."""

    def __init__(self, model: str, net: nn.Module, info: dict, calib: list, test: list):
        self.model, self.net, self.info, self.calib, self.test = model, net, info, calib, test
        self.stages = stages_mod.model_stages(net)
        with torch.no_grad():
            xb = test[0][0]
            if not torch.equal(stages_mod.run_stages(self.stages, 0, xb), net(xb)):
                self.stages = [(noise_layers(net) + [n for n, m in net.named_modules() if isinstance(m, nn.Linear)],
                                net)]
        self.labels = torch.cat([y for _, y in test])
        self.clean_logits = self._logits(0, [x for x, _ in test])
        self.signal_power = noise_mod.output_power(net, noise_layers(net), calib)
        self._cache_stage, self._cache = 0, [x for x, _ in test]
        self._significance: dict = {}

    @property
    def n_calib(self) -> int:
        return sum(len(y) for _, y in self.calib)

    @property
    def n_test(self) -> int:
        return len(self.labels)

    @torch.no_grad()
    def _logits(self, start: int, xs: list) -> torch.Tensor:
        return torch.cat([stages_mod.run_stages(self.stages, start, x) for x in xs])

    def stage_inputs(self, layer: str) -> tuple[int, list]:
        """Index of the stage running ``layer`` and the clean test inputs of that stage (cached:
        only the latest stage is kept, so sweeps should visit layers in forward order)."""
        s = stages_mod.stage_of(self.stages, layer)
        if s != self._cache_stage:
            start = self._cache_stage if s > self._cache_stage else 0
            xs = self._cache if s > self._cache_stage else [x for x, _ in self.test]
            with torch.no_grad():
                self._cache = [stages_mod.run_stages(self.stages, start, x, s) for x in xs]
            self._cache_stage = s
        return s, self._cache

    def logits_from(self, layer: str) -> torch.Tensor:
        """Test logits, running the network from the stage holding ``layer`` (any hooks apply)."""
        s, xs = self.stage_inputs(layer)
        return self._logits(s, xs)

    def accuracy(self, logits: torch.Tensor) -> dict:
        return topk_accuracy(logits, self.labels)

    def significance(self, producer: str, consumer: str) -> pd.DataFrame:
        key = (producer, consumer)
        if key not in self._significance:
            self._significance[key] = sig.data_aware_significance(self.net, producer, consumer, self.calib)
        return self._significance[key]


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Top-1 and top-5 accuracy in [0, 1] (top-5 = the label is among the 5 largest logits)."""
    k = min(5, logits.shape[1])
    top = logits.topk(k, dim=1).indices
    hit = top == labels.view(-1, 1)
    return {"top1": hit[:, 0].float().mean().item(), "top5": hit.any(1).float().mean().item()}


@functools.lru_cache(maxsize=2)
def setup(model: str, n_calib: int, n_test, seed: int, zoo_json: str = "{}") -> Setup:
    """The shared :class:`Setup` (cached per parameters in this process)."""
    validate_common(model, n_calib, n_test, seed)
    spec = models.spec(model)
    overrides = json.loads(zoo_json) if spec.origin == "zoo" else {}
    net, info = models.get_model(model, seed=seed, **overrides)
    net = quant.fold_batchnorm(net).eval()
    dev = config.device()
    net = net.to(dev)
    (xc, yc), (xt, yt) = data.evaluation_split(spec.dataset, spec.normalization, n_calib, n_test, seed)

    def batches(x, y):
        return [(xb.to(dev), yb.to(dev)) for xb, yb in data.batches(x, y, BATCH)]

    return Setup(model, net, info, batches(xc, yc), batches(xt, yt))


def network_info(model: str, n_calib: int, n_test, seed: int, zoo_json: str = "{}") -> dict:
    """Clean accuracy and split sizes of one network (one row of the ``networks`` table)."""
    s = setup(model, n_calib, n_test, seed, zoo_json)
    acc = s.accuracy(s.clean_logits)
    macs = conv_macs(s)
    return {"model": model, "dataset": models.spec(model).dataset, "n_calib": s.n_calib, "n_test": s.n_test,
            "clean_top1": acc["top1"], "clean_top5": acc["top5"], "conv_macs": int(sum(macs.values())),
            "zoo_test_accuracy": s.info.get("test_accuracy"), "origin": models.spec(model).origin}


def conv_macs(s: Setup) -> dict[str, int]:
    """MACs per image of every conv and linear layer (one forward pass of one image)."""
    census = layer_census(s.net, s.test[0][0][:1])
    return dict(zip(census["layer"], census["macs"].astype(int).tolist()))


def layer_table(model: str, n_calib: int, n_test, seed: int, zoo_json: str = "{}") -> pd.DataFrame:
    """Per conv layer: clean output power on the calibration split (and in dBW) and its MACs."""
    s = setup(model, n_calib, n_test, seed, zoo_json)
    macs = conv_macs(s)
    rows = []
    for i, name in enumerate(noise_layers(s.net)):
        p = s.signal_power[name]
        rows.append({"model": model, "layer_index": i, "layer": name, "signal_power": p,
                     "signal_power_dbw": 10 * math.log10(p) if p > 0 else -math.inf, "macs": macs[name]})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- Figs. 5 and 6: noise


def noise_point(model: str, layer: str, level: float | None, level_unit: str, bias_sigma: float, noise_seed: int,
                n_calib: int, n_test, seed: int, zoo_json: str = "{}") -> dict:
    """Accuracy with N(bias, σ²) added to the output of ``layer``; ``level=None`` is the clean net.

    ``level``: SNR in dB against the layer's calibrated output power (``level_unit="snr_db"``) or
    absolute noise power in dBW (``"dbw"``). ``bias_sigma``: the bias as a multiple of σ.
    """
    validate.choice("level_unit", level_unit, LEVEL_UNITS)
    s = setup(model, n_calib, n_test, seed, zoo_json)
    power = s.signal_power[layer]
    if level is None:
        var = 0.0
    elif level_unit == "snr_db":
        var = noise_mod.snr_to_variance(level, power)
    else:
        var = noise_mod.dbw_to_variance(level)
    std = math.sqrt(var)
    bias = bias_sigma * std
    with noise_mod.inject(s.net, layer, power_dbw=10 * math.log10(var) if var > 0 else -math.inf,
                          bias=bias, seed=noise_seed) as handle:
        logits = s.logits_from(layer)
        real = handle.realised()[layer]
    acc = s.accuracy(logits)
    return {"model": model, "layer": layer, "level": level, "level_unit": level_unit, "bias_sigma": bias_sigma,
            "noise_seed": noise_seed, "noise_std": std, "bias": bias,
            "noise_dbw": 10 * math.log10(var) if var > 0 else None,
            "snr_db": 10 * math.log10(power / var) if var > 0 else None,
            "realised_snr_db": (10 * math.log10(power / real["noise_power"]) if real["noise_power"] > 0 else None),
            "signal_power": power, **acc,
            "agreement_with_clean": (logits.argmax(1) == s.clean_logits.argmax(1)).float().mean().item()}


def noise_sweep(model: str, layers: list[str], levels: list[float], level_unit: str, biases: list[float],
                noise_seeds: list[int], n_calib: int, n_test, seed: int, zoo_json: str = "{}",
                include_clean: bool = True) -> pd.DataFrame:
    """Grid of :func:`noise_point` over layers (outer, forward order) x levels x biases x seeds."""
    points = []
    for layer in layers:
        if include_clean:
            points.append(dict(model=model, layer=layer, level=None, level_unit=level_unit, bias_sigma=0.0,
                               noise_seed=0, n_calib=n_calib, n_test=n_test, seed=seed, zoo_json=zoo_json))
        points += [dict(model=model, layer=layer, level=float(lv), level_unit=level_unit, bias_sigma=float(b),
                        noise_seed=int(ns), n_calib=n_calib, n_test=n_test, seed=seed, zoo_json=zoo_json)
                   for lv in levels for b in biases for ns in noise_seeds]
    return pd.DataFrame(sweep.run_grid(noise_point, points, name=NOISE_VERSION))


def check_layers(model: str, layers, n_calib: int, n_test, seed: int, zoo_json: str = "{}") -> list[str]:
    """``layers`` ("all" or a list of conv names) resolved and checked against the network."""
    s = setup(model, n_calib, n_test, seed, zoo_json)
    allowed = noise_layers(s.net)
    if layers == "all":
        return allowed
    layers = validate.as_list("layers", layers)
    bad = [n for n in layers if n not in allowed]
    if bad:
        raise validate.ParameterError(f"parameter layers: {bad} are not conv layers of {model}; allowed: {allowed}")
    return sorted(layers, key=allowed.index)


def tolerance(df: pd.DataFrame, metric: str, drop_to: float, x: str) -> pd.DataFrame:
    """Per layer, the noise level (column ``x``) at which the seed-averaged ``metric`` first falls to
    ``drop_to`` x the clean value, interpolated linearly between grid points (NaN if never).

    For ``x="snr_db"`` the level is the SNR (larger = less noise tolerated); for ``"noise_dbw"`` the
    absolute power (larger = more tolerated).
    """
    rows = []
    for (model, layer), g in df.groupby(["model", "layer"], sort=False):
        clean = g[g["level"].isna()][metric]
        noisy = g[g["level"].notna() & (g["bias_sigma"] == 0)]
        if clean.empty or noisy.empty:
            continue
        target = drop_to * float(clean.iloc[0])
        curve = noisy.groupby(x)[metric].mean().sort_index(ascending=(x == "noise_dbw"))
        # walk from the least noisy level towards the noisiest
        xs, ys = curve.index.to_numpy(float), curve.to_numpy(float)
        value = math.nan
        prev_x, prev_y = None, float(clean.iloc[0])
        for xi, yi in zip(xs, ys):
            if yi <= target:
                value = xi if prev_x is None else prev_x + (target - prev_y) * (xi - prev_x) / (yi - prev_y)
                break
            prev_x, prev_y = xi, yi
        rows.append({"model": model, "layer": layer, f"{x}_at_{metric}_x{drop_to:g}": value})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- Figs. 7 and 8: distributions


@torch.no_grad()
def channel_distributions(model: str, producer: str, consumer: str, channels: list[int], bins: int, n_calib: int,
                          n_test, seed: int, zoo_json: str = "{}") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Histograms (density) of the consumer's input activations of ``channels`` over the calibration
    split (Fig. 7: fm_{i+1}), and of the consumer weights reading those channels (Fig. 8), with their
    mean, standard deviation and the share of exact zeros. Returns ``(histograms, stats)``."""
    s = setup(model, n_calib, n_test, seed, zoo_json)
    prod, cons = sig._layers(s.net, producer, consumer)
    n = prod.out_channels
    bad = [c for c in channels if not 0 <= c < n]
    if bad:
        raise validate.ParameterError(f"parameter channels: {bad} outside [0, {n - 1}] for {producer}")
    acts = {c: [] for c in channels}
    layer = dict(s.net.named_modules())[consumer]

    def hook(_m, args):
        v = sig._channel_view(args[0], n).cpu()
        for c in channels:
            acts[c].append(v[c].float().numpy())

    h = layer.register_forward_pre_hook(hook)
    try:
        for x, _ in s.calib:
            s.net(x)
    finally:
        h.remove()
    w = cons.weight.detach().double().cpu()
    w = w.transpose(0, 1).reshape(n, -1) if isinstance(cons, nn.Conv2d) else \
        w.reshape(w.shape[0], n, -1).transpose(0, 1).reshape(n, -1)
    hist_rows, stat_rows = [], []
    for kind, values in (("activation", {c: np.concatenate(acts[c]) for c in channels}),
                         ("weight", {c: w[c].numpy() for c in channels})):
        for c, v in values.items():
            counts, edges = np.histogram(v, bins=bins, density=True)
            hist_rows += [{"kind": kind, "channel": c, "left": float(a), "right": float(b), "density": float(d)}
                          for a, b, d in zip(edges[:-1], edges[1:], counts)]
            stat_rows.append({"kind": kind, "producer": producer, "consumer": consumer, "channel": c,
                              "count": int(v.size), "mean": float(v.mean()), "std": float(v.std()),
                              "zero_share": float((v == 0).mean()), "min": float(v.min()), "max": float(v.max())})
    return pd.DataFrame(hist_rows), pd.DataFrame(stat_rows)


# --------------------------------------------------------------------------- Figs. 10 and 11: pruning


def prune_order(s: Setup, producer: str, consumer: str, ranking: str, seed: int) -> np.ndarray:
    """Filter indices of ``producer``, least significant first, for ``ranking``."""
    validate.choice("ranking", ranking, RANKINGS)
    if ranking == "random":
        prod, _ = sig._layers(s.net, producer, consumer)
        return np.random.default_rng([seed, sig_hash(producer)]).permutation(prod.out_channels)
    df = s.significance(producer, consumer)
    col = {"l1": "l1", "data_aware": "significance"}[ranking]
    return sig.prune_order(df[col].to_numpy())


def sig_hash(name: str) -> int:
    """A stable small integer of a layer name (seeds the random ranking per layer)."""
    return int.from_bytes(name.encode()[:8].ljust(8, b"\0"), "little") % (2**31)


def pruning_point(model: str, producer: str, consumer: str, ranking: str, n_pruned: int, n_calib: int, n_test,
                  seed: int, zoo_json: str = "{}") -> dict:
    """Accuracy with the ``n_pruned`` least significant filters of ``producer`` removed."""
    s = setup(model, n_calib, n_test, seed, zoo_json)
    order = prune_order(s, producer, consumer, ranking, seed)
    validate.integer("n_pruned", n_pruned, lo=0, hi=len(order))
    chosen = order[:n_pruned]
    with sig.pruned(s.net, producer, consumer, chosen):
        logits = s.logits_from(producer)
    acc = s.accuracy(logits)
    m = sig.macs_saved(s.net, producer, consumer, s.test[0][0])
    total = sum(conv_macs(s).values())
    saved = n_pruned * m["per_filter_total"]
    return {"model": model, "producer": producer, "consumer": consumer, "ranking": ranking, "n_pruned": n_pruned,
            "n_filters": len(order), "fraction_pruned": n_pruned / len(order), **acc,
            "macs_saved": saved, "macs_saved_share": saved / total, "pruned_filters": [int(f) for f in chosen]}


def pruning_sweep(model: str, pairs: list[tuple[str, str]], rankings: list[str], fractions: list[float], n_calib: int,
                  n_test, seed: int, zoo_json: str = "{}") -> pd.DataFrame:
    """Grid of :func:`pruning_point`: pairs (forward order) x rankings x fractions of the filters."""
    s = setup(model, n_calib, n_test, seed, zoo_json)
    points = []
    for producer, consumer in pairs:
        n = sig._layers(s.net, producer, consumer)[0].out_channels
        counts = sorted({int(round(f * n)) for f in fractions})
        points += [dict(model=model, producer=producer, consumer=consumer, ranking=r, n_pruned=c, n_calib=n_calib,
                        n_test=n_test, seed=seed, zoo_json=zoo_json) for r in rankings for c in counts]
    df = pd.DataFrame(sweep.run_grid(pruning_point, points, name=PRUNE_VERSION))
    df["pruned_filters"] = df["pruned_filters"].map(lambda v: " ".join(map(str, v)))
    return df


def area_under_curve(df: pd.DataFrame, metric: str = "top1") -> pd.DataFrame:
    """Per (model, producer, ranking): trapezoidal area under ``metric`` vs fraction of filters pruned,
    divided by the fraction range covered (so it is the mean accuracy along the curve, in [0, 1])."""
    rows = []
    for (model, producer, ranking), g in df.groupby(["model", "producer", "ranking"], sort=False):
        g = g.sort_values("fraction_pruned")
        x, y = g["fraction_pruned"].to_numpy(float), g[metric].to_numpy(float)
        span = x[-1] - x[0]
        area = float(np.trapezoid(y, x) / span) if span > 0 else float(y[0])
        rows.append({"model": model, "producer": producer, "ranking": ranking, f"auc_{metric}": area,
                     "fraction_max": float(x[-1]), "points": len(x)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- notebook parameters


def validate_models(model_names, n_calib: int, n_test, seed: int) -> list[str]:
    """Check the parameters shared by the hanif2018 notebooks without loading any network."""
    names = validate.as_list("models", model_names)
    if not names:
        raise validate.ParameterError("parameter models is empty; give at least one of " + ", ".join(models.MODELS))
    validate.unique("models", names)
    for m in names:
        validate.choice("models", m, list(models.MODELS))
        validate_common(m, n_calib, n_test, seed)
    return names


def validate_levels(levels, level_unit: str, noise_seeds) -> None:
    validate.choice("level_unit", level_unit, LEVEL_UNITS)
    vals = validate.as_list("levels", levels)
    if not vals:
        raise validate.ParameterError("parameter levels is empty; give noise levels in dB (SNR) or dBW")
    for v in vals:
        validate.number("levels", v, lo=-100.0, hi=200.0)
    validate.unique("levels", vals)
    seeds = validate.as_list("noise_seeds", noise_seeds)
    if not seeds:
        raise validate.ParameterError("parameter noise_seeds is empty; give at least one seed")
    for s in seeds:
        validate.integer("noise_seeds", s, lo=0)
    validate.unique("noise_seeds", seeds)


def layers_for(layers, model: str):
    """The ``layers`` parameter of one model: a dict per model, "all", or one list for every model."""
    if isinstance(layers, dict):
        return layers.get(model, "all")
    return layers


# --------------------------------------------------------------------------- Fig. 4: the noise itself


def ks_normal(values: np.ndarray, std: float) -> tuple[float, float]:
    """Kolmogorov-Smirnov statistic of ``values`` against N(0, std²) and its asymptotic p-value
    (Kolmogorov distribution with Stephens' small-sample correction)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    cdf = 0.5 * (1.0 + np.vectorize(math.erf)(v / (std * math.sqrt(2.0))))
    i = np.arange(1, n + 1)
    d = float(max((i / n - cdf).max(), (cdf - (i - 1) / n).max()))
    lam = (math.sqrt(n) + 0.12 + 0.11 / math.sqrt(n)) * d
    p = 2.0 * sum((-1) ** (k - 1) * math.exp(-2.0 * k * k * lam * lam) for k in range(1, 101))
    return d, float(min(max(p, 0.0), 1.0))


@torch.no_grad()
def noise_sample(model: str, layer: str, power_dbw: float, noise_seed: int, n_images: int, n_ks: int, bins: int,
                 n_calib: int, n_test, seed: int, zoo_json: str = "{}") -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The noise :func:`axlib.nn.noise.inject` adds at ``layer`` (noisy minus clean output) over the
    first ``n_images`` calibration images, at ``power_dbw``. Returns ``(sample, histogram, stats)``:
    the first 1000 values in output order, a density histogram over ±5σ with the N(0, σ²) density at
    each bin centre, and mean, variance, realised power, skewness, excess kurtosis and a KS test on
    ``n_ks`` values drawn at random from all of them."""
    s = setup(model, n_calib, n_test, seed, zoo_json)
    validate.integer("n_images", n_images, lo=1, hi=s.n_calib)
    mod = dict(s.net.named_modules())[layer]
    xs = torch.cat([x for x, _ in s.calib])[:n_images]
    outs = []

    def capture(_m, _a, o):
        outs.append(o.detach().double().cpu())

    h = mod.register_forward_hook(capture)  # clean pass
    try:
        s.net(xs)
    finally:
        h.remove()
    with noise_mod.inject(s.net, layer, power_dbw=power_dbw, seed=noise_seed) as handle:
        h = mod.register_forward_hook(capture)  # registered after the noise hook: sees the noisy output
        try:
            s.net(xs)
        finally:
            h.remove()
        real = handle.realised()[layer]
    if len(outs) != 2 or torch.equal(outs[0], outs[1]) and power_dbw > -math.inf:
        raise RuntimeError("the noise hook did not change the layer output")
    eps = (outs[1] - outs[0]).numpy().ravel()
    std = math.sqrt(noise_mod.dbw_to_variance(power_dbw))
    mean, var = float(eps.mean()), float(eps.var())
    z = (eps - mean) / math.sqrt(var)
    rng = np.random.default_rng([seed, noise_seed])
    d, p = ks_normal(rng.choice(eps, size=min(n_ks, eps.size), replace=False), std)
    edges = np.linspace(-5 * std, 5 * std, bins + 1)
    dens, _ = np.histogram(eps, bins=edges, density=True)
    centre = 0.5 * (edges[:-1] + edges[1:])
    pdf = np.exp(-0.5 * (centre / std) ** 2) / (std * math.sqrt(2 * math.pi))
    hist = pd.DataFrame({"left": edges[:-1], "right": edges[1:], "density": dens, "normal_pdf": pdf})
    sample = pd.DataFrame({"index": np.arange(min(1000, eps.size)), "noise": eps[:1000]})
    stats = {"model": model, "layer": layer, "requested_dbw": power_dbw, "requested_std": std, "count": int(eps.size),
             "mean": mean, "variance": var, "realised_dbw": 10 * math.log10(var), "skewness": float((z**3).mean()),
             "excess_kurtosis": float((z**4).mean() - 3), "ks_statistic": d, "ks_p_value": p, "ks_n": int(min(n_ks, eps.size)),
             "hook_noise_power": real["noise_power"], "outside_4sigma_share": float((np.abs(eps) > 4 * std).mean())}
    return sample, hist, stats
