"""Precision scaling of CNNs by fixed-point quantization (moons2016 §3.1).

Fig. 2: relative accuracy (quantized accuracy / float accuracy on the same test images) versus
the number of bits used for every layer's inputs and weights, with (a) one global power-of-two
scale and (b) one scale per layer input and per layer weights.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from axlib import config, data, models, quant, sweep, validate
from axlib.models import stages as stages_mod

#: The networks of the paper and their stand-ins here (paper network -> (model, dataset)).
FIG02_MODELS = ("lenet5", "cifarquick", "resnet20", "resnet32", "resnet44", "resnet56", "alexnet")
PAPER_NETWORK = {"lenet5": "LeNet-5 / MNIST", "cifarquick": "CifarQuick / CIFAR-10",
                 "resnet20": "ResNet-20 / CIFAR-10 (for AlexNet)",
                 "alexnet": "AlexNet / ImageNet"}
DISPLAY_NAME = {"lenet5": "LeNet-5", "cifarquick": "CifarQuick", "alexnet": "AlexNet", "all three": "all three"}

#: Values moons2016 states in the text of §3 / §3.1 (Fig. 2 itself is only a picture).
PAPER_FLOAT_ACCURACY = {"lenet5": 0.990, "cifarquick": 0.753, "alexnet": 0.800}  # §3 (AlexNet: top-5)
PAPER_FIG02 = pd.DataFrame([
    # mode, network, bits, relative accuracy, what the text says (moons2016 §3.1.1-3.1.2)
    ("global", "all three", 19, 1.0, "rel. acc. stays 1 for all three networks down to 19 bits"),
    ("global", "alexnet", 18, np.nan, "AlexNet starts dropping quickly at 18 bits"),
    ("global", "lenet5", 11, np.nan, "LeNet-5 drops the same way at 11 bits"),
    ("per_layer", "all three", 8, 1.0, "each network keeps its original accuracy down to 8 bits"),
    ("per_layer", "lenet5", 5, 0.994, "LeNet-5: 99.4% at 5 bits (§3.1.2)"),
    ("per_layer", "lenet5", 4, 0.866, "LeNet-5: 86.6% at 4 bits (§3.1.2)"),
], columns=["mode", "network", "bits", "relative_accuracy", "paper_text"])


def validate_fig02(models_: list, bits: list, modes: list, n_test, n_calib, seed) -> None:
    """Fail fast, before any work, with the parameter name and the allowed values."""
    validate.unique("models", validate.choices("models", models_, FIG02_MODELS))
    validate.unique("bits", validate.integers("bits", bits, *quant.BITS_RANGE))
    validate.unique("modes", validate.choices("modes", modes, quant.MODES))
    if n_test is not None:
        validate.integer("n_test", n_test, lo=1, hi=50000)
    validate.integer("n_calib", n_calib, lo=1, hi=50000)
    validate.integer("seed", seed, lo=0)


@functools.lru_cache(maxsize=8)
def _prepared(model_name: str, zoo_json: str, n_test, n_calib: int, seed: int):
    """Model (BN folded), test tensors, float accuracy and calibrated ranges; memoised per process."""
    import json

    spec = models.spec(model_name)
    model, info = models.get_model(model_name, seed=seed, **json.loads(zoo_json))
    model = quant.fold_batchnorm(model)
    if spec.dataset == "imagenet":
        test = list(data.imagenet_val(n=n_test, seed=seed))
        calib = list(data.imagenet_val(n=n_calib, seed=seed + 1))
    else:
        xt, yt = data.tensors(spec.dataset, "test", spec.normalization, n=n_test, seed=seed)
        xc, yc = data.tensors(spec.dataset, "train", spec.normalization, n=n_calib, seed=seed + 1)
        test = list(data.batches(xt, yt, 500))
        calib = list(data.batches(xc, yc, 500))
    dev = config.device()
    model = model.to(dev)
    test = [(x.to(dev), y.to(dev)) for x, y in test]
    ranges = quant.calibrate(model, [(x.to(dev), y) for x, y in calib])
    return model, test, _accuracy(model, test), ranges, info


@torch.no_grad()
def _accuracy(model, batches) -> float:
    correct = total = 0
    for xb, yb in batches:
        correct += (model(xb).argmax(1) == yb).sum().item()
        total += len(yb)
    return correct / total


def fig02_point(model: str, mode: str, bits: int, n_test, n_calib: int, seed: int, zoo_json: str = "{}") -> dict:
    """Accuracy of ``model`` with all conv/linear inputs and weights quantized to ``bits``."""
    net, test, float_acc, ranges, _ = _prepared(model, zoo_json, n_test, n_calib, seed)
    with quant.quantized(net, quant.plan(ranges, mode, bits, bits)):
        acc = _accuracy(net, test)
    return {"model": model, "mode": mode, "bits": bits, "accuracy": acc, "float_accuracy": float_acc,
            "relative_accuracy": acc / float_acc if float_acc else float("nan"),
            "n_test": sum(len(y) for _, y in test)}


def fig02_models_info(model_names: list[str], n_test, n_calib: int, seed: int, zoo_json: str = "{}") -> pd.DataFrame:
    """One row per network: dataset, float accuracy on the test subset, parameters, origin."""
    rows = []
    for name in model_names:
        net, test, float_acc, ranges, info = _prepared(name, zoo_json, n_test, n_calib, seed)
        spec = models.spec(name)
        rows.append({"model": name, "dataset": spec.dataset, "origin": spec.origin,
                     "float_accuracy": float_acc, "n_test": sum(len(y) for _, y in test),
                     "n_params": sum(p.numel() for p in net.parameters()),
                     "n_quantized_layers": len(ranges),
                     "train_time_s": info.get("train_time_s", np.nan)})
    return pd.DataFrame(rows)


def fig02_layer_ranges(model_names: list[str], n_test, n_calib: int, seed: int, zoo_json: str = "{}") -> pd.DataFrame:
    """Calibrated max |input| / |weight| per layer and the power-of-two exponents of both modes."""
    rows = []
    for name in model_names:
        _, _, _, ranges, _ = _prepared(name, zoo_json, n_test, n_calib, seed)
        g = quant.plan(ranges, "global", 8, 8)
        p = quant.plan(ranges, "per_layer", 8, 8)
        for i, (layer, r) in enumerate(ranges.items()):
            rows.append({"model": name, "layer_index": i, "layer": layer,
                         "input_max_abs": r["input_max_abs"], "weight_max_abs": r["weight_max_abs"],
                         "global_exponent": g[layer].input_exponent,
                         "per_layer_input_exponent": p[layer].input_exponent,
                         "per_layer_weight_exponent": p[layer].weight_exponent})
    return pd.DataFrame(rows)


def fig02_sweep(model_names: list[str], modes: list[str], bits: list[int], n_test, n_calib: int, seed: int,
                zoo_json: str = "{}", progress: bool = True) -> pd.DataFrame:
    """The whole Fig. 2 grid (model x mode x bits) through ``axlib.sweep`` (cached per point)."""
    points = [dict(model=m, mode=mode, bits=b, n_test=n_test, n_calib=n_calib, seed=seed, zoo_json=zoo_json)
              for m in model_names for mode in modes for b in sorted(bits)]
    rows = sweep.run_grid(fig02_point, points, name="moons2016-fig02-v1", progress=progress)
    return pd.DataFrame(rows)


def min_bits(df: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per (model, mode): the fewest bits from which on *every* larger tested bit-width keeps
    relative accuracy >= ``threshold`` (NaN when even the largest tested width fails)."""
    out = []
    for (model, mode), g in df.sort_values("bits").groupby(["model", "mode"], sort=False):
        ok = g["relative_accuracy"].to_numpy() >= threshold
        b = g["bits"].to_numpy()
        first = np.nan
        for i in range(len(b) - 1, -1, -1):
            if not ok[i]:
                break
            first = b[i]
        out.append({"model": model, "mode": mode, "min_bits": first})
    return pd.DataFrame(out)


