"""Function approximation of image-kernel FUs with Bloom filters (akhlaghi2020 thesis §2.4, §2.6.2, §2.7.1).

Four experiments on the kernels of :mod:`axlib.imaging`:

1. **Tolerable error rates** (§2.4.1, Table 2.1), :func:`tolerable_rates`. Step 1: for each FU alone, inject
   random errors at 0.1, 0.01, ... until the mean PSNR of the tuning images reaches ``psnr_min`` (25 dB).
   Step 2: inject into all FUs at once with those rates; stop if the mean PSNR is acceptable. Step 3: sort
   the FUs by how often the kernel executes them and divide the rate of the most frequent by ten, then the
   next one, cyclically, until the mean PSNR is acceptable.
2. **Profiling and Bloom-filter sizing** (§2.4.2-2.4.3, Table 2.3), :func:`bf_profile`. The profiling images
   give every FU's (input key, output) stream; a unit stores the ``n_in`` most useful input patterns of its
   ``n_out`` most frequent outputs (:func:`select_patterns`), one BF per output. ``m`` and ``k`` are the
   smallest power-of-two vector and then the fewest hashes (at most 4, :data:`K_DESIGN`) for which Eq. (2.1),
   summed over the unit's BFs (a union bound on a false hit in any of them), stays within the FU's tolerable
   error rate (:func:`size_unit`). Hit rates, false hits and wrong outputs are measured on the evaluation
   images, and the kernel's PSNR with all its FUs served by their units.
3. **Memory vs hit rate** (§2.6.2, Fig. 2.9): over a grid of (``n_out``, ``n_in``), hit rate on the
   evaluation images and the memory of the unit (``n_out`` Bloom vectors of ``m`` bits with ``k = 3`` plus
   one 32-bit output register per output), ``m`` sized as above.
4. **Energy** (§2.6-2.7.1, Tables 2.2, 2.4, Figs. 2.7, 2.10), :func:`energy_table`: per FU execution, a
   unit costs one look-up (``n_out`` Bloom vectors, Table 2.2, plus its CMOS hash functions, decoders and
   output registers, Table 2.4) and, on a miss, the FU; without units, the FU alone. FU energies: Horowitz
   (ISSCC 2014, 45 nm, 0.9 V) float32 add 0.9 pJ and multiply 3.7 pJ, MAC = add + multiply, SQRT =
   ``sqrt_mul_ratio`` multiplies (an assumption: no published figure at hand), all scaled by
   ``(1.0 V / 0.9 V)^2`` to the thesis's 1.0 V supply.

Thesis values (Tables 2.2, 2.4, savings stated in the text) are kept here as labelled published constants,
inputs or comparisons, never outputs. Table 2.1 and Table 2.3 live in :mod:`axlib.methods.bloomreuse`.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from axlib import imaging, validate
from axlib.kernels import bloom
from axlib.methods import bloomreuse as br
from axlib.validate import ParameterError

# --------------------------------------------------------------------------- published constants

#: Thesis Table 2.2: energy (fJ) of one resistive Bloom vector (RBV, 1T-1R cells, supply adapted for a fixed
#: 1.4 ns delay) and of a CMOS Bloom vector, per vector length m (bits).
THESIS_TABLE_2_2 = pd.DataFrame({
    "m": [2048, 1024, 512, 256, 128, 64],
    "vdd_v": [1.0, 0.71, 0.6, 0.54, 0.51, 0.47],
    "rbv_fj": [19.3, 17.12, 8.04, 5.10, 3.77, 1.62],
    "cmos_bv_fj": [12188.4, 6662.4, 3992.4, 2603.1, 1837.35, 1649.55],
})
THESIS_TABLE_2_2_SOURCE = "akhlaghi2020, Table 2.2 (45 nm; RBV by HSPICE, CMOS by Design Compiler)"

#: Thesis Table 2.4: energy (fJ) of the CMOS parts of a ReBF unit (hash functions, output registers,
#: decoders) for the configuration of Table 2.3, per application and FU.
THESIS_TABLE_2_4 = {
    "Sobel": {"ADD": 918.94, "MUL": 882.63, "MAC": 1347.97, "SQRT": 873.78},
    "Roberts": {"MUL": 1302.74, "MAC": 1637.83, "SQRT": 882.91},
    "Sharpen": {"MUL": 796.95, "MAC": 879.07},
    "Prewitt": {"MUL": 1179.72, "MAC": 1076.94, "SQRT": 2329.27},
    "Scharr": {"MUL": 996.76, "MAC": 1815.01, "SQRT": 644.58},
}
THESIS_TABLE_2_4_SOURCE = "akhlaghi2020, Table 2.4 (CMOS parts of the ReBF units of Table 2.3)"

#: Energy saving (%) of FUs with ReBF units over plain FUs, stated in §2.7.1 (Fig. 2.10), and the CMOS-BF
#: penalty stated in §2.6 (Fig. 2.7): Sobel +23.8 % energy, +4.4 % on average over the five kernels.
THESIS_REBF_SAVING_PCT = {"Sobel": 21.7, "Sharpen": 25.2, "Roberts": 25.3, "Prewitt": 31.4, "Scharr": 16.8}
THESIS_REBF_SAVING_AVG_PCT = 24.1
THESIS_CMOS_PENALTY_PCT = {"Sobel": 23.8}
THESIS_CMOS_PENALTY_AVG_PCT = 4.4
THESIS_SAVINGS_SOURCE = "akhlaghi2020, §2.6 (Fig. 2.7) and §2.7.1 (Fig. 2.10)"

#: Thesis Table 2.1, last column: PSNR (min, max, avg) in dB of the output images at the tolerable rates.
THESIS_TABLE_2_1_PSNR = {"Sobel": (26.4, 32.9, 28.0), "Sharpen": (24.7, 36.8, 28.12), "Roberts": (25.4, 32.5, 27.9),
                         "Prewitt": (25.2, 33.3, 27.1), "Scharr": (26.1, 31.1, 27.2)}
THESIS_TABLE_2_1_SOURCE = "akhlaghi2020, §2.4.1 and Table 2.1 (30 Caltech-101 images, Multi2Sim)"

#: §2.8: average share of the FUs' work represented by the units (hit rate) and the PSNR floor it guarantees.
THESIS_AVG_HIT_RATE_PCT = 38.42
THESIS_PSNR_FLOOR_DB = 27.0
#: §2.4: the quality target.
PSNR_TARGET_DB = 25.0

#: Horowitz, ISSCC 2014 ("Energy per operation", 45 nm, 0.9 V): float32 add and multiply in pJ.
HOROWITZ_FP32_PJ = {"ADD": 0.9, "MUL": 3.7}
HOROWITZ_VDD_V, THESIS_VDD_V = 0.9, 1.0
OUTPUT_REGISTER_BITS = 32  # one float32 register per stored output (§2.6)


def fu_energy_pj(sqrt_mul_ratio: float = 4.0, vdd_v: float = THESIS_VDD_V) -> dict[str, float]:
    """Energy (pJ) of one execution per FU: Horowitz 45 nm, MAC = add + multiply, SQRT = ratio x multiply, x (vdd/0.9)^2."""
    validate.number("sqrt_mul_ratio", sqrt_mul_ratio, 0.0, 100.0)
    validate.number("vdd_v", vdd_v, 0.3, 2.0)
    s = (vdd_v / HOROWITZ_VDD_V) ** 2
    add, mul = HOROWITZ_FP32_PJ["ADD"], HOROWITZ_FP32_PJ["MUL"]
    return {"ADD": s * add, "MUL": s * mul, "MAC": s * (add + mul), "SQRT": s * sqrt_mul_ratio * mul}


# --------------------------------------------------------------------------- shared helpers


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def dataset_params(tile=64, max_tiles=32, fractions=(0.1, 0.3), split_by="tile", seed=0) -> dict:
    """Validated dataset arguments of :func:`axlib.imaging.make_dataset` as a JSON-friendly dict."""
    imaging.check_dataset_params(tile, max_tiles, fractions, split_by, seed)
    return {"tile": tile, "max_tiles": max_tiles, "fractions": [float(f) for f in fractions], "split_by": split_by,
            "seed": seed}


def check_kernels(kernels) -> list[str]:
    return validate.unique("kernels", validate.choices("kernels", kernels, imaging.KERNELS))


def fu_frequency(kernel: str) -> list[str]:
    """The kernel's FUs, most executed first (ties in the order ADD, MUL, MAC, SQRT)."""
    counts = imaging.op_counts(kernel)
    return sorted(counts, key=lambda op: (-counts[op], imaging.FU_OPS.index(op)))


