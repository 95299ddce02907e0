"""The two-stage flow of ponzina2022 (§3): ensembles, greedy heterogeneous quantization, per-layer
sensitivity to an inexact multiplier, sensitivity-ordered mapping of that multiplier, and the
energy and area arithmetic of §5.

A configuration assigns every Conv2d/Linear layer one multiplier *unit* (:data:`UNITS`):
``Exact16`` (exact 8/16 layer: 8-bit weights, 16-bit activations), ``MulF6B`` / ``Mul8VH`` (8/16 layer
on that approximate 8x16 multiplier) or ``Exact8`` (exact 4/8 layer). Layers a configuration does not
name are ``Exact16``. Emulation: :func:`layer_config` (exact units are fake-quantized float, inexact
ones go through the multiplier's table).

Energy (§5, Table 1): ``E = Σ_l MACs_l · P(unit_l)`` with the multipliers' power ``P`` of Table 1 —
energy per multiplication taken proportional to power at one common clock (our assumption; the paper
reports "energy reduction of multiply operations" without the formula). The baseline is the single
instance with every layer on Exact16 (the reading under which Table 1 gives the paper's 14.5 % for
MulF6B everywhere and 85.6 % for Exact8 everywhere).

The search procedures take an ``evaluate(config) -> top-1 %`` callback, so they are tested on small
problems with known answers and used with :class:`ConfigEvaluator` on real networks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from axlib import config as axconfig
from axlib import validate
from axlib.multipliers import published

UNITS = ("Exact16", "MulF6B", "Mul8VH", "Exact8")
INEXACT_UNITS = ("MulF6B", "Mul8VH")
_TABLE1 = published.PONZINA2022_TABLE1.set_index("multiplier")
#: Power of each unit, µW (ponzina2022, Table 1).
POWER_UW = {u: float(_TABLE1.loc[u, "paper_power_uW"]) for u in UNITS}
#: Area of each unit, µm² (ponzina2022, Table 1).
AREA_UM2 = {u: float(_TABLE1.loc[u, "paper_area_um2"]) for u in UNITS}
#: Area increment of an Exact16 built from Exact8 units in SIMD (ponzina2022, §5.4: "6 %").
SIMD_EXACT16_INCREMENT = 0.06
#: Scheme of each unit (ponzina2022, §4: inexact multipliers only in 8/16 layers).
SCHEME = {"Exact16": "8/16", "MulF6B": "8/16", "Mul8VH": "8/16", "Exact8": "4/8"}


def check_unit(name: str, unit) -> str:
    return validate.choice(name, unit, list(UNITS))


def check_inexact(name: str, unit) -> str:
    """An approximate 8x16 multiplier name (MulF6B or Mul8VH); anything else is a ``ParameterError``."""
    return validate.choice(name, unit, list(INEXACT_UNITS))


def check_limit(name: str, value) -> float:
    """An accuracy-drop limit in pp, in (0, 100]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 < value <= 100:
        raise validate.ParameterError(f"parameter {name}={value!r} must be an accuracy drop in pp, in (0, 100]")
    return float(value)


def check_layers(name: str, layers) -> list[str]:
    """A non-empty list of distinct layer names."""
    layers = validate.unique(name, validate.nonempty(name, layers, "layer name"))
    for layer in layers:
        if not isinstance(layer, str) or not layer:
            raise validate.ParameterError(f"parameter {name} holds {layer!r}, not a layer name")
    return layers


def layer_config(unit: str):
    """The :class:`axlib.nn.LayerConfig` that emulates ``unit``."""
    from axlib.multipliers.wide import get_8x16
    from axlib.nn import LayerConfig

    check_unit("unit", unit)
    return LayerConfig(get_8x16(unit) if unit in INEXACT_UNITS else None, SCHEME[unit])


# --------------------------------------------------------------------------- energy and area