# =========================================================================== §3.1.2-3.3
# Per-layer quantization (greedy search), MAC/zero counts and energy (moons2016 Figs. 4-7).
#
# Data: the scale calibration (largest |value| per layer) uses ``n_calib`` training images as
# for Fig. 2. The test split is cut into two disjoint parts drawn from one seeded permutation:
# a *search* split on which the greedy search measures accuracy, and a *held-out* split on which
# every final configuration is evaluated. MAC and zero counts use the first ``n_energy`` images of
# the held-out split.

SEARCH_MODELS = ("lenet5", "cifarquick", "resnet20", "resnet32", "resnet44", "resnet56")
OPERANDS = ("input", "weight")
BATCH = 500

#: moons2016 Fig. 4 caption: range of per-layer bit-widths found at 99 % relative accuracy.
PAPER_FIG04_BITS = {"lenet5": (1, 6), "cifarquick": (5, 8), "alexnet": (5, 9)}


def validate_search(models_: list, n_search: int, n_heldout, n_calib: int, seed: int, start_bits: int = 16,
                    min_bits: int = 1, targets=None, n_energy: int | None = None) -> None:
    """Fail fast, before any work, with the parameter name and the allowed values."""
    validate.unique("models", validate.choices("models", models_, SEARCH_MODELS))
    validate.integer("n_search", n_search, lo=1, hi=9999)
    if n_heldout is not None:
        validate.integer("n_heldout", n_heldout, lo=1, hi=9999)
        if n_search + n_heldout > 10000:
            raise validate.ParameterError(f"parameters n_search + n_heldout = {n_search + n_heldout} exceed the "
                                          "10000 test images; allowed: n_search + n_heldout <= 10000")
    validate.integer("n_calib", n_calib, lo=1, hi=50000)
    validate.integer("seed", seed, lo=0)
    validate.integer("start_bits", start_bits, *quant.BITS_RANGE)
    validate.integer("min_bits", min_bits, lo=1, hi=start_bits)
    if targets is not None:
        vals = validate.as_list("targets", targets)
        if not vals:
            raise validate.ParameterError("parameter targets is empty; give relative accuracies in (0, 1]")
        for t in vals:
            validate.number("targets", t, lo=0.01, hi=1.0)
    if n_energy is not None:
        validate.integer("n_energy", n_energy, lo=1, hi=9999)