# --------------------------------------------------------------------------- 1. tolerable error rates


def check_rate_params(psnr_min, start_exponent, max_exponent, error_mode, max_step3) -> None:
    validate.number("psnr_min", psnr_min, 0.0, 99.0)
    validate.integer("start_exponent", start_exponent, 0, 12)
    validate.integer("max_exponent", max_exponent, start_exponent, 12)
    validate.choice("error_mode", error_mode, imaging.ERROR_MODES)
    validate.integer("max_step3", max_step3, 0, 1000)


def tolerable_rates(kernel: str, tune: np.ndarray, ranges: dict, psnr_min: float = PSNR_TARGET_DB,
                    start_exponent: int = 1, max_exponent: int = 7, error_mode: str = "max", seed: int = 0,
                    max_step3: int = 50) -> dict:
    """The three-step search of §2.4.1 on images ``tune`` (N, H, W) uint8; rates are ``10**-e``.

    Returns ``{"trace": [...], "rates": {FU: rate}, "met": bool}``; every PSNR evaluation is one trace row
    (step, FU changed, the rate of every FU, mean/min/max PSNR in dB over the images, acceptable).
    Step 1 stops at ``10**-max_exponent`` when even that rate is not acceptable (``step1_met`` False).
    Step 3 stops after ``max_step3`` reductions.
    """
    check_rate_params(psnr_min, start_exponent, max_exponent, error_mode, max_step3)
    ref = imaging.run_kernel(kernel, tune)
    order = fu_frequency(kernel)
    trace = []

    def evaluate(step, fu, exps):
        rates = {op: 10.0 ** -e for op, e in exps.items()}
        dp = imaging.Datapath(rates, error_mode, ranges, seed=_seed(seed, imaging.KERNELS.index(kernel), len(trace)))
        p = imaging.psnr(ref, imaging.run_kernel(kernel, tune, dp))
        row = {"kernel": kernel, "step": step, "fu": fu, **{f"rate_{op}": rates.get(op, 0.0) for op in order},
               "psnr_mean": float(p.mean()), "psnr_min": float(p.min()), "psnr_max": float(p.max()),
               "ok": bool(p.mean() >= psnr_min)}
        for op in order:
            row[f"injected_{op}"] = dp.stats[op].injected
            row[f"calls_{op}"] = dp.stats[op].calls
        trace.append(row)
        return row["ok"]

    exps, step1_met = {}, {}
    for op in order:  # step 1: one FU at a time
        e = start_exponent
        while not evaluate(1, op, {op: e}) and e < max_exponent:
            e += 1
        exps[op] = e
        step1_met[op] = trace[-1]["ok"]
    ok = evaluate(2, "all", exps)  # step 2: all together
    i = 0
    while not ok and i < max_step3:  # step 3: most frequent FU first, cyclically
        op = order[i % len(order)]
        exps[op] += 1
        ok = evaluate(3, op, exps)
        i += 1
    return {"trace": trace, "rates": {op: 10.0 ** -e for op, e in exps.items()}, "met": ok,
            "step1_met": step1_met, "order": order}


