"""The ponzina2022 pages' common steps: parameter checks, networks and ensembles, the selection and
report splits, and the per-network results of the flow (:mod:`axlib.methods.ensembles`).

Splits (our choice; the paper reports CIFAR-100 test accuracy without a selection split): every
decision (best ensemble size, heterogeneous quantization, sensitivity order, mapping) is taken on a
*selection* split of ``n_select`` test images; every accuracy shown is measured on a disjoint *report*
split of ``n_report`` test images (:func:`axlib.data.evaluation_split`); quantization steps are
calibrated on ``n_calib`` training images. The accuracy constraint: ensemble top-1 on the selection
split ≥ the single instance's 8/16 top-1 there − ``max_drop_pp``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pandas as pd

from axlib import data, validate
from axlib.methods import ensembles as E
from axlib.models import ensemble as ens

#: Product path of the inexact layers. The dispatcher's "auto" mode times the LUT kernel against the
#: exact low-rank path for every new layer shape; for the byte tables of MulF6B and Mul8VH it measured
#: the low-rank path 4-14x slower on every CifarQuick layer (2 CPU cores), so these pages skip the timing.
PATH = "lut"

#: Networks of these pages: the ensemble bases, and the pretrained ResNet-20 (single instance only).
NETS = (*ens.ENSEMBLE_BASES, "resnet20")
DATASETS = ("cifar10", "cifar100")


def check_nets(name: str, nets, allowed=NETS) -> list[str]:
    nets = validate.unique(name, validate.nonempty(name, nets, f"network of {list(allowed)}"))
    for n in nets:
        validate.choice(name, n, list(allowed))
    return nets


def check_ensembles(name: str, ensembles, nets: Sequence[str]) -> dict[str, list[int]]:
    """``{net: [M, ...]}`` for every ensemble base in ``nets`` (sizes 2..16, distinct, non-empty);
    the pretrained ResNet-20 has no ensembles."""
    validate.mapping(name, ensembles)
    unknown = sorted(set(ensembles) - set(nets))
    if unknown:
        raise validate.ParameterError(f"parameter {name} names network(s) {unknown} that are not in nets {list(nets)}")
    out = {}
    for net, ms in ensembles.items():
        if net not in ens.ENSEMBLE_BASES:
            raise validate.ParameterError(f"parameter {name}[{net!r}]: only {list(ens.ENSEMBLE_BASES)} form ensembles")
        ms = validate.unique(f"{name}[{net!r}]", validate.nonempty(f"{name}[{net!r}]", ms, "ensemble size M"))
        for m in ms:
            ens.check_m(m)
            if m < 2:
                raise validate.ParameterError(f"parameter {name}[{net!r}] holds M={m}; ensembles have M ≥ 2 "
                                              "(the single instance is always included)")
        out[net] = [int(m) for m in ms]
    return out


def check_zoo(name: str, zoo, nets: Sequence[str]) -> dict:
    """Per-network training-recipe overrides ``{net: {field: value}}`` (checked against each zoo recipe)."""
    from axlib.models import spec
    from axlib.models.zoo import check_overrides

    validate.mapping(name, zoo)
    for net, ov in zoo.items():
        if net not in ens.ENSEMBLE_BASES:
            raise validate.ParameterError(f"parameter {name}[{net!r}]: only the zoo networks "
                                          f"{list(ens.ENSEMBLE_BASES)} are trained here")
        validate.mapping(f"{name}[{net!r}]", ov)
        check_overrides(spec(net).recipe, dict(ov))
    return dict(zoo)


def check_common(nets, n_select, n_report, n_calib, seed, dataset, max_drop_pp=5.0, unit="Mul8VH") -> None:
    check_nets("nets", nets)
    validate.integer("n_select", n_select, lo=1, hi=9999)
    validate.integer("n_report", n_report, lo=1, hi=10000 - n_select)
    validate.integer("n_calib", n_calib, lo=1, hi=50000)
    validate.integer("seed", seed, lo=0, hi=(2**32 - 1) // 100 - 1)
    validate.choice("dataset", dataset, list(DATASETS))
    if dataset != "cifar10" and "resnet20" in nets:
        raise validate.ParameterError("the pretrained resnet20 is a CIFAR-10 network; use dataset='cifar10' or drop it")
    E.check_limit("max_drop_pp", max_drop_pp)
    E.check_inexact("unit", unit)


def load_models(net: str, ms: Sequence[int], zoo: Mapping, seed: int, dataset: str = "cifar10",
                progress: bool = True) -> tuple[dict, pd.DataFrame]:
    """``({M: network}, info table)``: M = 1 is the single instance, then each ensemble of ``ms``.

    Info per M: width, MACs per image and parameters (whole ensemble), per-instance test accuracy of
    the zoo training, and the training seconds recorded by that (cached) training."""
    from axlib.models import get_model

    models, rows = {}, []
    if net == "resnet20":
        model, info = get_model(net)
        models[1] = model
        rows.append({"net": net, "M": 1, "width": 1.0, "train_time_s": 0.0, "instance_test_accuracy": "pretrained"})
    else:
        for m in (1, *ms):
            model, info = ens.get_ensemble(net, m, seed, progress, dataset=dataset, **dict(zoo.get(net, {})))
            models[m] = model.m0 if m == 1 else model  # the single network under its own layer names
            rows.append({"net": net, "M": m, "width": info["width"], "train_time_s": info["train_time_s"],
                         "instance_test_accuracy": ", ".join(f"{100 * i['test_accuracy']:.2f}"
                                                             for i in info["instances"])})
    for r, model in zip(rows, models.values(), strict=True):
        r["macs"] = ens.macs_per_image(model)
        r["parameters"] = sum(p.numel() for p in model.parameters())
    return models, pd.DataFrame(rows)


def splits(net: str, n_select: int, n_report: int, n_calib: int, seed: int, dataset: str = "cifar10"):
    """``(select, report, calib)``: two disjoint test subsets ``(x, y)`` and calibration batches."""
    from axlib.models import spec

    norm = spec(net).normalization
    select, report = data.evaluation_split(dataset, norm, n_select, n_report, seed)
    xc, yc = data.tensors(dataset, "train", norm, n=n_calib, seed=seed)
    return select, report, list(data.batches(xc, yc, 256))


def members_of(model) -> callable:
    """``members(layer)``: the configuration names of a single-network layer in ``model``."""
    if isinstance(model, ens.Ensemble):
        return lambda layer: ens.instance_layers(model, layer)
    return lambda layer: [layer]


def instance_layer_lists(model, layers: Sequence[str]) -> list[list[str]]:
    """Per instance, its layer names in topological order (one list for a single network)."""
    if isinstance(model, ens.Ensemble):
        return [[f"m{k}.{n}" for n in layers] for k in range(model.size)]
    return [list(layers)]


def all_8_16(units: Mapping[str, str], layers: Sequence[str], unit: str) -> dict:
    """``units`` with ``unit`` in every layer still at 8/16 (4/8 layers keep Exact8)."""
    return {n: (unit if units.get(n, "Exact16") == "Exact16" else units[n]) for n in layers}


class NetFlow:
    """One network's single instance and ensembles with evaluators on both splits."""

    def __init__(self, net: str, ms: Sequence[int], zoo: Mapping, n_select: int, n_report: int, n_calib: int,
                 seed: int, dataset: str = "cifar10", progress: bool = True):
        self.net, self.progress = net, progress
        self.models, self.info = load_models(net, ms, zoo, seed, dataset, progress)
        select, report, calib = splits(net, n_select, n_report, n_calib, seed, dataset)
        self.sel = {m: E.ConfigEvaluator(model, calib, *select, path=PATH) for m, model in self.models.items()}
        self.rep = {m: E.ConfigEvaluator(model, calib, *report, path=PATH) for m, model in self.models.items()}
        self.single_layers = self.sel[1].layers
        self.baseline_macs = sum(self.sel[1].macs.values())

    def threshold(self, max_drop_pp: float) -> float:
        """Selection-split top-1 the constraint demands: single 8/16 − ``max_drop_pp``."""
        return self.sel[1]({}) - max_drop_pp

    def point(self, m: int, units: Mapping[str, str], series: str, **extra) -> dict:
        ev = self.rep[m]
        counts = pd.Series([units.get(n, "Exact16") for n in ev.layers]).value_counts()
        return {"net": self.net, "series": series, "M": m, "accuracy_pct": ev(units),
                "selection_accuracy_pct": self.sel[m](units),
                "energy_reduction_pct": E.energy_reduction_pct(ev.macs, units, self.baseline_macs),
                **{f"n_{u}": int(counts.get(u, 0)) for u in E.UNITS}, **extra}

    def best_ensemble(self) -> int:
        """The ensemble size with the highest 8/16 selection accuracy (ties: the smaller M)."""
        ms = [m for m in self.models if m > 1]
        if not ms:
            return 1
        return max(ms, key=lambda m: (self.sel[m]({}), -m))

    def heterogeneous(self, m: int, max_drop_pp: float) -> tuple[dict, pd.DataFrame]:
        """Stage 1b on the ``m``-instance network (greedy 4/8, selection split)."""
        lists = instance_layer_lists(self.models[m], self.single_layers)
        units, trace = E.greedy_quantization(lists, self.sel[m], self.threshold(max_drop_pp))
        trace.insert(0, "net", self.net)
        trace.insert(1, "M", m)
        return units, trace

    def sensitivity(self, unit: str = "Mul8VH", reuse_inputs: bool = True) -> pd.DataFrame:
        t0 = time.perf_counter()
        out = E.sensitivity(self.sel[1], unit, reuse_inputs, self.progress)
        out.insert(0, "net", self.net)
        out["total_seconds"] = time.perf_counter() - t0
        return out

    def mapping(self, m: int, units: Mapping[str, str], order: Sequence[str], max_drop_pp: float,
                unit: str = "Mul8VH", skip_violations: bool = False) -> tuple[dict, pd.DataFrame]:
        out, trace = E.map_inexact(units, order, members_of(self.models[m]), self.sel[m], self.threshold(max_drop_pp),
                                   unit, skip_violations)
        trace.insert(0, "net", self.net)
        trace.insert(1, "M", m)
        return out, trace