class _Split:
    """A BN-folded model with its search / held-out batches, float correct counts and ranges."""

    def __init__(self, net, search, heldout, ranges, float_search, float_heldout, stages):
        self.net, self.search, self.heldout, self.ranges = net, search, heldout, ranges
        self.float_search, self.float_heldout, self.stages = float_search, float_heldout, stages

    @property
    def layers(self) -> list[str]:
        return list(self.ranges)

    def n(self, which: str) -> int:
        return sum(len(y) for _, y in getattr(self, which))


@functools.lru_cache(maxsize=4)
def _prepared_split(model_name: str, zoo_json: str, n_search: int, n_heldout, n_calib: int, seed: int) -> _Split:
    import json

    spec = models.spec(model_name)
    if spec.dataset == "imagenet":
        raise validate.ParameterError("the per-layer search runs on MNIST/CIFAR networks only; model=alexnet is not supported")
    net, _ = models.get_model(model_name, seed=seed, **json.loads(zoo_json))
    net = quant.fold_batchnorm(net)
    n_total = len(data.load_arrays(spec.dataset, "test"))
    s_idx, h_idx = data.calibration_test_split(n_total, n_search, n_heldout, seed)
    dev = config.device()
    net = net.to(dev)

    def batches(idx):
        x, y = data.tensors(spec.dataset, "test", spec.normalization, indices=idx)
        return [(xb.to(dev), yb.to(dev)) for xb, yb in data.batches(x, y, BATCH)]

    search, heldout = batches(s_idx), batches(h_idx)
    xc, yc = data.tensors(spec.dataset, "train", spec.normalization, n=n_calib, seed=seed + 1)
    ranges = quant.calibrate(net, [(x.to(dev), y) for x, y in data.batches(xc, yc, BATCH)])
    stages = model_stages(net)
    xb = search[0][0]
    with torch.no_grad():
        if not torch.equal(_run_stages(stages, 0, xb), net(xb)):
            stages = [(list(ranges), net)]  # composition does not reproduce forward(): no prefix caching
    return _Split(net, search, heldout, ranges, _correct(net, search), _correct(net, heldout), stages)


#: Stage splitting moved to :mod:`axlib.models.stages` (shared with hanif2018's sweeps).
model_stages = stages_mod.model_stages
_run_stages = stages_mod.run_stages