def table_2_1_point(kernel: str, dataset: dict, psnr_min: float, start_exponent: int, max_exponent: int,
                    error_mode: str, max_step3: int) -> dict:
    """One sweep point: the §2.4.1 search for one kernel, then its PSNR at the final rates on the tune and eval images."""
    ds = imaging.make_dataset(**dataset)
    ranges = imaging.output_ranges(kernel, ds.split("profile"))
    res = tolerable_rates(kernel, ds.split("tune"), ranges, psnr_min, start_exponent, max_exponent, error_mode,
                          dataset["seed"], max_step3)
    last = res["trace"][-1]  # the tune split: the evaluation the search stopped on
    x = ds.split("eval")      # the eval split: a fresh injection at the final rates
    dp = imaging.Datapath(res["rates"], error_mode, ranges, seed=_seed(dataset["seed"], 99, imaging.KERNELS.index(kernel)))
    p = imaging.psnr(imaging.run_kernel(kernel, x), imaging.run_kernel(kernel, x, dp))
    per_split = {
        "tune": ({op: (last[f"calls_{op}"], last[f"injected_{op}"]) for op in res["order"]},
                 (last["psnr_mean"], last["psnr_min"], last["psnr_max"]), len(ds.split("tune"))),
        "eval": ({op: (dp.stats[op].calls, dp.stats[op].injected) for op in res["order"]},
                 (float(p.mean()), float(p.min()), float(p.max())), len(x)),
    }
    counts = imaging.op_counts(kernel)
    rows = []
    for split, (inj, (pmean, pmin, pmax), n_images) in per_split.items():
        for op in res["order"]:
            step1 = next(r[f"rate_{op}"] for r in reversed(res["trace"]) if r["step"] == 1 and r["fu"] == op)
            rows.append({"kernel": kernel, "split": split, "fu": op, "rate": res["rates"][op], "step1_rate": step1,
                         "step1_met": res["step1_met"][op], "frequency_rank": res["order"].index(op) + 1,
                         "ops_per_pixel": counts[op], "calls": inj[op][0], "injected": inj[op][1],
                         "range_lo": ranges[op][0], "range_hi": ranges[op][1], "psnr_mean": pmean, "psnr_min": pmin,
                         "psnr_max": pmax, "images": n_images, "met": res["met"]})
    return {"trace": res["trace"], "rates": rows}


