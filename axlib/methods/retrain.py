"""Approximate retraining of delaparra2021 (§4.3, §5): one routine for every method of Figs. 6-7 and Table 7.

A network is quantized 8/8 (Eq. 1; batch norm folded first) with steps calibrated on ``n_calib``
training images *for the multiplier* (so every method shares one quantization grid), then retrained
for ``epochs`` over ``n_train`` training images with one of :data:`METHODS`:

- ``none``: not retrained (the approximated network as it is);
- ``behavioral``: the LUT forward of :class:`axlib.nn.ApproxLayer` with straight-through gradients
  (Eq. 13), our stand-in for ProxSim;
- ``errmodel``: the exact quantized network plus the neuron-wise error model of Eq. (12)
  (:func:`axlib.nn.errmodel.apply_error_model`), statistics from ``p`` training images;
- ``baseline``: the weight-error model of Eq. (16) (:func:`axlib.nn.errmodel.apply_weight_error`);
- ``awgn``: white Gaussian noise at each layer's measured SNR (:func:`axlib.nn.errmodel.apply_awgn`).

The final accuracy is always measured by behavioural simulation (LUT products) on ``n_test`` test
images, with the training multiplier and with every multiplier of ``evaluate_with`` (Table 7's
cross-evaluation; ``"8bit"`` is the exact fake-quantized path). Optimiser (spec of the paper, §5):
SGD, momentum 0.9, constant learning rate ``lr``, batch 64, no weight decay, no augmentation (neither
is stated). Each (network, multiplier, method, settings) point is cached by :func:`axlib.sweep.run_grid`
and its retrained weights under ``<AXLIB_CACHE>/retrained/`` (keyed by the training settings alone), so a
cross-evaluation with other multipliers (Table 7) reuses a network retrained for Fig. 6 or 7. A damaged
weights file is discarded with a warning and the network retrained.
"""

from __future__ import annotations

import functools
import json
import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from axlib import cachefiles, config, data, models, multipliers, paths, validate
from axlib.kernels import dispatch
from axlib.nn import approximate, errmodel, with_multiplier

METHODS = ("none", "behavioral", "errmodel", "baseline", "awgn")
#: The exact fake-quantized 8-bit path in ``evaluate_with``.
EXACT_8BIT = "8bit"
RETRAIN_MODELS = ("resnet8", "resnet14", "resnet20", "allcnn_c", "allcnn_c_quarter", "resnet18")

#: delaparra2021 Table 4: FP and 8-bit top-1 (%) and MACs per image.
PAPER_TABLE4 = {
    "resnet8": {"fp_pct": 85.77, "q8_pct": 84.61, "macs": 12e6},
    "resnet14": {"fp_pct": 89.53, "q8_pct": 89.20, "macs": 27e6},
    "allcnn_c": {"fp_pct": 89.13, "q8_pct": 89.03, "macs": 281e6},
    "resnet18": {"fp_pct": 65.88, "q8_pct": 65.15, "macs": 1826e6},
}


#: delaparra2021 Table 7: top-1 (%) of a network retrained for one multiplier (row; "none": not
#: retrained) and evaluated with another (column; "8bit": exact 8-bit). The ResNet8 column printed
#: "FP" holds 84.61, ResNet8's 8-bit accuracy (Table 4), so it is read as the 8-bit column.
PAPER_TABLE7 = {
    "allcnn_c": {"none": {"8bit": 89.03, "1110": 88.64, "3330": 88.41, "2222": 85.71},
                 "1110": {"8bit": 89.00, "1110": 88.88, "3330": 88.63, "2222": 85.91},
                 "3330": {"8bit": 88.66, "1110": 88.76, "3330": 88.87, "2222": 85.99},
                 "2222": {"8bit": 88.23, "1110": 88.49, "3330": 88.39, "2222": 86.58}},
    "resnet8": {"none": {"8bit": 84.61, "1110": 82.68, "3330": 80.42, "2222": 54.41},
                "1110": {"8bit": 84.60, "1110": 85.48, "3330": 83.11, "2222": 59.74},
                "3330": {"8bit": 83.96, "1110": 84.48, "3330": 84.23, "2222": 65.31},
                "2222": {"8bit": 80.21, "1110": 80.83, "3330": 79.20, "2222": 67.96}},
}