@torch.no_grad()
def _correct(net, batches, stages=None, start: int = 0, needed: int | None = None) -> int | None:
    """Correct predictions over ``batches`` (running ``stages[start:]`` when given).

    With ``needed``, stops as soon as ``needed`` can no longer be reached and returns None.
    """
    correct, left = 0, sum(len(y) for _, y in batches)
    for xb, yb in batches:
        out = net(xb) if stages is None else _run_stages(stages, start, xb)
        correct += (out.argmax(1) == yb).sum().item()
        left -= len(yb)
        if needed is not None and correct + left < needed:
            return None
    return correct


def greedy_search(net, ranges: dict, batches: list, float_correct: int, target: float, start_bits: int = 16,
                  min_bits: int = 1, stages=None) -> dict:
    """Per-layer greedy precision search of moons2016 §3.1.2 (per-layer power-of-two scales).

    Every layer starts at ``start_bits`` for inputs and weights. From the first layer to the
    last: lower the layer's input bits one at a time while the relative accuracy on ``batches``
    (correct / ``float_correct``) stays >= ``target``; keep the last width that passed; then do the
    same for the layer's weights. Values beyond a layer's range saturate (the quantizer clips).
    Deterministic: no randomness, fixed evaluation order.

    Returns ``input_bits`` / ``weight_bits`` (layer -> bits), the final relative accuracy on
    ``batches``, the number of evaluations and the ``trace`` of every evaluation.
    """
    import math

    validate.number("target", target, lo=0.0, hi=1.0)
    validate.integer("start_bits", start_bits, *quant.BITS_RANGE)
    validate.integer("min_bits", min_bits, lo=1, hi=start_bits)
    layers = list(ranges)
    stages = stages or [(layers, net)]
    stage_of = {layer: i for i, (names, _) in enumerate(stages) for layer in names}
    if set(stage_of) != set(layers):
        raise ValueError(f"stages cover {sorted(stage_of)}, layers are {layers}")
    bits = {"input": dict.fromkeys(layers, start_bits), "weight": dict.fromkeys(layers, start_bits)}
    needed = math.ceil(target * float_correct - 1e-9)
    trace = []

    def evaluate(s: int, cached) -> int | None:
        p = quant.plan(ranges, "per_layer", bits["input"], bits["weight"])
        with quant.quantized(net, p):
            return _correct(net, cached, stages, s, needed)

    cached, cached_stage = list(batches), 0
    for k, layer in enumerate(layers):
        s = stage_of[layer]
        if s > cached_stage:  # layers before stage s are final now: cache the input of stage s
            p = quant.plan(ranges, "per_layer", bits["input"], bits["weight"])
            with torch.no_grad(), quant.quantized(net, p):
                cached = [(_run_stages(stages, cached_stage, xb, s), yb) for xb, yb in cached]
            cached_stage = s
        for operand in OPERANDS:
            b = bits[operand][layer]
            while b - 1 >= min_bits:
                bits[operand][layer] = b - 1
                got = evaluate(s, cached)
                ok = got is not None and got >= needed
                trace.append({"layer_index": k, "layer": layer, "operand": operand, "bits": b - 1, "passed": ok,
                              "relative_accuracy": got / float_correct if got is not None and float_correct else None})
                if not ok:
                    break
                b -= 1
            bits[operand][layer] = b
    final = quant.plan(ranges, "per_layer", bits["input"], bits["weight"])
    with quant.quantized(net, final):
        got = _correct(net, batches)
    return {"input_bits": bits["input"], "weight_bits": bits["weight"], "n_evals": len(trace), "trace": trace,
            "relative_accuracy": got / float_correct if float_correct else float("nan")}