def multiply_energy(macs: Mapping[str, float], units: Mapping[str, str]) -> float:
    """``Σ_l MACs_l · P(unit_l)`` in µW·MAC (proportional to energy at a common clock); layers not in
    ``units`` are Exact16. ``units`` naming a layer absent from ``macs`` is a ``ParameterError``."""
    unknown = sorted(set(units) - set(macs))
    if unknown:
        raise validate.ParameterError(f"units name unknown layer(s) {unknown}; layers: {list(macs)}")
    return sum(float(m) * POWER_UW[check_unit(f"units[{n}]", units.get(n, "Exact16"))] for n, m in macs.items())


def energy_reduction_pct(macs: Mapping[str, float], units: Mapping[str, str], baseline_macs: float) -> float:
    """Multiply-energy reduction (%) against ``baseline_macs`` MACs all on Exact16 (the single instance)."""
    if not baseline_macs > 0:
        raise validate.ParameterError(f"baseline_macs={baseline_macs!r} must be > 0")
    return 100.0 * (1.0 - multiply_energy(macs, units) / (baseline_macs * POWER_UW["Exact16"]))


def uniform_reduction_pct(unit: str) -> float:
    """Reduction (%) when every MAC moves from Exact16 to ``unit``: ``1 - P(unit)/P(Exact16)``
    (Table 1: MulF6B 14.5 %, Exact8 85.6 %)."""
    return 100.0 * (1.0 - POWER_UW[check_unit("unit", unit)] / POWER_UW["Exact16"])


def area_combinations() -> pd.DataFrame:
    """The multiplier combinations of Fig. 6 (ponzina2022 §5.4) from Table 1's areas.

    Columns: ``combination``, ``parts``, ``area_um2``, ``overhead_pct`` (area over Exact16 alone, in %),
    and for the two proposals (Exact16 built from Exact8 units in SIMD, +6 %, beside one inexact unit)
    ``inexact_over_exact16_pct`` = area(inexact) / area(Exact16) — the reading under which the paper's
    "31 % to 71 %" follows.
    """
    a, simd = AREA_UM2, AREA_UM2["Exact16"] * (1 + SIMD_EXACT16_INCREMENT)
    rows = [("Exact16", "Exact16", a["Exact16"], None),
            ("Exact16 + Exact8", "Exact16 + Exact8", a["Exact16"] + a["Exact8"], None),
            ("Exact16 + Exact8 + MulF6B", "Exact16 + Exact8 + MulF6B", a["Exact16"] + a["Exact8"] + a["MulF6B"], None),
            ("Exact16 + Exact8 + Mul8VH", "Exact16 + Exact8 + Mul8VH", a["Exact16"] + a["Exact8"] + a["Mul8VH"], None),
            ("proposal + MulF6B", "SIMD Exact16 (Exact8 units, +6 %) + MulF6B", simd + a["MulF6B"], "MulF6B"),
            ("proposal + Mul8VH", "SIMD Exact16 (Exact8 units, +6 %) + Mul8VH", simd + a["Mul8VH"], "Mul8VH")]
    out = pd.DataFrame([{"combination": c, "parts": p, "area_um2": ar,
                         "overhead_pct": 100 * (ar / a["Exact16"] - 1),
                         "inexact_over_exact16_pct": (100 * a[i] / a["Exact16"]) if i else float("nan")}
                        for c, p, ar, i in rows])
    return out


# --------------------------------------------------------------------------- search procedures


def _record(trace: list, step: int, layer: str, unit: str, acc: float, limit: float, accepted: bool, **extra):
    trace.append({"step": step, "layer": layer, "unit": unit, "accuracy_pct": acc, "threshold_pct": limit,
                  "accepted": accepted, **extra})


