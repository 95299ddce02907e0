"""Precision scaling of CNNs by fixed-point quantization (moons2016 §3.1).

Fig. 2: relative accuracy (quantized accuracy / float accuracy on the same test images) versus
the number of bits used for every layer's inputs and weights, with (a) one global power-of-two
scale and (b) one scale per layer input and per layer weights.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import torch

from axlib import config, data, models, quant, sweep, validate

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
    validate.choices("models", models_, FIG02_MODELS)
    validate.integers("bits", bits, *quant.BITS_RANGE)
    validate.choices("modes", modes, quant.MODES)
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