def paper_mre_pct(multiplier: str) -> float:
    """delaparra2021 Table 2's MRE (%) of the SMApprox multiplier a ``smapprox:<dddd>`` stand-in stands for
    (NaN for any other multiplier): the paper's "MRE < 7 %" groups are formed with these values."""
    from axlib.multipliers import published

    t2 = published.DELAPARRA2021_TABLE2.set_index("multiplier")["paper_mre_pct"]
    digits = multiplier.removeprefix("smapprox:") if multiplier.startswith("smapprox:") else None
    return float(t2[digits]) if digits in t2.index else float("nan")


#: The paper's split of its multipliers (delaparra2021 §5.2.1: "MRE < 7 %" and above), by Table 2's MRE.
PAPER_MRE_SPLIT_PCT = 7.0


def check_methods(name: str, values) -> list[str]:
    values = validate.unique(name, validate.nonempty(name, values, "method"))
    for v in values:
        validate.choice(name, v, list(METHODS))
    return values


def validate_point(net: str, multiplier: str, method: str, n_train: int, epochs: int, lr: float, batch_size: int,
                   p: int, n_test: int | None, n_calib: int, seed: int, evaluate_with=()) -> None:
    """Every parameter of :func:`point` checked before any work (``ParameterError`` naming it)."""
    from axlib.methods.approx_eval import check_multipliers

    validate.choice("net", net, list(RETRAIN_MODELS))
    check_multipliers("multiplier", [multiplier])
    validate.choice("method", method, list(METHODS))
    validate.integer("n_train", n_train, lo=1, hi=50000)
    validate.integer("epochs", epochs, lo=0, hi=1000)
    validate.number("lr", lr, lo=0.0)
    validate.integer("batch_size", batch_size, lo=1, hi=65536)
    validate.integer("p", p, lo=1, hi=50000)
    if n_test is not None:
        validate.integer("n_test", n_test, lo=1, hi=10000)
    validate.integer("n_calib", n_calib, lo=1, hi=50000)
    validate.integer("seed", seed, lo=0)
    others = [m for m in validate.as_list("evaluate_with", evaluate_with) if m != EXACT_8BIT]
    if others:
        check_multipliers("evaluate_with", others)


def require_data(net: str) -> None:
    """Raise :class:`axlib.data.MissingDataError` (naming ``net`` and where the data was looked for) when
    ``net``'s dataset cannot be had: ImageNet is never downloaded, so its local folder must exist."""
    if models.spec(net).dataset == "imagenet" and not data.imagenet_available():
        raise data.MissingDataError(
            f"net={net!r} needs ImageNet, and the folder {data.imagenet_val_root()} is missing or empty. ImageNet "
            "cannot be downloaded automatically (licence): get the ILSVRC2012 validation images from "
            "https://image-net.org, sort them into one sub-folder per class (wnid) and set AXLIB_DATA.")


@functools.lru_cache(maxsize=2)
def _data(net: str, n_train: int, n_test, n_calib: int, seed: int, zoo_json: str):
    spec = models.spec(net)
    model, info = models.get_model(net, **json.loads(zoo_json))
    if spec.dataset == "imagenet":
        # ImageNet (Figs. 8-9): the paper retrains on 20 % of the training set; we use a documented split
        # of the local validation folder: the first n_train images of one seeded permutation train (the
        # first n_calib of them also calibrate), the next n_test test; the two never overlap.
        (xtr, ytr), (xt, yt) = data.evaluation_split("imagenet", "imagenet_meanstd", n_train, n_test, seed)
        return model, info, (xtr, ytr), [(xtr[:n_calib], None)], (xt, yt)
    xtr, ytr = data.tensors(spec.dataset, "train", spec.normalization, n=n_train, seed=seed + 11)
    xc, _ = data.tensors(spec.dataset, "train", spec.normalization, n=n_calib, seed=seed + 1)
    xt, yt = data.tensors(spec.dataset, "test", spec.normalization, n=n_test, seed=seed)
    return model, info, (xtr, ytr), [(xc, None)], (xt, yt)


@torch.no_grad()
def accuracy(model, x, y, batch: int = 250) -> float:
    model.eval()
    pred = torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])
    return float((pred == y).float().mean())