def greedy_quantization(instances: Sequence[Sequence[str]], evaluate: Callable[[dict], float], threshold_pct: float,
                        start: Mapping[str, str] | None = None) -> tuple[dict, pd.DataFrame]:
    """Stage 1b (ponzina2022 §3.1): instance by instance, layer by layer in topological order, move a
    layer from 8/16 (Exact16) to 4/8 (Exact8) when ``evaluate`` of the trial configuration is still
    ≥ ``threshold_pct``; otherwise keep it at 8/16. No retraining between steps (none is stated).

    ``instances``: per instance, its layer names in topological order. Returns the final configuration
    (every layer named) and the trace (one row per trial). ``M·L`` evaluations.
    """
    if not instances:
        raise validate.ParameterError("parameter instances is empty: give each instance's layer names")
    layers = [check_layers(f"instances[{k}]", inst) for k, inst in enumerate(instances)]
    units = {n: "Exact16" for inst in layers for n in inst}
    units.update(start or {})
    trace: list = []
    for k, inst in enumerate(layers):
        for n in inst:
            trial = {**units, n: "Exact8"}
            acc = float(evaluate(trial))
            ok = acc >= threshold_pct
            if ok:
                units = trial
            _record(trace, len(trace), n, "Exact8", acc, threshold_pct, ok, instance=k)
    return units, pd.DataFrame(trace)


def map_inexact(units: Mapping[str, str], order: Sequence[str], members: Callable[[str], list[str]],
                evaluate: Callable[[dict], float], threshold_pct: float, unit: str = "Mul8VH",
                skip_violations: bool = False) -> tuple[dict, pd.DataFrame]:
    """Stage 2 (ponzina2022 §3.2): following ``order`` (layer names of the single network, least
    sensitive first), put ``unit`` into that layer of every instance where it is still 8/16 (4/8 layers
    keep Exact8); keep the change while ``evaluate`` stays ≥ ``threshold_pct``.

    ``members(layer)``: the configuration names of ``layer`` in every instance. The paper stops at the
    first violation ("until the degradation becomes unacceptable"): O(L) evaluations; with
    ``skip_violations`` the violating layer is reverted and the next one tried. A layer that is 4/8 in
    every instance is skipped without an evaluation (a trace row with ``evaluated=False``). Returns the
    final configuration and the trace (one row per layer of ``order`` reached).
    """
    check_inexact("unit", unit)
    order = check_layers("order", order)
    units = dict(units)
    trace: list = []
    for n in order:
        targets = [t for t in members(n) if units.get(t, "Exact16") == "Exact16"]
        if not targets:  # 4/8 in every instance: recorded, not evaluated
            _record(trace, len(trace), n, unit, float("nan"), threshold_pct, False, n_instances=0, evaluated=False)
            continue
        trial = {**units, **{t: unit for t in targets}}
        acc = float(evaluate(trial))
        ok = acc >= threshold_pct
        _record(trace, len(trace), n, unit, acc, threshold_pct, ok, n_instances=len(targets), evaluated=True)
        if ok:
            units = trial
        elif not skip_violations:
            break
    return units, pd.DataFrame(trace)


def sensitivity_order(drops: pd.DataFrame) -> list[str]:
    """Layer names from least to most sensitive (``drop_pp`` ascending; ties: topological order)."""
    return list(drops.sort_values(["drop_pp", "layer_index"], kind="stable")["layer"])


def first_n(order: Sequence[str], n: int, members: Callable[[str], list[str]], unit: str = "Mul8VH",
            units: Mapping[str, str] | None = None) -> dict:
    """``units`` with ``unit`` in the first ``n`` layers of ``order`` in every instance (Fig. 5)."""
    out = dict(units or {})
    for layer in list(order)[:n]:
        for t in members(layer):
            if out.get(t, "Exact16") == "Exact16":
                out[t] = unit
    return out


# --------------------------------------------------------------------------- evaluation on real networks


