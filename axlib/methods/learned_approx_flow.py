"""The ch. 4 CNN experiments of akhlaghi2020 as tidy tables, shared by the pages fig4_5 … fig4_13.

A *family* is one learning run (:func:`axlib.methods.learned_approx.learn`) and what is derived from
it; its tables are cached on disk by parameters, so a page that needs another page's configuration
(Fig. 4.12 uses the fine-tuned and the quantization-only ones) reuses it instead of relearning:

- ``layer``: layer-wise bits and BERs (Figs. 4.5-4.7). Two variants: ``layer`` — the last snapped
  checkpoint within 1 pp on the selection images (Eq. 4.13 "train until within 1 %"; the final one
  if none was) — and ``layer_ft`` — the final, most aggressive checkpoint with the weights then
  fine-tuned (§4.5.2).
- ``filter``: bits per output filter (weights) and per input channel (feature maps), BER per layer.
- ``quant``: layer-wise bits only, no DRAM errors (Fig. 4.11).
- ``bfloat``: BFloat mantissa bits, DRAM errors on all weights and on feature maps at the four
  pipeline-group boundaries (§4.5.3, Figs. 4.13/4.14); the FPGA allocation is applied by the page.

Every accuracy is on the *report* images (disjoint from the selection images that take the
decisions), with fresh seeded DRAM errors in two modes: ``expected`` (Eq. 4.2 as the thesis injects
it, the mode learned with) and ``bernoulli`` (each faulty word replaced).
"""

from __future__ import annotations

import functools
import hashlib
import json
import time

import pandas as pd
import torch

from axlib import cachefiles, data, paths, validate
from axlib.methods import learned_approx as L

FAMILIES = ("layer", "filter", "quant", "bfloat")
SETUPS = {
    "layer": L.Setup("fixed", "layer", True, "all"),
    "filter": L.Setup("fixed", "filter", True, "all"),
    "quant": L.Setup("fixed", "layer", False, "all"),
    "bfloat": L.Setup("bfloat", "layer", True, "boundaries"),
}
CACHE_VERSION = 2
MAX_DROP_PP = 1.0      #: Eq. 4.13


def validate_params(models, n_train, epochs, batch_size, lr, reg_share, check_every, ft_iterations, n_select,
                    n_report, seed, q_init=L.Q_INIT[0], ber_init=None) -> None:
    """Bad values are a ParameterError before any work (no data loaded)."""
    validate.unique("models", validate.nonempty("models", validate.choices("models", models, L.MODELS)))
    validate.integer("n_train", n_train, 1, 50_000)
    validate.integer("epochs", epochs, 1, 100)
    validate.integer("batch_size", batch_size, 1, 4096)
    validate.number("lr", lr, 1e-6, 10.0)
    validate.number("reg_share", reg_share, 0.0, 100.0)
    validate.integer("check_every", check_every, 1)
    validate.integer("ft_iterations", ft_iterations, 0, 100_000)
    validate.integer("n_select", n_select, 1, 10_000)
    validate.integer("n_report", n_report, 1, 10_000)
    if n_select + n_report > 10_000:
        raise validate.ParameterError(f"n_select + n_report must be ≤ 10000 test images, got {n_select + n_report}")
    validate.integer("seed", seed, 0)
    L.check_init(q_init, L.BER_INIT if ber_init is None else ber_init)


@functools.lru_cache(maxsize=2)
def _inputs(model_name: str, n_train: int, n_select: int, n_report: int, seed: int):
    model, norm = L.load_network(model_name)
    train = data.tensors("cifar10", "train", norm, n=n_train, seed=seed)
    select, report = data.evaluation_split("cifar10", norm, n_select, n_report, seed)
    return model, train, select, report