def train(model, x, y, epochs: int, lr: float, batch_size: int, seed: int, desc: str = "retrain",
          progress: bool = True) -> dict:
    """SGD (momentum 0.9, constant ``lr``, no weight decay) over ``(x, y)`` for ``epochs``; returns timings."""
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    steps_per_epoch = -(-len(y) // batch_size)
    bar = tqdm(total=epochs * steps_per_epoch, desc=desc, unit="step", disable=not progress,
               mininterval=config.PROGRESS_INTERVAL_S)
    model.train()
    t0 = time.perf_counter()
    losses = []
    for epoch in range(epochs):
        for xb, yb in data.batches(x, y, batch_size, shuffle=True, seed=seed * 1009 + epoch):
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses[-1]:.3f}", refresh=False)
    bar.close()
    model.eval()
    seconds = time.perf_counter() - t0
    return {"train_s": seconds, "steps": len(losses), "final_loss": losses[-1] if losses else float("nan"),
            "s_per_epoch": seconds / epochs if epochs else 0.0}


def attach(method: str, model, stats, mult, seed: int):
    """Attach ``method``'s error model to the exact quantized ``model``; returns its handle (or None)."""
    if method == "errmodel":
        return errmodel.apply_error_model(model, stats, seed=seed)
    if method == "awgn":
        return errmodel.apply_awgn(model, stats, seed=seed)
    if method == "baseline":
        mu_r, sigma_r = errmodel.relative_error_moments(mult)
        return errmodel.apply_weight_error(model, mu_r, sigma_r, seed=seed)
    return None


RETRAINED_VERSION = 1


def _weights_path(settings: dict):
    import hashlib

    from axlib.runs import canonical_json

    key = hashlib.sha256(canonical_json({"v": RETRAINED_VERSION, **settings}).encode()).hexdigest()[:16]
    return paths.cache_root() / "retrained" / f"{settings['net']}-{key}.pt"


def _load_weights(path, model) -> dict | None:
    """The stored training log, after loading the stored weights into ``model``; None if absent or damaged."""
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(blob["state"])
        return dict(blob["log"])
    except Exception as exc:  # noqa: BLE001 - any damage means: retrain
        cachefiles.discard_corrupt(path, cachefiles.describe(exc))
        return None


def point(net: str, multiplier: str, method: str, n_train: int, epochs: int, lr: float, batch_size: int, p: int,
          n_test, n_calib: int, seed: int, zoo_json: str = "{}", evaluate_with=(), progress: bool = True) -> dict:
    """Retrain ``net`` for ``multiplier`` with ``method``; accuracies by behavioural simulation.

    Returns a flat dict: settings, ``accuracy`` (with ``multiplier``), ``accuracy_8bit`` (exact
    fake-quantized path of the retrained weights), ``accuracy_float`` (the float network before any
    retraining), ``accuracy_with:<m>`` for every ``evaluate_with`` entry, training and modelling
    times in seconds.
    """
    validate_point(net, multiplier, method, n_train, epochs, lr, batch_size, p, n_test, n_calib, seed, evaluate_with)
    require_data(net)
    model, info, (xtr, ytr), calib, (xt, yt) = _data(net, n_train, n_test, n_calib, seed, zoo_json)
    mult = multipliers.get(multiplier)
    behavioural = approximate(model, mult, calib)              # steps calibrated for this multiplier
    exact = with_multiplier(behavioural, None)                 # same grid, exact products
    out = {"net": net, "multiplier": multiplier, "method": method, "n_train": n_train, "epochs": epochs, "lr": lr,
           "batch_size": batch_size, "p": p, "n_test": len(yt), "seed": seed,
           "mre_pct": multipliers.error_metrics(mult)["mre_pct"], "mre_eq2_pct": multipliers.mre_eq2_pct(mult),
           "accuracy_float": accuracy(model, xt, yt), "model_s": 0.0, "train_s": 0.0, "steps": 0}
    trained = behavioural if method == "behavioral" else exact
    if method != "none" and epochs > 0:
        settings = {k: out[k] for k in ("net", "multiplier", "method", "n_train", "epochs", "lr", "batch_size", "p",
                                        "seed")}
        settings.update(n_calib=n_calib, zoo_json=zoo_json)
        wpath = _weights_path(settings)
        log = _load_weights(wpath, trained)
        if log is None:
            stats = None
            if method in ("errmodel", "awgn"):
                t0 = time.perf_counter()
                stats = errmodel.collect(behavioural, data.batches(xtr, ytr, 100), max_images=p)
                model_s = time.perf_counter() - t0
            for q in trained.parameters():
                q.requires_grad_(True)
            handle = attach(method, trained, stats, mult, seed) if method != "behavioral" else None
            try:
                log = train(trained, xtr, ytr, epochs, lr, batch_size, seed, desc=f"{net} {multiplier} {method}",
                            progress=progress)
            finally:
                if handle is not None:
                    handle.remove()
            log["model_s"] = model_s if stats is not None else 0.0
            with cachefiles.atomic_path(wpath) as tmp:
                torch.save({"state": trained.state_dict(), "log": log}, tmp)
        out.update(log)
    final = trained if method == "behavioral" else with_multiplier(trained, mult)
    out["accuracy"] = accuracy(final, xt, yt)
    out["accuracy_8bit"] = accuracy(with_multiplier(final, None), xt, yt)
    for m in evaluate_with:
        if m == multiplier:
            out[f"accuracy_with:{m}"] = out["accuracy"]
        elif m == EXACT_8BIT:
            out[f"accuracy_with:{m}"] = out["accuracy_8bit"]
        else:
            out[f"accuracy_with:{m}"] = accuracy(with_multiplier(final, multipliers.get(m)), xt, yt)
    out["zoo_test_accuracy"] = info.get("test_accuracy")
    return out