def greedy_point(model: str, target: float, start_bits: int, min_bits: int, n_search: int, n_heldout, n_calib: int,
                 seed: int, zoo_json: str = "{}") -> dict:
    """Greedy search on the search split, its result evaluated on the held-out split (one sweep point)."""
    import time

    sp = _prepared_split(model, zoo_json, n_search, n_heldout, n_calib, seed)
    t0 = time.perf_counter()
    res = greedy_search(sp.net, sp.ranges, sp.search, sp.float_search, target, start_bits, min_bits, sp.stages)
    search_time = time.perf_counter() - t0
    with quant.quantized(sp.net, quant.plan(sp.ranges, "per_layer", res["input_bits"], res["weight_bits"])):
        held = _correct(sp.net, sp.heldout)
    return {"model": model, "target": target, "start_bits": start_bits, "min_bits": min_bits,
            "layers": sp.layers, "input_bits": [res["input_bits"][n] for n in sp.layers],
            "weight_bits": [res["weight_bits"][n] for n in sp.layers],
            "search_relative_accuracy": res["relative_accuracy"], "heldout_accuracy": held / sp.n("heldout"),
            "heldout_float_accuracy": sp.float_heldout / sp.n("heldout"),
            "heldout_relative_accuracy": held / sp.float_heldout, "search_float_accuracy": sp.float_search / sp.n("search"),
            "n_search": sp.n("search"), "n_heldout": sp.n("heldout"), "n_evals": res["n_evals"],
            "search_time_s": round(search_time, 2), "trace": res["trace"]}


def greedy_sweep(model_names: list[str], targets: list[float], start_bits, min_bits: int, n_search: int, n_heldout,
                 n_calib: int, seed: int, zoo_json: str = "{}", progress: bool = True) -> list[dict]:
    """Greedy searches for every (model, target), cached per point so notebooks share them.

    ``start_bits``: one width for all models or a mapping model -> width."""
    def start(m):
        return int(start_bits[m]) if isinstance(start_bits, dict) else int(start_bits)

    points = [dict(model=m, target=float(t), start_bits=start(m), min_bits=min(min_bits, start(m)), n_search=n_search,
                   n_heldout=n_heldout, n_calib=n_calib, seed=seed, zoo_json=zoo_json)
              for m in model_names for t in targets]
    return sweep.run_grid(greedy_point, points, name="moons2016-greedy-v1", progress=progress)