def family(model_name: str, name: str, n_train: int, epochs: int, batch_size: int, lr: float, reg_share: float,
           check_every: int, ft_iterations: int, n_select: int, n_report: int, seed: int,
           q_init: float = L.Q_INIT[0], ber_init: dict | None = None, progress: bool = True) -> dict[str, pd.DataFrame]:
    """Tables ``summary``, ``layers``, ``trace`` (and ``filters``) of one family; cached by parameters."""
    validate.choice("family", name, FAMILIES)
    settings = {"v": CACHE_VERSION, "model": model_name, "family": name, "n_train": n_train, "epochs": epochs,
                "batch_size": batch_size, "lr": lr, "reg_share": reg_share, "check_every": check_every,
                "ft_iterations": ft_iterations if name == "layer" else 0, "n_select": n_select,
                "n_report": n_report, "seed": seed, "q_init": q_init, "ber_init": {**L.BER_INIT, **(ber_init or {})}}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    path = paths.cache_root() / "cache" / "learned" / f"{model_name}-{name}-{key}.json"
    if path.exists():
        blob = cachefiles.read_json(path, "learned configuration")
        if blob is not None:
            return {k: pd.DataFrame(**v) for k, v in blob.items()}
    tables = _compute(model_name, name, settings, progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    cachefiles.write_text(path, json.dumps({k: json.loads(v.to_json(orient="split", index=False))
                                            for k, v in tables.items()}))
    return tables


def _compute(model_name: str, name: str, s: dict, progress: bool) -> dict[str, pd.DataFrame]:
    model, (xtr, ytr), (xs, ys), (xr, yr) = _inputs(model_name, s["n_train"], s["n_select"], s["n_report"], s["seed"])
    setup = SETUPS[name]
    net = L.ApproxNet(model, setup, seed=s["seed"], q_init=s["q_init"], ber_init=s["ber_init"])
    learned = L.learn(net, xtr, ytr, xs, ys, epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"],
                      check_every=s["check_every"], reg_share=s["reg_share"], seed=s["seed"], progress=progress)
    original = L.accuracy_pct(L._plain(net), xr, yr)
    sizes = L.tensor_sizes(model, xr)
    base = {"model": model_name, "model_size_mb": sum(p.numel() for p in model.parameters()) * 4 / 1e6,
            "original_select_pct": learned.original_select_pct, "original_pct": original,
            "steps": int(learned.trace["step"].max()), "learn_s": learned.seconds, **learned.lambdas}
    variants = [(name, learned.feasible or learned.final, None)]
    traces = [learned.trace.assign(phase="learn")]
    if name == "layer":
        variants.append(("layer_ft", None, "fine-tune"))
    summaries, layer_tables, filter_tables = [], [], []
    raw = L.snapshot(net, snapped=False)
    for variant, cfg, extra in variants:
        t0 = time.perf_counter()
        info = {}
        if extra == "fine-tune":
            # Fine-tuning is what lets the hardware parameters go further (§4.5.2): the learning continues
            # from where the first phase ended, for as many steps again and past the 1 pp boundary, and
            # the weights are then fine-tuned under the final snapped configuration.
            L.apply(net, raw)
            more = L.learn(net, xtr, ytr, xs, ys, epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"],
                           check_every=s["check_every"], seed=s["seed"] + 7, lambdas=learned.lambdas,
                           step0=base["steps"], original_select_pct=learned.original_select_pct, progress=progress)
            traces.append(more.trace.assign(phase="continue"))
            cfg = more.final
            info = {"continue_steps": len(more.trace), "continue_s": more.seconds,
                    "final_select_pct": float(more.trace["select_pct"].dropna().iloc[-1]),
                    **L.fine_tune(net, cfg, xtr, ytr, iterations=s["ft_iterations"], batch_size=s["batch_size"],
                                  seed=s["seed"], progress=progress)}
        L.apply(net, cfg)
        row = {**base, "variant": variant, "feasible_checkpoint": learned.feasible is not None,
               "select_pct": L.accuracy_pct(net, xs, ys, "expected", s["seed"]),
               "accuracy_expected_pct": L.accuracy_pct(net, xr, yr, "expected", s["seed"] + 1),
               "accuracy_bernoulli_pct": L.accuracy_pct(net, xr, yr, "bernoulli", s["seed"] + 1), **info}
        if setup.dram:
            row["accuracy_quant_only_pct"] = _without_dram(net, xr, yr)
        layers = L.layer_table(net, cfg, sizes).assign(model=model_name, variant=variant)
        row.update(mean_q_w=layers["q_w"].mean(), mean_q_f=layers["q_f"].mean(), mean_p_w=layers["p_w"].mean(),
                   mean_p_f=layers["p_f"].mean(), eval_s=time.perf_counter() - t0,
                   boundaries=json.dumps(cfg["boundaries"]))
        row["within_1pp"] = row["accuracy_expected_pct"] >= original - MAX_DROP_PP
        summaries.append(row)
        layer_tables.append(layers)
        if setup.granularity == "filter":
            filter_tables.append(L.filter_table(cfg).assign(model=model_name, variant=variant))
    out = {"summary": pd.DataFrame(summaries), "layers": pd.concat(layer_tables, ignore_index=True),
           "trace": pd.concat(traces, ignore_index=True).assign(model=model_name, family=name)}
    if filter_tables:
        out["filters"] = pd.concat(filter_tables, ignore_index=True)
    return out


def _without_dram(net: L.ApproxNet, x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy (%) with the configuration's bits but no DRAM errors (the quantization share)."""
    with net.without_dram():
        return L.accuracy_pct(net, x, y)


# --------------------------------------------------------------------------- DRAM voltage and energy (Fig. 4.12)


def voltages(layers: pd.DataFrame) -> pd.DataFrame:
    """``layers`` with the Table 4.6 voltage of each layer's weights (``v_w``) and feature maps (``v_f``)."""
    from axlib import energy

    return layers.assign(v_w=[energy.dram_voltage(p) for p in layers["p_w"]],
                         v_f=[energy.dram_voltage(p) for p in layers["p_f"]])


def dram_energy(layers: pd.DataFrame, gammas, baseline_bits: int = L.BASELINE_BITS) -> pd.DataFrame:
    """Relative DRAM energy of one configuration against the 16-bit baseline, per γ (§4.5.2 stand-in).

    Rows: ``gamma``; ``baseline_1.5V``/``baseline_1.3V`` (16 bits), ``quantized_1.3V`` (learned bits, all at
    the safe voltage), ``learned`` (learned bits and Table 4.6 voltages); savings in % against each
    baseline and ``voltage_share_pct``: the part of the saving (vs 1.3 V) owed to voltages below 1.3 V.
    """
    from axlib import energy

    v = voltages(layers)
    rows = []
    for g in gammas:
        b15 = energy.dram_traffic_energy(v, baseline_bits, baseline_bits, energy.DRAM_NOMINAL_V, energy.DRAM_NOMINAL_V, g)
        b13 = energy.dram_traffic_energy(v, baseline_bits, baseline_bits, energy.DRAM_SAFE_V, energy.DRAM_SAFE_V, g)
        q13 = energy.dram_traffic_energy(v, v["n_w"], v["n_f"], energy.DRAM_SAFE_V, energy.DRAM_SAFE_V, g)
        lv = energy.dram_traffic_energy(v, v["n_w"], v["n_f"], v["v_w"], v["v_f"], g)
        saving13 = 100 * (1 - lv / b13)
        rows.append({"gamma": g, "baseline_1.5V": b15, "baseline_1.3V": b13, "quantized_1.3V": q13, "learned": lv,
                     "saving_vs_1.3V_pct": saving13, "saving_vs_1.5V_pct": 100 * (1 - lv / b15),
                     "voltage_share_pct": 100 * (q13 - lv) / (b13 - lv) if b13 > lv else 0.0})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- FPGA allocation (Problem 4.2, Figs. 4.13/4.14)


#: Groupings with at most this many groups also get their bits lowered under the latency pressure.
LOWER_MAX_GROUPS = 2


def lower_group_bits(grouping: list[tuple[int, int]], ops: list[float], accurate) -> list[tuple[int, int]]:
    """Greedy latency pressure on a grouping (our stand-in for the bit term of Eq. 4.16): repeatedly lower
    one operand of one group by a bit, largest ``OP × (q_w+1)(q_f+1)`` reduction first, keeping the first
    change ``accurate(new_grouping)`` accepts; stop when no single lowering is accepted.

    Every layer of a group keeps sharing its bits; ``accurate`` is the Eq. 4.13 check on the selection images.
    """
    current = list(grouping)
    while True:
        keys = sorted(set(current))
        cands = []
        for key in keys:
            ops_g = sum(op for g, op in zip(current, ops) if g == key)
            for j in (0, 1):
                if key[j] > 0:
                    new = (key[0] - (j == 0), key[1] - (j == 1))
                    gain = ops_g * ((key[0] + 1) * (key[1] + 1) - (new[0] + 1) * (new[1] + 1))
                    cands.append((-gain, key, new))
        for _, key, new in sorted(cands):
            trial = [new if g == key else g for g in current]
            if accurate(trial):
                current = trial
                break
        else:
            return current


def config_from_tables(layers: pd.DataFrame, boundaries: dict) -> dict:
    """A snapped configuration (:func:`axlib.methods.learned_approx.snapshot` form) from stored layer rows."""
    return {"layers": {r.layer: {"q_w": float(r.q_w), "q_f": float(r.q_f), "p_w": float(r.p_w), "p_f": float(r.p_f)}
                       for r in layers.itertuples()},
            "boundaries": dict(boundaries)}


def fpga_design(model_name: str, layers: pd.DataFrame, boundaries: dict, budget: dict, n_train: int,
                n_select: int, n_report: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Problem 4.2 stand-in (:mod:`axlib.methods.fpga_alloc`) on learned BFloat bits.

    Returns ``(designs, chosen_layers)``: one row per grouping (k groups, bits, MACs, latency, LUT/FF,
    selection and report accuracy, feasible) plus the BFloat16 baseline (one group of 128 MACs at
    (7, 7)) and the unconstrained learned bits; and the chosen grouping's per-layer bits.
    """
    from axlib.methods import fpga_alloc as A

    budget = A.check_budget(budget)
    model, _, (xs, ys), (xr, yr) = _inputs(model_name, n_train, n_select, n_report, seed)
    net = L.ApproxNet(model, SETUPS["bfloat"], seed=seed)
    ops = layers["macs"].astype(float).tolist()
    bits = [(int(r.q_w), int(r.q_f)) for r in layers.itertuples()]
    original_sel = L.accuracy_pct(L._plain(net), xs, ys)
    rows, chosen = [], None
    base_bits, base_m = A.BASELINE_GROUP
    base = {"design": "BFloat16 baseline", "k": 1, "groups": json.dumps({str(base_bits): base_m}),
            "latency": sum(ops) / base_m, **A.resources({base_bits: base_m}), "feasible": True}
    rows.append(base)
    seen = {}

    def accuracy_of(grouping):
        """Selection accuracy of a grouping (each one evaluated once)."""
        cfg = config_from_tables(layers.assign(q_w=[g[0] for g in grouping], q_f=[g[1] for g in grouping]), boundaries)
        key = tuple(grouping)
        if key not in seen:
            L.apply(net, cfg)
            seen[key] = L.accuracy_pct(net, xs, ys, "expected", seed)
        return seen[key], cfg

    def design(grouping, label):
        group_ops = {}
        for g, op in zip(grouping, ops):
            group_ops[g] = group_ops.get(g, 0.0) + op
        alloc = A.allocate(group_ops, budget)
        sel, cfg = accuracy_of(grouping)
        row = {"design": label, "k": len(group_ops),
               "groups": json.dumps({str(g): (alloc["macs"][g] if alloc else None) for g in group_ops}),
               "latency": alloc["latency"] if alloc else float("nan"), "lut": alloc["lut"] if alloc else float("nan"),
               "ff": alloc["ff"] if alloc else float("nan"), "select_pct": sel, "original_select_pct": original_sel,
               "within_budget": alloc is not None, "accurate": sel >= original_sel - MAX_DROP_PP,
               "mean_q_w": sum(g[0] for g in grouping) / len(grouping),
               "mean_q_f": sum(g[1] for g in grouping) / len(grouping)}
        row["feasible"] = row["within_budget"] and row["accurate"]
        return row, cfg

    for grouping in A.merge_groups(bits, ops):
        k = len(set(grouping))
        candidates = [(grouping, f"{k} group(s)")]
        if k <= LOWER_MAX_GROUPS:
            lowered = lower_group_bits(grouping, ops, lambda g: accuracy_of(g)[0] >= original_sel - MAX_DROP_PP)
            if lowered != grouping:
                candidates.append((lowered, f"{k} group(s), lowered"))
        for g, label in candidates:
            row, cfg = design(g, label)
            if row["feasible"] and (chosen is None or row["latency"] < chosen[0]["latency"]):
                chosen = (row, g, cfg)
            rows.append(row)
    designs = pd.DataFrame(rows)
    designs["chosen"] = False
    if chosen is None:
        return designs, layers.iloc[0:0]
    idx = designs.index[(designs["design"] == chosen[0]["design"])][0]
    designs.loc[idx, "chosen"] = True
    L.apply(net, chosen[2])
    designs.loc[idx, "report_expected_pct"] = L.accuracy_pct(net, xr, yr, "expected", seed + 1)
    designs.loc[idx, "report_bernoulli_pct"] = L.accuracy_pct(net, xr, yr, "bernoulli", seed + 1)
    designs.loc[idx, "original_pct"] = L.accuracy_pct(L._plain(net), xr, yr)
    chosen_layers = layers.assign(q_w=[b[0] for b in chosen[1]], q_f=[b[1] for b in chosen[1]])
    return designs, chosen_layers


def bfloat_dram_energy(layers: pd.DataFrame, boundaries: dict, gamma: float = 2.0) -> dict:
    """DRAM energy of the BFloat design vs BFloat16 (16-bit words) at 1.3 V, io-stationary dataflow (§4.5.3):
    every layer's weights cross DRAM (``9 + q_w`` bits, voltage from ``p_w``); feature maps only at the
    four boundaries (network input, inputs of the stride-2 stages, last output; ``9 + q_f`` bits of the
    layer that reads them, 16 bits for the last output)."""
    from axlib import energy

    first = {"conv1_input": layers.iloc[0]}
    by_name = layers.set_index("layer")
    for stage in ("layer2", "layer3"):
        first[f"{stage}_input"] = by_name.loc[f"{stage}.0.conv1"]
    e = energy.dram_energy_scale
    w_base = float((layers["w_elems"] * 16).sum()) * float(e(energy.DRAM_SAFE_V, gamma))
    w_apx = float(sum(r.w_elems * (9 + r.q_w) * float(e(energy.dram_voltage(r.p_w), gamma)) for r in layers.itertuples()))
    f_base = f_apx = 0.0
    for key, p in boundaries.items():
        if key == "layer3_output":
            elems, bits = float(layers.iloc[-1]["ofm_elems"]), 16
        else:
            elems, bits = float(first[key]["ifm_elems"]), 9 + float(first[key]["q_f"])
        f_base += elems * 16 * float(e(energy.DRAM_SAFE_V, gamma))
        f_apx += elems * bits * float(e(energy.dram_voltage(p), gamma))
    base, apx = w_base + f_base, w_apx + f_apx
    return {"gamma": gamma, "baseline": base, "energy": apx, "saving_pct": 100 * (1 - apx / base)}


# --------------------------------------------------------------------------- figures (from stored tables only)


def plot_layers(ax_ber, ax_bits, layers: pd.DataFrame, title: str, bits_label: str = "fractional bits") -> None:
    """Figs. 4.5-4.7 layout: BER per layer (%, log scale) and snapped bits per layer, weights vs feature maps."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    from axlib import plotting

    i = layers["index"].to_numpy()
    if ax_ber is not None:
        for col, label, marker in (("p_w", "weights", "o"), ("p_f", "feature maps", "s")):
            v = 100 * layers[col].to_numpy()
            # zero BERs cannot be drawn on the log scale: a series with none left gets no legend entry
            ax_ber.semilogy(i[v > 0], v[v > 0], marker=marker, linestyle="-", markersize=4,
                            label=label if (v > 0).any() else f"_{label}")
        ax_ber.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers
        ax_ber.set_xlabel("conv layer")
        ax_ber.set_ylabel("learned BER (%)")
        ax_ber.set_title(f"{title}: bit error rate")
        plotting.legend_below(ax_ber)
    w = 0.4
    ax_bits.bar(i - w / 2, layers["q_w"], w, label="weights")
    ax_bits.bar(i + w / 2, layers["q_f"], w, label="feature maps")
    ax_bits.set_xlabel("conv layer")
    ax_bits.set_ylabel(bits_label)
    ax_bits.set_yticks(np.arange(0, max(8, int(layers[["q_w", "q_f"]].max().max()) + 2)))
    ax_bits.set_title(f"{title}: bits")
    plotting.legend_below(ax_bits)