#: Training images of one epoch: CIFAR-10's training set; ImageNet's (ILSVRC2012) and the share of it the
#: paper retrains ResNet-18 on (delaparra2021 §5.2.2: 20 %).
CIFAR_TRAIN_IMAGES, IMAGENET_TRAIN_IMAGES, IMAGENET_SHARE = 50_000, 1_281_167, 0.2


def epoch_batches(net: str, batch_size: int = 64) -> int:
    """Training steps of one epoch of ``net`` at ``batch_size`` (delaparra2021 Table 5): ⌈50,000 / batch⌉ for
    CIFAR-10, round(0.2 · 1,281,167 / batch) for ImageNet (our reading of "20 % of the training data")."""
    validate.integer("batch_size", batch_size, lo=1)
    if models.spec(net).dataset == "imagenet":
        return round(IMAGENET_SHARE * IMAGENET_TRAIN_IMAGES / batch_size)
    return math.ceil(CIFAR_TRAIN_IMAGES / batch_size)


#: Training batches of one CIFAR-10 epoch at batch 64 (782), delaparra2021 Table 5.
CIFAR_EPOCH_BATCHES = epoch_batches("resnet8", 64)


def time_epoch(net: str, multiplier: str, methods=("behavioral", "errmodel"), batch_size: int = 64,
               n_batches: int = 20, warmup: int = 2, p: int = 256, path: str | None = None, seed: int = 0,
               epoch_batches: int | None = None) -> list[dict]:
    """Seconds per training epoch of each method, timed on random inputs (delaparra2021 Tables 5-6).

    The network is built from its definition with random weights (the cost of a step does not depend
    on the weights' values), quantized 8/8 for ``multiplier`` with ``path`` (:mod:`axlib.kernels.dispatch`:
    None = ``AXLIB_APPROX_PATH``). Each method runs ``warmup`` untimed and ``n_batches`` timed
    forward+backward+SGD steps at ``batch_size``; the epoch time is the mean step time times
    ``epoch_batches`` (782 for CIFAR-10 at batch 64; ImageNet's share is the caller's). ``model_s`` is
    the time to collect the error statistics over ``p`` images (Table 6), measured once per network.
    All methods are timed in one call, side by side, on the same inputs.
    """
    validate.choice("net", net, list(RETRAIN_MODELS))
    validate.integer("batch_size", batch_size, lo=1, hi=4096)
    validate.integer("n_batches", n_batches, lo=1, hi=100000)
    validate.integer("warmup", warmup, lo=0, hi=1000)
    validate.integer("p", p, lo=1, hi=100000)
    for m in validate.nonempty("methods", methods, "method"):
        validate.choice("methods", m, [x for x in METHODS if x != "none"])
    spec = models.spec(net)
    size = 224 if spec.dataset == "imagenet" else 32
    classes = 1000 if spec.dataset == "imagenet" else 10
    epoch_batches = CIFAR_EPOCH_BATCHES if epoch_batches is None else validate.integer("epoch_batches", epoch_batches,
                                                                                         lo=1)
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = spec.build().eval()
    x = torch.randn(batch_size, 3, size, size, generator=g)
    y = torch.randint(0, classes, (batch_size,), generator=g)
    mult = multipliers.get(multiplier)
    behavioural = approximate(model, mult, [(x, None)], path=path)
    exact = with_multiplier(behavioural, None)
    t0 = time.perf_counter()
    stats_batches = [(torch.randn(min(64, p - i), 3, size, size, generator=g), None) for i in range(0, p, 64)]
    stats = errmodel.collect(behavioural, stats_batches)
    model_s = time.perf_counter() - t0
    rows = []
    for method in methods:
        trained = behavioural if method == "behavioral" else exact
        handle = attach(method, trained, stats, mult, seed) if method != "behavioral" else None
        opt = torch.optim.SGD([q for q in trained.parameters()], lr=1e-6, momentum=0.9)
        trained.train()
        times = []
        try:
            for k in range(warmup + n_batches):
                t = time.perf_counter()
                loss = F.cross_entropy(trained(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if k >= warmup:
                    times.append(time.perf_counter() - t)
        finally:
            if handle is not None:
                handle.remove()
        step = sum(times) / len(times)
        rows.append({"net": net, "multiplier": multiplier, "method": method, "path": path or dispatch.default_path(),
                     "batch_size": batch_size, "n_batches": n_batches, "s_per_batch": step,
                     "s_per_batch_min": min(times), "s_per_epoch": step * epoch_batches,
                     "epoch_batches": epoch_batches, "model_s": model_s, "p": p, "threads": torch.get_num_threads()})
    return rows


def study(nets, mults, methods, n_train: int, epochs: int, lr: float, batch_size: int, p: int, n_test, n_calib: int,
          seed: int, zoo_json: str = "{}", evaluate_with=(), progress: bool = True):
    """:func:`point` for every (net, multiplier, method), cached per point; one tidy row per point."""
    import pandas as pd

    from axlib import sweep

    nets = validate.unique("nets", validate.nonempty("nets", nets, f"network of {list(RETRAIN_MODELS)}"))
    from axlib.methods.approx_eval import check_multipliers

    mults = check_multipliers("multipliers", mults)
    methods = check_methods("methods", methods)
    for n in nets:
        validate.choice("nets", n, list(RETRAIN_MODELS))
    points = [dict(net=n, multiplier=m, method=k, n_train=n_train, epochs=epochs, lr=lr, batch_size=batch_size, p=p,
                   n_test=n_test, n_calib=n_calib, seed=seed, zoo_json=zoo_json, evaluate_with=list(evaluate_with))
              for n in nets for m in mults for k in methods]
    for pt in points:
        validate_point(**{k: v for k, v in pt.items() if k != "zoo_json"})
    for n in nets:
        require_data(n)
    rows = sweep.run_grid(point, points, name=f"delaparra2021-retrain-v{RETRAINED_VERSION}", progress=progress)
    return pd.DataFrame(rows)

def macs_per_image(net: str) -> int:
    """MACs of one image through ``net``'s definition (random weights; 32x32 CIFAR, 224x224 ImageNet)."""
    from axlib import energy

    spec = models.spec(net)
    size = 224 if spec.dataset == "imagenet" else 32
    with torch.no_grad():
        return int(energy.count_macs(spec.build().eval(), [(torch.zeros(1, 3, size, size), None)])["macs"].sum())


def network_point(net: str, n_test, n_calib: int, seed: int, zoo_json: str = "{}") -> dict:
    """delaparra2021 Table 4 for one network: float and 8-bit (exact fake-quantized, Eq. 1) top-1 on
    ``n_test`` seeded test images, and MACs per image."""
    validate.choice("net", net, [m for m in RETRAIN_MODELS if m != "resnet18"])
    model, info, _, calib, (xt, yt) = _data(net, 1, n_test, n_calib, seed, zoo_json)
    q8 = approximate(model, None, calib)
    return {"net": net, "accuracy_float": accuracy(model, xt, yt), "accuracy_8bit": accuracy(q8, xt, yt),
            "macs": macs_per_image(net), "n_test": len(yt), "origin": models.spec(net).origin,
            "zoo_test_accuracy": info.get("test_accuracy"), "recipe": json.dumps(info.get("recipe"), sort_keys=True)}



__all__ = ["CIFAR_EPOCH_BATCHES", "CIFAR_TRAIN_IMAGES", "EXACT_8BIT", "IMAGENET_SHARE", "IMAGENET_TRAIN_IMAGES",
           "METHODS", "PAPER_MRE_SPLIT_PCT", "PAPER_TABLE4", "PAPER_TABLE7", "RETRAIN_MODELS", "accuracy", "attach",
           "check_methods", "epoch_batches", "macs_per_image", "network_point", "paper_mre_pct", "point",
           "require_data", "study", "time_epoch", "train", "validate_point"]