def greedy_tables(results: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Tidy tables of greedy results: ``summary`` (one row per search), ``bits`` (per layer), ``trace``."""
    keys = ["model", "target"]
    summary = pd.DataFrame([{k: v for k, v in r.items() if k not in ("layers", "input_bits", "weight_bits", "trace")}
                            for r in results])
    bits = pd.DataFrame([{"model": r["model"], "target": r["target"], "layer_index": i, "layer": n,
                          "input_bits": r["input_bits"][i], "weight_bits": r["weight_bits"][i]}
                         for r in results for i, n in enumerate(r["layers"])])
    trace = pd.DataFrame([{**{k: r[k] for k in keys}, "step": j, **t} for r in results for j, t in enumerate(r["trace"])])
    return summary, bits, trace


def uniform_point(model: str, bits: int, n_search: int, n_heldout, n_calib: int, seed: int, zoo_json: str = "{}") -> dict:
    """Accuracy of uniform ``bits`` (per-layer scales) on the search and held-out splits."""
    sp = _prepared_split(model, zoo_json, n_search, n_heldout, n_calib, seed)
    with quant.quantized(sp.net, quant.plan(sp.ranges, "per_layer", bits, bits)):
        cs, ch = _correct(sp.net, sp.search), _correct(sp.net, sp.heldout)
    return {"model": model, "bits": bits, "search_relative_accuracy": cs / sp.float_search,
            "heldout_accuracy": ch / sp.n("heldout"), "heldout_relative_accuracy": ch / sp.float_heldout,
            "heldout_float_accuracy": sp.float_heldout / sp.n("heldout"),
            "search_float_accuracy": sp.float_search / sp.n("search")}


def uniform_sweep(model_names: list[str], bits: list[int], n_search: int, n_heldout, n_calib: int, seed: int,
                  zoo_json: str = "{}", progress: bool = True) -> pd.DataFrame:
    points = [dict(model=m, bits=b, n_search=n_search, n_heldout=n_heldout, n_calib=n_calib, seed=seed, zoo_json=zoo_json)
              for m in model_names for b in sorted(bits)]
    return pd.DataFrame(sweep.run_grid(uniform_point, points, name="moons2016-uniform-v1", progress=progress))


def uniform_min_bits(df: pd.DataFrame, target: float, column: str = "search_relative_accuracy",
                     slack: float | Mapping[str, float] = 0.0) -> dict:
    """Per model: fewest tested bits from which on every larger tested width keeps ``column`` >= target - slack.

    ``slack`` (relative accuracy, one value or model -> value) loosens the target, e.g. by one image of
    the search split: ``1 / (float-correct search images)`` (see :func:`study`)."""
    out = {}
    for model, g in df.sort_values("bits").groupby("model", sort=False):
        tol = float(slack[model]) if isinstance(slack, Mapping) else float(slack)
        first = np.nan
        for b, v in zip(g["bits"].to_numpy()[::-1], g[column].to_numpy()[::-1]):
            if v < target - tol - 1e-9:  # stored tables keep 10 digits; one image is >= 1e-4
                break
            first = int(b)
        out[model] = first
    return out


def image_slack(uniform: pd.DataFrame, n_search: int, images: int) -> dict:
    """Per model: ``images`` search images expressed in relative accuracy, ``images / float-correct``."""
    g = uniform.groupby("model", sort=False)["search_float_accuracy"].first()
    return {m: images / max(round(a * n_search), 1) for m, a in g.items()}


def counts_point(model: str, input_bits, weight_bits, n_energy: int, n_search: int, n_heldout, n_calib: int, seed: int,
                 zoo_json: str = "{}") -> list[dict]:
    """Exact per-layer MAC / zero counts with the given bits (int: uniform; list: per layer, in order)
    on the first ``n_energy`` held-out images; per-layer power-of-two scales."""
    from axlib import energy

    sp = _prepared_split(model, zoo_json, n_search, n_heldout, n_calib, seed)
    layers = sp.layers

    def per_layer(b):
        return b if isinstance(b, int) else dict(zip(layers, b))

    imgs, left = [], n_energy
    for xb, yb in sp.heldout:
        if left <= 0:
            break
        imgs.append((xb[:left], yb[:left]))
        left -= len(yb[:left])
    with quant.quantized(sp.net, quant.plan(sp.ranges, "per_layer", per_layer(input_bits), per_layer(weight_bits))):
        counts = energy.count_macs(sp.net, imgs)
    return counts.to_dict("records")


def counts_sweep(configs: list[dict], n_energy: int, n_search: int, n_heldout, n_calib: int, seed: int,
                 zoo_json: str = "{}", progress: bool = True) -> pd.DataFrame:
    """Counts for each ``{"model", "input_bits", "weight_bits", **labels}``; labels are copied to the rows."""
    points = [dict(model=c["model"], input_bits=c["input_bits"], weight_bits=c["weight_bits"], n_energy=n_energy,
                   n_search=n_search, n_heldout=n_heldout, n_calib=n_calib, seed=seed, zoo_json=zoo_json) for c in configs]
    results = sweep.run_grid(counts_point, points, name="moons2016-macs-v1", progress=progress)
    rows = []
    for c, res in zip(configs, results):
        labels = {k: v for k, v in c.items() if k not in ("input_bits", "weight_bits")}
        for r in res:
            i = r["layer_index"]
            rows.append({**labels, **r,
                         "input_bits": c["input_bits"] if isinstance(c["input_bits"], int) else c["input_bits"][i],
                         "weight_bits": c["weight_bits"] if isinstance(c["weight_bits"], int) else c["weight_bits"][i]})
    return pd.DataFrame(rows)


def energy_table(counts: pd.DataFrame, by: list[str], mult_share: float, law: str = "blocks") -> pd.DataFrame:
    """Relative energy (16-bit, no skipping = 1) with and without skipping per group of ``counts`` rows,
    plus the network-wide zero fractions; ``law``: the multiplier activity law of :mod:`axlib.energy`."""
    from axlib import energy

    rows = []
    for key, g in counts.groupby(by, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        ib = dict(zip(g["layer"], g["input_bits"].astype(int)))
        wb = dict(zip(g["layer"], g["weight_bits"].astype(int)))
        rows.append({**dict(zip(by, key)),
                     "energy_no_skip": energy.network_energy(g, ib, wb, skipping=False, mult_share=mult_share, law=law),
                     "energy_skip": energy.network_energy(g, ib, wb, skipping=True, mult_share=mult_share, law=law),
                     **energy.zero_fractions(g), "macs_per_image": g["macs"].sum() / g["images"].iloc[0]})
    return pd.DataFrame(rows)


def study(model_names: list[str], bits: list[int], uniform_target: float, targets: list[float], min_bits: int,
          n_search: int, n_heldout, n_calib: int, n_energy: int | None, seed: int, zoo_json: str = "{}",
          mult_share: float | None = None, progress: bool = True, uniform_slack: int = 0,
          multiplier_law: str = "blocks") -> dict[str, pd.DataFrame]:
    """Everything Figs. 4-7 need, through cached sweeps (notebooks asking for the same points share them).

    1. uniform widths ``bits`` (per-layer scales): accuracy on the search and held-out splits;
    2. per model, the uniform width at ``uniform_target`` on the search split (operating point B:
       fewest tested bits from which on every wider tested width meets it, allowing ``uniform_slack``
       search images fewer correct than the target; the widest tested width when none does);
    3. greedy per-layer searches at each of ``targets`` starting from that width;
    4. with ``n_energy``: exact MAC / zero counts of every uniform and greedy configuration and the
       relative energies (16-bit, no skipping = 1) with and without skipping, under the multiplier
       activity law ``multiplier_law`` (:data:`axlib.energy.MULTIPLIER_LAWS`; its Horowitz share when
       ``mult_share`` is None).
    """
    from axlib import energy

    law = energy.validate_law(multiplier_law)
    share = energy.horowitz_mult_share(law) if mult_share is None else energy.validate_mult_share(mult_share)
    uni = uniform_sweep(model_names, bits, n_search, n_heldout, n_calib, seed, zoo_json, progress)
    validate.integer("uniform_slack", uniform_slack, lo=0, hi=1000)
    b100 = uniform_min_bits(uni, uniform_target, slack=image_slack(uni, n_search, uniform_slack))
    start = {m: (int(b) if pd.notna(b) else int(max(bits))) for m, b in b100.items()}
    res = greedy_sweep(model_names, targets, start, min_bits, n_search, n_heldout, n_calib, seed, zoo_json,
                       progress) if targets else []
    summary, gbits, trace = greedy_tables(res) if res else (pd.DataFrame(columns=["model", "target",
                                                                                   "heldout_relative_accuracy"]),) * 3
    uni["uniform_target_bits"] = uni["model"].map(start)
    out = {"uniform": uni, "greedy": summary, "greedy_bits": gbits, "greedy_trace": trace}
    if n_energy is None:
        return out
    configs = ([{"model": m, "config": "uniform", "target": np.nan, "bits": b, "input_bits": int(b), "weight_bits": int(b)}
                for m in model_names for b in sorted(bits)]
               + [{"model": r["model"], "config": "per_layer", "target": r["target"], "bits": np.nan,
                   "input_bits": r["input_bits"], "weight_bits": r["weight_bits"]} for r in res])
    counts = counts_sweep(configs, n_energy, n_search, n_heldout, n_calib, seed, zoo_json, progress)
    out.update(counts=counts, energy=study_energy(counts, uni, summary, share, law))
    return out


def study_energy(counts: pd.DataFrame, uniform: pd.DataFrame, greedy: pd.DataFrame | None, mult_share: float,
                 law: str = "blocks") -> pd.DataFrame:
    """The ``energy`` table of :func:`study` from its stored ``counts``, ``uniform`` and ``greedy`` tables.

    The energy model (:mod:`axlib.energy`) is applied to the exact MAC / zero counts here, so a page can
    re-derive energies from a stored raw run without touching a network. One row per (model, config,
    target, bits): relative energies (16-bit, no skipping = 1) with and without skipping, the zero
    fractions of :func:`axlib.energy.zero_fractions` and the held-out relative accuracy.
    """
    en = energy_table(counts, ["model", "config", "target", "bits"], mult_share, law) if len(counts) else pd.DataFrame()
    if en.empty:
        return en
    acc_u = uniform.set_index(["model", "bits"])["heldout_relative_accuracy"]
    acc_g = (greedy.set_index(["model", "target"])["heldout_relative_accuracy"]
             if greedy is not None and len(greedy) else pd.Series(dtype=float))
    en["heldout_relative_accuracy"] = [acc_u.get((m, b)) if c == "uniform" else acc_g.get((m, t))
                                       for m, c, t, b in zip(en["model"], en["config"], en["target"], en["bits"])]
    en["mult_share"] = mult_share
    return en


def weight_table(model_names: list[str], n_calib: int, seed: int, bins: int = 101, zoo_json: str = "{}"
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fig. 3: BN-folded weights of every layer: ``hist`` (histogram over each layer's own
    symmetric range) and ``ranges`` (max |w|, per-layer power-of-two exponent, bits saved against
    the first layer and against the [-1, 1) interval, and the global exponent of Fig. 2a)."""
    hist, rows = [], []
    for name in model_names:
        net, _, _, ranges, _ = _prepared(name, zoo_json, 1, n_calib, seed)
        mods = dict(net.named_modules())
        g = quant.plan(ranges, "global", 8, 8)
        e0 = None
        for i, layer in enumerate(ranges):
            w = mods[layer].weight.detach().cpu().double().flatten().numpy()
            m = float(np.abs(w).max())
            e = quant.pow2_exponent(m)
            e0 = e if e0 is None else e0
            counts, edges = np.histogram(w, bins=bins, range=(-m, m))
            hist += [{"model": name, "layer_index": i, "layer": layer, "bin_lo": lo, "bin_hi": hi, "count": int(c)}
                     for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
            rows.append({"model": name, "layer_index": i, "layer": layer, "n_weights": w.size, "weight_max_abs": m,
                         "weight_std": float(w.std()), "exponent": e, "range_lo": -(2.0**e), "range_hi": 2.0**e,
                         "bits_saved_vs_first": e0 - e, "bits_saved_vs_unit": -e,
                         "global_exponent": g[layer].weight_exponent, "bits_saved_vs_global": g[layer].weight_exponent - e})
    return pd.DataFrame(hist), pd.DataFrame(rows)


REFERENCE_BITS_A = 16
#: moons2016 Fig. 7 cases (paper wording paraphrased).
CASES = {"A": "16-bit, no skipping", "B": "per-layer scaling, uniform width at 100 %",
         "C": "B + skipping of zero operands", "D": "per-layer scaling and per-layer widths at the target + skipping"}
#: Factors moons2016 states (abstract, §3.3, §4): 5-20x at 8 bits (Fig. 6a), >= 2x more at 99 % (Fig. 6b),
#: up to 30x without accuracy loss (C vs A), a further 7.5x at 99 % (D vs C), > 100x at 99 % (D vs A).
PAPER_FACTORS = {"8bit_lo": 5.0, "8bit_hi": 20.0, "c_over_d_min": 2.0, "a_over_c_max": 30.0, "c_over_d_max": 7.5,
                 "a_over_d": 100.0}


def energy_cases(en: pd.DataFrame, uniform: pd.DataFrame, target: float) -> pd.DataFrame:
    """Energies of cases A-D per model from :func:`study` tables ``energy`` and ``uniform``."""
    rows = []
    ub = uniform.groupby("model", sort=False)["uniform_target_bits"].first()
    for m, b in ub.items():
        u = en[(en["model"] == m) & (en["config"] == "uniform") & (en["bits"] == b)]
        d = en[(en["model"] == m) & (en["config"] == "per_layer") & np.isclose(en["target"].astype(float), target)]
        if u.empty or d.empty:
            continue
        u, d = u.iloc[0], d.iloc[0]
        a = uniform[(uniform["model"] == m) & (uniform["bits"] == REFERENCE_BITS_A)]["heldout_relative_accuracy"]
        rows += [{"model": m, "case": "A", "energy": 1.0, "heldout_relative_accuracy": a.iloc[0] if len(a) else np.nan,
                  "bits": str(REFERENCE_BITS_A)},
                 {"model": m, "case": "B", "energy": u["energy_no_skip"],
                  "heldout_relative_accuracy": u["heldout_relative_accuracy"], "bits": str(int(b))},
                 {"model": m, "case": "C", "energy": u["energy_skip"],
                  "heldout_relative_accuracy": u["heldout_relative_accuracy"], "bits": str(int(b))},
                 {"model": m, "case": "D", "energy": d["energy_skip"],
                  "heldout_relative_accuracy": d["heldout_relative_accuracy"], "bits": f"per layer @ {target:.0%}"}]
    out = pd.DataFrame(rows)
    if len(out):
        out["description"] = out["case"].map(CASES)
        out["gain_vs_A"] = 1.0 / out["energy"]
    return out