def table_2_1(kernels, dataset: dict, psnr_min=PSNR_TARGET_DB, start_exponent=1, max_exponent=7, error_mode="max",
              max_step3=50) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rates, trace) tables for every kernel, through a cached sweep (one point per kernel)."""
    from axlib import sweep

    kernels = check_kernels(kernels)
    check_rate_params(psnr_min, start_exponent, max_exponent, error_mode, max_step3)
    pts = [{"kernel": k, "dataset": dataset, "psnr_min": psnr_min, "start_exponent": start_exponent,
            "max_exponent": max_exponent, "error_mode": error_mode, "max_step3": max_step3} for k in kernels]
    res = sweep.run_grid(table_2_1_point, pts, name="akhlaghi2020-tab2_1-v1")
    rates = pd.DataFrame([r for x in res for r in x["rates"]])
    trace = pd.DataFrame([r for x in res for r in x["trace"]])
    return rates, trace


# --------------------------------------------------------------------------- 2. profiling and BF sizing


def profile_kernel(kernel: str, images) -> dict[str, pd.DataFrame]:
    """Per FU: the distinct input keys seen on ``images`` with their exact output and count, most frequent first.

    Columns ``key`` (uint64), ``output`` (float32), ``count``; sorted by decreasing count, then key.
    """
    dp = imaging.Datapath(profile=True)
    imaging.kernel_float(kernel, images, dp)
    out = {}
    for op in imaging.KERNEL_UNITS[kernel]:
        keys, outs = dp.profile_arrays(op)
        uk, first, cnt = np.unique(keys, return_index=True, return_counts=True)
        df = pd.DataFrame({"key": uk, "output": outs[first], "count": cnt})
        out[op] = df.sort_values(["count", "key"], ascending=[False, True], kind="stable").reset_index(drop=True)
    return out


def output_frequencies(patterns: pd.DataFrame) -> pd.DataFrame:
    """Distinct outputs with their total count and number of distinct inputs, most frequent first (ties: smaller output)."""
    g = patterns.groupby("output", sort=True).agg(count=("count", "sum"), inputs=("key", "size")).reset_index()
    return g.sort_values(["count", "output"], ascending=[False, True], kind="stable").reset_index(drop=True)


def select_patterns(patterns: pd.DataFrame, n_out: int, n_in: int) -> pd.DataFrame:
    """The stored patterns of a unit (§2.4.2): the ``n_out`` most frequent outputs; each gets its most frequent
    input, and the remaining ``n_in - n_out`` slots go to the most frequent other inputs of those outputs.

    Returns rows of ``patterns`` plus ``bf`` (0 = most frequent output; the order of the BFs).
    """
    validate.integer("n_out", n_out, 1, 2**20)
    validate.integer("n_in", n_in, n_out, 2**24)
    outs = output_frequencies(patterns)["output"].to_numpy()[:n_out]
    rank = {v: i for i, v in enumerate(outs)}
    cand = patterns[patterns["output"].isin(outs)].assign(bf=lambda d: d["output"].map(rank))
    top = cand.groupby("bf", sort=False).head(1)  # patterns are sorted: head(1) = most frequent input
    rest = cand.drop(top.index).head(max(0, n_in - len(top)))
    return pd.concat([top, rest]).sort_values(["bf", "count", "key"], ascending=[True, False, True], kind="stable")


def union_fp(m: int, per_bf: list[int], k: int) -> float:
    """Eq. (2.1) summed over the BFs of a unit (union bound on a false hit in any of them)."""
    return float(sum(bloom.fp_rate(m, n, k) for n in per_bf))


#: Hash-function counts a design may use: the thesis's designs use 2 to 4 (Table 2.3), and every extra hash
#: costs look-up energy (§2.7.2); more than 4 would only save bits.
K_DESIGN = (1, 2, 3, 4)


def size_unit(per_bf: list[int], limit: float, k_values=K_DESIGN, m_min: int = 8, m_max: int = 2**20) -> tuple[int, int]:
    """Smallest power-of-two ``m`` (then fewest hashes ``k``) with :func:`union_fp` <= ``limit``; (0, 0) if none."""
    validate.number("limit", limit, 0.0, 1.0)
    m = m_min
    while m <= m_max:
        for k in k_values:
            if union_fp(m, per_bf, k) <= limit:
                return m, k
        m *= 2
    return 0, 0


def build_unit(stored: pd.DataFrame, m: int, k: int, seed: int) -> bloom.BloomFunctionUnit:
    """A BloomFunctionUnit with one BF per stored output (in ``bf`` order) holding its stored input keys."""
    unit = bloom.BloomFunctionUnit(m, k, key_bytes=8, seed=seed)
    for _, g in stored.groupby("bf", sort=True):
        unit.add_output(np.float32(g["output"].iloc[0]), g["key"].to_numpy(np.uint64))
    return unit


def measure_unit(unit: bloom.BloomFunctionUnit, stored: pd.DataFrame, evals: pd.DataFrame) -> dict:
    """Hit, false-hit and wrong-output rates of ``unit`` over the executions ``evals`` (key, output, count)."""
    res = unit.query(evals["key"].to_numpy(np.uint64))
    w = evals["count"].to_numpy(np.float64)
    total = w.sum()
    is_stored = np.isin(evals["key"].to_numpy(np.uint64), stored["key"].to_numpy(np.uint64))
    wrong = res.hit & (res.values.astype(np.float32) != evals["output"].to_numpy(np.float32))
    absent = w[~is_stored].sum()
    return {"hit_rate": float(w[res.hit].sum() / total), "true_hit_rate": float(w[is_stored].sum() / total),
            "false_hit_rate": float(w[res.hit & ~is_stored].sum() / absent) if absent else 0.0,
            "error_rate": float(w[wrong].sum() / total), "multi_claims": float(w[res.claims > 1].sum() / total)}


def memory_bits(n_out: int, m: int) -> int:
    """Bits of a unit (§2.6.2): ``n_out`` Bloom vectors of ``m`` bits plus one 32-bit output register per output."""
    return n_out * (m + OUTPUT_REGISTER_BITS)


def check_bf_params(limits, n_out_grid, n_in_factors, fig_k, m_max) -> None:
    if not isinstance(limits, dict):
        raise ParameterError(f"limits must be a dict kernel -> {{FU: rate}}, got {limits!r}")
    for kern, d in limits.items():
        validate.choice("limits kernel", kern, imaging.KERNELS)
        for op, r in d.items():
            validate.choice(f"limits[{kern!r}] FU", op, imaging.FU_OPS)
            validate.number(f"limits[{kern!r}][{op!r}]", r, 1e-12, 1.0)
    validate.unique("n_out_grid", validate.integers("n_out_grid", n_out_grid, 1, 4096))
    validate.unique("n_in_factors", validate.integers("n_in_factors", n_in_factors, 1, 4096))
    validate.integer("fig_k", fig_k, bloom.K_MIN, bloom.K_MAX)
    validate.power_of_two("m_max", m_max, bloom.M_MIN, bloom.M_MAX)


def bf_profile_point(kernel: str, dataset: dict, limits: dict, n_out_grid: list, n_in_factors: list, fig_k: int,
                     m_max: int) -> dict:
    """One sweep point (one kernel): Table 2.3 rows at the thesis's (#Out, #In), the Fig. 2.9 grid, end-to-end PSNR.

    ``limits``: FU -> tolerable error rate for this kernel (sizes m, k). Returns JSON-friendly lists of rows:
    ``units`` (one row per FU and design: ``eq2.1`` = m, k by :func:`size_unit`; ``thesis_mk`` = Table 2.3's m, k),
    ``curve`` (Fig. 2.9 grid), ``psnr`` (per design: mean/min/max dB over the evaluation images), ``profile``
    (per FU: executions and distinct inputs/outputs in the profiling and evaluation images).
    """
    ds = imaging.make_dataset(**dataset)
    prof = profile_kernel(kernel, ds.split("profile"))
    ev = profile_kernel(kernel, ds.split("eval"))
    thesis = br.THESIS_TABLE_2_3.set_index(["app", "fu"])
    units, curve, stats, built = [], [], [], {"eq2.1": {}, "thesis_mk": {}}
    seed = dataset["seed"]
    for op in imaging.KERNEL_UNITS[kernel]:
        p, e = prof[op], ev[op]
        limit = float(limits[op])
        of = output_frequencies(p)
        top_counts = p.loc[p["output"] == of["output"].iloc[0], "count"].to_numpy()  # decreasing
        stats.append({"kernel": kernel, "fu": op, "profile_calls": int(p["count"].sum()), "profile_inputs": len(p),
                      "profile_outputs": len(of), "top_output": float(of["output"].iloc[0]),
                      "top_output_share": float(of["count"].iloc[0] / p["count"].sum()),
                      "top_output_inputs": int(of["inputs"].iloc[0]),
                      "top_output_top_input_share": float(top_counts[0] / p["count"].sum()),
                      "top_output_inputs_half": int(np.searchsorted(np.cumsum(top_counts), top_counts.sum() / 2) + 1),
                      "eval_calls": int(e["count"].sum()),
                      "eval_inputs": len(e), "limit": limit})
        e_keys, e_w = e["key"].to_numpy(np.uint64), e["count"].to_numpy(np.float64)
        for n_out in n_out_grid:  # Fig. 2.9 grid: ideal hit rate (stored patterns only) and memory
            for f in n_in_factors:
                s = select_patterns(p, n_out, n_out * f)
                per_bf = s.groupby("bf").size().tolist()
                m, k = size_unit(per_bf, limit, [fig_k], m_max=m_max)
                hr = float(e_w[np.isin(e_keys, s["key"].to_numpy(np.uint64))].sum() / e_w.sum())
                curve.append({"kernel": kernel, "fu": op, "n_out": len(per_bf), "n_in": len(s), "n_out_asked": n_out,
                              "n_in_asked": n_out * f, "hit_rate_eval": hr,
                              "hit_rate_profile": float(s["count"].sum() / p["count"].sum()),
                              "k": fig_k, "m": m, "memory_bits": memory_bits(len(per_bf), m) if m else None})
        if (kernel, op) not in thesis.index:
            continue
        t = thesis.loc[(kernel, op)]
        s = select_patterns(p, int(t.n_out), int(t.n_in))
        per_bf = s.groupby("bf").size().tolist()
        useed = _seed(seed, imaging.KERNELS.index(kernel), imaging.FU_OPS.index(op))
        m, k = size_unit(per_bf, limit, m_max=m_max)
        designs = {"eq2.1": (m, k), "thesis_mk": (int(t.m), int(t.k))}
        for design, (m, k) in designs.items():
            row = {"kernel": kernel, "fu": op, "design": design, "n_out": len(per_bf), "n_in": len(s), "m": m, "k": k,
                   "limit": limit, "eq21_union": union_fp(m, per_bf, k) if m else None,
                   "memory_bits": memory_bits(len(per_bf), m) if m else None,
                   "hit_rate_profile": float(s["count"].sum() / p["count"].sum())}
            if m:
                unit = build_unit(s, m, k, useed)
                built[design][op] = unit
                row |= measure_unit(unit, s, e)
                row["error_rate_profile"] = measure_unit(unit, s, p)["error_rate"]
            units.append(row)
    x = ds.split("eval")
    ref = imaging.run_kernel(kernel, x)
    psnr = []
    for design, u in built.items():
        if not u:
            continue
        dp = imaging.Datapath(units=u)
        y = imaging.run_kernel(kernel, x, dp)
        pp = imaging.psnr(ref, y)
        psnr.append({"kernel": kernel, "design": design, "fus": "+".join(u), "psnr_mean": float(pp.mean()),
                     "psnr_min": float(pp.min()), "psnr_max": float(pp.max()), "psnr_pooled": imaging.pooled_psnr(ref, y),
                     "images": len(x), "images_exact": int((pp >= 100.0).sum()),
                     **{f"hit_rate_{op}": dp.stats[op].hits / dp.stats[op].calls for op in u},
                     **{f"error_rate_{op}": dp.stats[op].wrong / dp.stats[op].calls for op in u}})
    return {"units": units, "curve": curve, "psnr": psnr, "profile": stats}


def bf_profile(kernels, dataset: dict, limits: dict, n_out_grid=(1, 2, 4, 8, 16, 32), n_in_factors=(1, 2, 4, 8, 16),
               fig_k: int = 3, m_max: int = 2**20) -> dict[str, pd.DataFrame]:
    """:func:`bf_profile_point` for every kernel through a cached sweep; tables ``units``, ``curve``, ``psnr``, ``profile``."""
    from axlib import sweep

    kernels = check_kernels(kernels)
    check_bf_params(limits, n_out_grid, n_in_factors, fig_k, m_max)
    missing = [(k, op) for k in kernels for op in imaging.KERNEL_UNITS[k] if op not in limits.get(k, {})]
    if missing:
        raise ParameterError(f"limits lack a tolerable error rate for {missing}")
    pts = [{"kernel": k, "dataset": dataset, "limits": {op: float(limits[k][op]) for op in imaging.KERNEL_UNITS[k]},
            "n_out_grid": list(n_out_grid), "n_in_factors": list(n_in_factors), "fig_k": fig_k, "m_max": m_max}
           for k in kernels]
    res = sweep.run_grid(bf_profile_point, pts, name="akhlaghi2020-bfprofile-v2")
    return {name: pd.DataFrame([r for x in res for r in x[name]]) for name in ("units", "curve", "psnr", "profile")}


def thesis_limits(kernels) -> dict:
    """Table 2.1's tolerable error rates for the FUs our kernels use (Sharpen: MUL and MAC)."""
    return {k: {op: br.THESIS_TABLE_2_1[k][op] for op in imaging.KERNEL_UNITS[k]} for k in check_kernels(kernels)}


def measured_limits(rates: pd.DataFrame) -> dict:
    """Our Table 2.1 (``rates`` from :func:`table_2_1`, tune split) as kernel -> {FU: rate}."""
    r = rates[rates["split"] == "tune"]
    return {k: dict(zip(g["fu"], g["rate"].astype(float))) for k, g in r.groupby("kernel")}


# --------------------------------------------------------------------------- 4. energy


def lookup_energy_pj(app: str, fu: str, n_out: int, m: int, vector: str) -> float:
    """Energy (pJ) of one look-up in a unit: ``n_out`` Bloom vectors of ``m`` bits (Table 2.2, ``vector`` = ``rbv`` or
    ``cmos_bv``) read in parallel, plus the unit's CMOS hash functions, decoders and registers (Table 2.4)."""
    validate.choice("vector", vector, ("rbv", "cmos_bv"))
    t22 = THESIS_TABLE_2_2.set_index("m")
    if m not in t22.index:
        raise ParameterError(f"m={m} is not a Table 2.2 size; allowed: {sorted(t22.index)}")
    return (n_out * t22.loc[m, f"{vector}_fj"] + THESIS_TABLE_2_4[app][fu]) / 1000.0


def energy_table(ops_per_pixel: dict, hit_rates: pd.DataFrame, fu_pj: dict) -> pd.DataFrame:
    """Energy per output pixel (pJ), one row per (app, FU, source, vector technology).

    ``ops_per_pixel``: app -> {FU: executions per pixel} (our kernels). ``hit_rates``: rows with ``app``, ``fu``,
    ``source`` (label), ``hit_rate`` (fraction); the unit is the thesis's Table 2.3 design (n_out, m) for
    (app, FU). FUs without a row run without a unit. ``fu_pj``: FU -> pJ per execution.
    Columns: ``e_fu_pj`` (plain FU), ``e_unit_pj`` (look-up + (1 - hit rate) x FU), ``lookup_pj``.
    """
    t23 = br.THESIS_TABLE_2_3.set_index(["app", "fu"])
    rows = []
    for (app, source), g in hit_rates.groupby(["app", "source"], sort=False):
        hr = dict(zip(g["fu"], g["hit_rate"]))
        for fu, n in ops_per_pixel[app].items():
            for vector in ("rbv", "cmos_bv"):
                e_fu = n * fu_pj[fu]
                if fu in hr and (app, fu) in t23.index:
                    t = t23.loc[(app, fu)]
                    look = lookup_energy_pj(app, fu, int(t.n_out), int(t.m), vector)
                    e_unit = n * (look + (1.0 - hr[fu]) * fu_pj[fu])
                else:
                    look, e_unit = 0.0, e_fu
                rows.append({"app": app, "source": source, "vector": vector, "fu": fu, "ops_per_pixel": n,
                             "hit_rate": hr.get(fu, 0.0), "lookup_pj": look, "e_fu_pj": e_fu, "e_unit_pj": e_unit})
    return pd.DataFrame(rows)


def savings(energy: pd.DataFrame) -> pd.DataFrame:
    """Per (app, source, vector): total energies and saving % (positive: the units save), all FUs with units
    (``saving_pct``) and only the FUs where a unit pays (``saving_best_pct``); and the FU-energy scale at which
    the units break even (``breakeven_scale``: FU energies x this give zero saving)."""
    rows = []
    for (app, source, vector), g in energy.groupby(["app", "source", "vector"], sort=False):
        fu, unit = g["e_fu_pj"].sum(), g["e_unit_pj"].sum()
        best = np.minimum(g["e_fu_pj"], g["e_unit_pj"]).sum()
        look = (g["ops_per_pixel"] * g["lookup_pj"]).sum()
        gated = (g["hit_rate"] * g["e_fu_pj"]).sum()
        # saving(s) = (s*gated - look) / (s*fu): zero at s = look / gated
        rows.append({"app": app, "source": source, "vector": vector, "e_fu_pj": fu, "e_unit_pj": unit,
                     "saving_pct": 100.0 * (1 - unit / fu), "saving_best_pct": 100.0 * (1 - best / fu),
                     "lookup_pj": look, "gated_pj": gated,
                     "breakeven_scale": look / gated if gated > 0 else math.inf})
    return pd.DataFrame(rows)


def scale_for_saving(row: pd.Series, target_pct: float) -> float:
    """FU-energy scale s at which the saving of a :func:`savings` row equals ``target_pct`` (inf if unreachable)."""
    # saving(s) = (s*gated - look) / (s*fu) = target  ->  s = look / (gated - target*fu)
    den = row["gated_pj"] - target_pct / 100.0 * row["e_fu_pj"]
    return float(row["lookup_pj"] / den) if den > 0 else math.inf