class ConfigEvaluator:
    """Top-1 (%) of ``model`` (a network or an :class:`axlib.models.ensemble.Ensemble`) under unit
    configurations, on the tensors ``x, y``; results cached per configuration.

    Batch norms are folded and the quantization steps calibrated once on ``calib`` (batches of
    ``(x, y)``); every configuration is then an :func:`axlib.nn.with_multiplier` /
    :func:`axlib.nn.approximate_layers` copy with every layer on its unit. ``macs``: per layer MACs of
    one image (for the energy of a configuration).
    """

    def __init__(self, model: nn.Module, calib, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250,
                 path: str | None = None):
        from axlib import energy, quant

        self.model, self.x, self.y, self.batch_size, self.path = model, x, y, batch_size, path
        self.calib = list(calib)
        self.layers = quant.layer_names(quant.fold_batchnorm(model))
        counts = energy.count_macs(model, [(x[:1], None)])
        self.macs = dict(zip(counts["layer"], counts["macs"].astype(float)))
        self._cache: dict = {}
        self.n_evaluations = 0
        self.eval_seconds = 0.0

    def build(self, units: Mapping[str, str]) -> nn.Module:
        from axlib.nn import approximate_layers

        unknown = sorted(set(units) - set(self.layers))
        if unknown:
            raise validate.ParameterError(f"units name unknown layer(s) {unknown}; layers: {self.layers}")
        cfg = {n: layer_config(units.get(n, "Exact16")) for n in self.layers}
        return approximate_layers(self.model, self.calib, cfg, path=self.path)

    def key(self, units: Mapping[str, str]) -> tuple:
        return tuple(units.get(n, "Exact16") for n in self.layers)

    @torch.no_grad()
    def __call__(self, units: Mapping[str, str]) -> float:
        k = self.key(units)
        if k not in self._cache:
            t0 = time.perf_counter()
            self._cache[k] = accuracy_pct(self.build(units), self.x, self.y, self.batch_size)
            self.eval_seconds += time.perf_counter() - t0
            self.n_evaluations += 1
        return self._cache[k]


@torch.no_grad()
def accuracy_pct(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 250) -> float:
    """Top-1 accuracy (%) of ``model`` on ``x, y``."""
    model.eval()
    correct = 0
    for i in range(0, len(y), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return 100.0 * correct / len(y)


@torch.no_grad()
def sensitivity(evaluator: ConfigEvaluator, unit: str = "Mul8VH", reuse_inputs: bool = True,
                progress: bool = True) -> pd.DataFrame:
    """Fig. 3 (ponzina2022 §5.2): top-1 with ``unit`` in one layer and Exact16 in all others, per layer.

    ``reuse_inputs``: the layers before the approximated one compute exactly what the all-Exact16
    network computes, so the input of each stage (:func:`axlib.models.stages.model_stages`) is computed
    once from the all-Exact16 network and only the stages from the approximated layer on are run
    (same result as the full network, tested). Returns per layer ``layer_index``, ``layer``,
    ``accuracy_pct``, ``drop_pp`` (against all-Exact16 on the same images), ``macs`` (one image),
    ``mac_share_pct``, plus ``exact_accuracy_pct`` and ``seconds`` (time of that layer's evaluation).
    """
    from axlib.models.stages import model_stages, run_stages, stage_of
    from axlib.nn import with_multiplier

    check_inexact("unit", unit)
    ev = evaluator
    base = ev.build({})
    exact = ev({})
    stages = model_stages(base)
    mult = layer_config(unit).multiplier
    cur_stage, cur_input = 0, ev.x  # input of stage cur_stage on all images, from the all-Exact16 network
    rows = []
    total = sum(ev.macs.values())
    bar = tqdm(ev.layers, desc=f"sensitivity ({unit})", disable=not progress, mininterval=axconfig.PROGRESS_INTERVAL_S)
    for i, layer in enumerate(bar):
        t0 = time.perf_counter()
        model = with_multiplier(base, mult, [layer])
        if reuse_inputs:
            s = stage_of(stages, layer)
            while cur_stage < s:
                cur_input = _chunked(stages[cur_stage][1], cur_input, ev.batch_size)
                cur_stage += 1
            mstages = model_stages(model)
            out = _chunked(lambda xb: run_stages(mstages, s, xb), cur_input, ev.batch_size)
            acc = 100.0 * int((out.argmax(1) == ev.y).sum()) / len(ev.y)
        else:
            acc = accuracy_pct(model, ev.x, ev.y, ev.batch_size)
        rows.append({"layer_index": i, "layer": layer, "accuracy_pct": acc, "exact_accuracy_pct": exact,
                     "drop_pp": exact - acc, "macs": ev.macs[layer], "mac_share_pct": 100 * ev.macs[layer] / total,
                     "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def _chunked(fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
