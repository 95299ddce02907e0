"""Bloom-filter computation reuse (akhlaghi2020, thesis ch. 2): measured false-positive rates vs Eq. (2.1).

:func:`measure_fp` builds independent Bloom filters (fresh H3 coefficients and a fresh random key
set per seed), queries every stored key (a miss would be a false negative) and a stream of random
absent keys, and counts false positives. :func:`fp_sweep` does so over a list of (m, n, k) points;
:func:`summarize` pools the seeds of each point, sets the formulas beside the measurement and
derives the tolerance used by the claims.

Query budget: a point gets ``ceil(min_fp_events / (S * p))`` absent-key queries per filter
(``p`` = Eq. 2.1, ``S`` = seeds), clipped to ``[min_queries, max_queries]``, so every point expects
about the same number of false positives (equal relative precision) however small its rate.

Absent keys: random keys of the full key space; a query that hits is checked against the stored
set, and true members (probability n / 2^(8*key_bytes)) are dropped from the count of trials, so
the rate is exactly "false positives / absent-key queries".

The thesis's own BF settings (Table 2.5, and Table 2.3 with the error-rate limits of Table 2.1)
are kept here as published facts (inputs, never outputs).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pandas as pd

from axlib import validate
from axlib.kernels import bloom

#: Queries generated per batch (bounds memory: 8 bytes per key).
QUERY_BATCH = 1 << 21

#: Most absent-key queries per simulated function unit (:func:`unit_fp_experiment`).
UNIT_MAX_QUERIES = 100_000

#: Thesis §2.7.2 / Table 2.5: the two BF settings (m = BV size, k = #hash, n = #inp per BF) chosen to
#: satisfy a false-positive rate of 0.001 for the LeNet/MNIST multiplier.
THESIS_TABLE_2_5 = pd.DataFrame([
    ("Table 2.5 (64, 2, 1)", 64, 2, 1, 1e-3),
    ("Table 2.5 (32, 3, 1)", 32, 3, 1, 1e-3),
], columns=["setting", "m", "k", "n", "fp_target"])
THESIS_TABLE_2_5_SOURCE = "akhlaghi2020, §2.7.2 and Table 2.5 (FP rate 0.001)"

#: Thesis Table 2.1: maximum tolerable error rate per functional unit (PSNR >= 25 dB).
THESIS_TABLE_2_1 = {
    "Sobel": {"ADD": 1e-3, "MUL": 1e-4, "MAC": 1e-3, "SQRT": 1e-3},
    "Sharpen": {"MUL": 1e-2, "MAC": 1e-2, "SQRT": 1e-2},
    "Roberts": {"MUL": 1e-3, "MAC": 1e-3, "SQRT": 1e-3},
    "Prewitt": {"MUL": 1e-2, "MAC": 1e-3, "SQRT": 1e-2},
    "Scharr": {"MUL": 1e-3, "MAC": 1e-4, "SQRT": 1e-3},
}

#: Thesis Table 2.3: optimum ReBF configuration per application and FU: #Out (stored output values,
#: one BF each), #In (stored input patterns), HR % (hit rate), BV (m) and #Fn (k).
THESIS_TABLE_2_3 = pd.DataFrame([
    ("Sobel", "ADD", 2, 12, 29.46, 256, 4),
    ("Sobel", "MUL", 2, 16, 29.61, 1024, 3),
    ("Sobel", "MAC", 4, 12, 25.44, 256, 4),
    ("Sobel", "SQRT", 16, 16, 20.8, 512, 3),
    ("Roberts", "MUL", 6, 26, 41.61, 512, 4),
    ("Roberts", "MAC", 10, 12, 29.5, 256, 4),
    ("Roberts", "SQRT", 10, 10, 29.5, 256, 4),
    ("Sharpen", "MUL", 6, 15, 42.18, 256, 2),
    ("Sharpen", "MAC", 6, 15, 30.2, 256, 2),
    ("Prewitt", "MUL", 8, 30, 59.4, 512, 2),
    ("Prewitt", "MAC", 6, 15, 32.6, 1024, 2),
    ("Prewitt", "SQRT", 14, 14, 82.0, 256, 2),
    ("Scharr", "MUL", 4, 12, 27.7, 256, 4),
    ("Scharr", "MAC", 8, 18, 37.0, 512, 4),
    ("Scharr", "SQRT", 18, 18, 10.0, 512, 3),
], columns=["app", "fu", "n_out", "n_in", "hit_rate_pct", "m", "k"])
THESIS_TABLE_2_3_SOURCE = "akhlaghi2020, Table 2.3 (configurations) and Table 2.1 (error-rate limits)"


def thesis_table_2_3() -> pd.DataFrame:
    """Table 2.3 with each FU's Table 2.1 limit (``fp_limit``) and a ``setting`` label."""
    df = THESIS_TABLE_2_3.copy()
    df["fp_limit"] = [THESIS_TABLE_2_1[a][f] for a, f in zip(df["app"], df["fu"])]
    df["setting"] = "Table 2.3 " + df["app"] + " " + df["fu"]
    return df


# --------------------------------------------------------------------------- validation


def check_grid(m_values, bits_per_key, k_values) -> tuple[list[int], list[int], list[int]]:
    m_values = validate.unique("m_values", validate.integers("m_values", m_values, bloom.M_MIN, bloom.M_MAX))
    bad = [m for m in m_values if m & (m - 1)]
    if bad:
        raise validate.ParameterError(f"parameter m_values has invalid value(s) {bad}: m={bad[0]} must be a power of "
                                      f"two; allowed: powers of two in [{bloom.M_MIN}, {bloom.M_MAX}]")
    bits_per_key = validate.unique("bits_per_key", validate.integers("bits_per_key", bits_per_key, 1, 1024))
    bad = [(m, r) for m in m_values for r in bits_per_key if m // r < 1]
    if bad:
        raise validate.ParameterError(f"parameter bits_per_key: m / bits_per_key must leave at least one key; "
                                      f"(m, bits_per_key) pairs {bad} store none")
    k_values = validate.unique("k_values", validate.integers("k_values", k_values, bloom.K_MIN, bloom.K_MAX))
    return m_values, bits_per_key, k_values


def grid_points(m_values, bits_per_key, k_values) -> list[dict]:
    """Every (m, n = m // bits_per_key, k) combination, labelled ``grid``."""
    m_values, bits_per_key, k_values = check_grid(m_values, bits_per_key, k_values)
    return [{"setting": "grid", "m": m, "n": m // r, "k": k, "bits_per_key": r}
            for m in m_values for r in bits_per_key for k in k_values]


def queries_per_filter(m: int, n: int, k: int, n_seeds: int, min_fp_events: int, min_queries: int,
                       max_queries: int) -> int:
    p = bloom.fp_rate(m, n, k)
    if p <= 0:
        return max_queries
    return int(min(max_queries, max(min_queries, math.ceil(min_fp_events / (n_seeds * p)))))


# --------------------------------------------------------------------------- measurement


def _rng(seed: int, m: int, n: int, k: int, key_bytes: int) -> np.random.Generator:
    """Independent, reproducible stream per (seed, point)."""
    return np.random.default_rng([seed, m, n, k, key_bytes])


def distinct_keys(rng: np.random.Generator, n: int, key_bytes: int) -> np.ndarray:
    """``n`` distinct uniform random keys of ``key_bytes`` bytes, sorted, uint64."""
    space = 1 << (8 * key_bytes)
    if n > space:
        raise validate.ParameterError(f"n={n} distinct keys do not fit in key_bytes={key_bytes} bytes")
    if space <= 2**62:
        return np.sort(rng.choice(space, size=n, replace=False).astype(np.uint64))
    keys = np.zeros(0, dtype=np.uint64)
    while keys.size < n:  # 64-bit keys: draw, drop the (rare) repeats, top up
        keys = np.unique(np.concatenate([keys, rng.integers(0, space, size=n - keys.size, dtype=np.uint64)]))
    return keys


def measure_fp(m: int, n: int, k: int, seed: int, n_queries: int, key_bytes: int = 4) -> dict:
    """One filter: n distinct random keys stored, every one queried back, ``n_queries`` random absent keys queried.

    Returns a dict with ``queries`` (absent-key trials), ``false_positives``, ``fp_rate``,
    ``false_negatives`` (stored keys not found; always 0 for a correct BF), ``fill`` (fraction of set
    bits) and ``fill_pow_k`` (the FP rate expected for this particular filter under ideal hashing).
    """
    space = 1 << (8 * key_bytes)
    rng = _rng(seed, m, n, k, key_bytes)
    bf = bloom.BloomFilter(m, k, key_bytes, seed=rng)
    keys = distinct_keys(rng, n, key_bytes)
    bf.insert(keys)
    false_negatives = int((~bf.query(keys)).sum())
    trials = fps = 0
    left = int(n_queries)
    while left > 0:
        q = rng.integers(0, space, size=min(left, QUERY_BATCH), dtype=np.uint64)
        left -= q.size
        hit = q[bf.query(q)]
        members = int(np.isin(hit, keys).sum())  # only hits can be members: cheap exact exclusion
        trials += q.size - members
        fps += hit.size - members
    fill = bf.fill
    return {"m": m, "n": n, "k": k, "seed": seed, "key_bytes": key_bytes, "queries": trials,
            "false_positives": fps, "fp_rate": fps / trials if trials else float("nan"),
            "false_negatives": false_negatives, "fill": fill, "fill_pow_k": fill ** k}


def fp_sweep(points: list[dict], seeds: list[int], min_fp_events: int, min_queries: int, max_queries: int,
             key_bytes: int = 4, progress=None) -> pd.DataFrame:
    """Long table, one row per (point, seed); every column of the point dicts is carried along."""
    rows = []
    for pt in points:
        q = queries_per_filter(pt["m"], pt["n"], pt["k"], len(seeds), min_fp_events, min_queries, max_queries)
        for s in seeds:
            rows.append({**pt, **measure_fp(pt["m"], pt["n"], pt["k"], s, q, key_bytes)})
        if progress is not None:
            progress(pt)
    return pd.DataFrame(rows)


def split_inputs(n_in: int, n_out: int) -> list[int]:
    """Stored inputs per filter when a unit's ``n_in`` inputs belong to ``n_out`` output values (one filter per
    output value, thesis §2.5.4): as even as possible, the first ``n_in % n_out`` filters one more. Needs
    ``1 <= n_out <= n_in``."""
    validate.integer("n_out", n_out, 1)
    validate.integer("n_in", n_in, n_out)
    q, r = divmod(n_in, n_out)
    return [q + 1] * r + [q] * (n_out - r)


def measure_unit_fp(m: int, k: int, n_out: int, n_in: int, seed: int, n_queries: int, key_bytes: int = 4) -> dict:
    """False-positive rate of one function unit built as thesis §2.5.4 describes it: ``n_out`` filters (one per stored
    output value, each ``m`` bits with ``k`` H3 hashes and its own coefficients), holding ``n_in`` distinct random keys
    split by :func:`split_inputs`. An absent key is a false positive of the unit when *any* filter answers "maybe"
    (the unit then returns a stored output for an input that has none).

    Returns ``queries`` (absent-key trials), ``false_positives``, ``fp_rate`` (per absent-key look-up of the unit),
    ``false_negatives`` (stored keys not found by their own filter; 0 for a correct BF), ``n_out``, ``n_in``.
    """
    space = 1 << (8 * key_bytes)
    rng = np.random.default_rng([seed, m, k, n_out, n_in, key_bytes, 23])
    keys = distinct_keys(rng, n_in, key_bytes)
    keys = keys[rng.permutation(n_in)]
    filters, false_negatives, start = [], 0, 0
    for n_i in split_inputs(n_in, n_out):
        bf = bloom.BloomFilter(m, k, key_bytes, seed=rng)
        own = keys[start:start + n_i]
        start += n_i
        bf.insert(own)
        false_negatives += int((~bf.query(own)).sum())
        filters.append(bf)
    stored = np.sort(keys)
    trials = fps = 0
    left = int(n_queries)
    while left > 0:
        q = rng.integers(0, space, size=min(left, QUERY_BATCH), dtype=np.uint64)
        left -= q.size
        hit = np.zeros(q.size, dtype=np.bool_)
        for bf in filters:
            hit |= bf.query(q)
        h = q[hit]
        members = int(np.isin(h, stored).sum())
        trials += q.size - members
        fps += h.size - members
    return {"m": m, "k": k, "n_out": n_out, "n_in": n_in, "seed": seed, "queries": trials, "false_positives": fps,
            "fp_rate": fps / trials if trials else float("nan"), "false_negatives": false_negatives}


def unit_union_bound(m: int, k: int, n_out: int, n_in: int) -> float:
    """Eq. (2.1) summed over a unit's filters (:func:`split_inputs`): an upper bound on its false-positive rate."""
    return float(sum(bloom.fp_rate(m, n_i, k) for n_i in split_inputs(n_in, n_out)))


def unit_fp_experiment(n_seeds: int, min_fp_events: int, min_queries: int, max_queries: int, key_bytes: int = 4,
                       seed: int = 0, progress=None) -> pd.DataFrame:
    """Every Table 2.3 unit as ``n_out`` filters (:func:`measure_unit_fp`), ``n_seeds`` independent units each.

    Queries per unit are sized as in :func:`queries_per_filter`, from the union bound, but at most
    :data:`UNIT_MAX_QUERIES` (a unit queries all its filters; the claim compares with limits >= 1e-4, which
    ``n_seeds * UNIT_MAX_QUERIES`` queries resolve). One row per (unit, seed):
    ``setting, app, fu, m, k, n_out, n_in, seed, queries, false_positives, false_negatives``.
    """
    rows = []
    for r in thesis_table_2_3().itertuples():
        p = unit_union_bound(r.m, r.k, r.n_out, r.n_in)
        cap = min(max_queries, UNIT_MAX_QUERIES)
        q = int(min(cap, max(min(min_queries, cap), math.ceil(min_fp_events / (n_seeds * p))))) if p > 0 else cap
        for s in range(seed, seed + n_seeds):
            res = measure_unit_fp(r.m, r.k, r.n_out, r.n_in, s, q, key_bytes)
            rows.append({"setting": r.setting, "app": r.app, "fu": r.fu, **{c: res[c] for c in (
                "m", "k", "n_out", "n_in", "seed", "queries", "false_positives", "false_negatives")}})
        if progress is not None:
            progress(r)
    return pd.DataFrame(rows)


def summarize_units(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per unit: ``fp_mean`` (mean of the units' rates), ``se`` (sd / sqrt(seeds), floored at the binomial
    standard error of the pooled queries), ``union_bound`` (:func:`unit_union_bound`), ``fp_limit`` (Table 2.1)."""
    raw = raw.assign(fp_rate=raw["false_positives"] / raw["queries"])
    g = raw.groupby(["setting", "app", "fu", "m", "k", "n_out", "n_in"], sort=False)
    out = g.agg(seeds=("seed", "size"), queries=("queries", "sum"), false_positives=("false_positives", "sum"),
                false_negatives=("false_negatives", "sum"), fp_mean=("fp_rate", "mean"),
                fp_sd=("fp_rate", "std")).reset_index()
    out["union_bound"] = [unit_union_bound(m, k, o, i) for m, k, o, i in zip(out["m"], out["k"], out["n_out"],
                                                                              out["n_in"])]
    pooled = out["false_positives"] / out["queries"]
    binom = np.sqrt(pooled.clip(lower=1e-12) * (1 - pooled) / out["queries"])
    out["se"] = np.maximum(out["fp_sd"].fillna(0) / np.sqrt(out["seeds"]), binom)
    limits = thesis_table_2_3().set_index("setting")["fp_limit"]
    out["fp_limit"] = out["setting"].map(limits).to_numpy()
    return out


# --------------------------------------------------------------------------- summary


def t_quantile(p: float, df: int) -> float:
    """Student-t quantile by the Cornish-Fisher expansion around the normal one (good to ~1e-3 for df >= 5)."""
    z = NormalDist().inv_cdf(p)
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


def bonferroni_t(alpha: float, n_tests: int, n_seeds: int) -> float:
    """Two-sided critical t so that ``n_tests`` checks together raise a false alarm with probability <= alpha."""
    return t_quantile(1 - alpha / (2 * max(1, n_tests)), max(1, n_seeds - 1))


def summarize(raw: pd.DataFrame, alpha: float = 0.01) -> pd.DataFrame:
    """One row per point: mean, spread and standard error over seeds; formulas; tolerances.

    ``se`` = standard deviation of the per-filter rates / sqrt(S) (it contains both the query noise
    and the filter-to-filter variation), floored at the binomial standard error of the pooled
    queries under Eq. (2.1). ``t_crit`` is the two-sided t quantile, Bonferroni-corrected over all
    points of the table, so that all checks together raise a false alarm with probability <= ``alpha``.
    ``tol_eq21 = t_crit * se + |exact - eq2.1|``: the statistical margin plus the approximation inside
    Eq. (2.1) itself (its gap to the exact FP rate of ideal hashing).
    """
    keys = ["setting", "m", "n", "k"]
    raw = raw.assign(fp_rate=raw["false_positives"] / raw["queries"], fill_pow_k=raw["fill"] ** raw["k"])
    g = raw.groupby(keys, sort=False)
    out = g.agg(seeds=("seed", "size"), queries=("queries", "sum"), false_positives=("false_positives", "sum"),
                false_negatives=("false_negatives", "sum"), fp_mean=("fp_rate", "mean"), fp_sd=("fp_rate", "std"),
                fp_min=("fp_rate", "min"), fp_max=("fp_rate", "max"), fill_mean=("fill", "mean"),
                fill_pow_k_mean=("fill_pow_k", "mean")).reset_index()
    out["fp_pooled"] = out["false_positives"] / out["queries"]
    out["eq21"] = [bloom.fp_rate(m, n, k, "eq2.1") for m, n, k in zip(out["m"], out["n"], out["k"])]
    out["finite"] = [bloom.fp_rate(m, n, k, "finite") for m, n, k in zip(out["m"], out["n"], out["k"])]
    out["exact"] = [bloom.fp_rate(m, n, k, "exact") for m, n, k in zip(out["m"], out["n"], out["k"])]
    binom = np.sqrt(out["eq21"] * (1 - out["eq21"]) / out["queries"])
    out["se"] = np.maximum(out["fp_sd"].fillna(0) / np.sqrt(out["seeds"]), binom)
    out["t_crit"] = [bonferroni_t(alpha, len(out), int(n)) for n in out["seeds"]]
    out["z_vs_eq21"] = (out["fp_mean"] - out["eq21"]) / out["se"]
    out["z_vs_exact"] = (out["fp_mean"] - out["exact"]) / out["se"]
    out["tol_eq21"] = out["t_crit"] * out["se"] + (out["exact"] - out["eq21"]).abs()
    out["within_eq21"] = (out["fp_mean"] - out["eq21"]).abs() <= out["tol_eq21"]
    out["within_exact"] = (out["fp_mean"] - out["exact"]).abs() <= out["t_crit"] * out["se"]
    out["ratio_to_eq21"] = out["fp_mean"] / out["eq21"]
    q = g["fp_rate"].quantile
    out["fp_p05"] = q(0.05).to_numpy()
    out["fp_p95"] = q(0.95).to_numpy()
    return out


# --------------------------------------------------------------------------- the notebook's experiment


#: Columns of the per-filter table a run stores (everything else is derived from them).
FILTER_COLUMNS = ["setting", "m", "n", "k", "seed", "queries", "false_positives", "false_negatives", "fill"]


def check_params(m_values, bits_per_key, k_values, n_seeds, min_fp_events, min_queries, max_queries, alpha,
                 key_bytes, seed, thesis_settings) -> None:
    """Validate the parameters of :func:`fp_experiment` (ParameterError names the parameter and the allowed range)."""
    check_grid(m_values, bits_per_key, k_values)
    validate.integer("n_seeds", n_seeds, 2, 10_000)
    validate.integer("min_fp_events", min_fp_events, 1, 10**7)
    validate.integer("min_queries", min_queries, 1, 10**8)
    validate.integer("max_queries", max_queries, min_queries, 10**8)
    validate.number("alpha", alpha, 1e-6, 0.5)
    bloom.check_key_bytes(key_bytes)
    validate.integer("seed", seed, 0, 2**31)
    validate.boolean("thesis_settings", thesis_settings)
    too_many = [m // r for m in m_values for r in bits_per_key if m // r > 2 ** (8 * key_bytes)]
    if too_many:
        raise validate.ParameterError(f"parameter key_bytes={key_bytes}: {max(too_many)} distinct keys do not fit "
                                      f"in {key_bytes} byte(s); use more key bytes or smaller m")


def thesis_points() -> list[dict]:
    """The thesis's BF settings as sweep points: Table 2.5, and Table 2.3 with n = #In (the stored inputs of the FU)."""
    pts = [{"setting": r.setting, "m": r.m, "n": r.n, "k": r.k} for r in THESIS_TABLE_2_5.itertuples()]
    pts += [{"setting": r.setting, "m": r.m, "n": r.n_in, "k": r.k} for r in thesis_table_2_3().itertuples()]
    return pts


def thesis_settings_table() -> pd.DataFrame:
    """Published settings and limits, one row per setting label, with the formula values of both readings of n.

    ``eq21_one_bf``: Eq. (2.1) with all #In inputs in one filter. ``eq21_per_bf_union``: #Out filters with
    #In/#Out inputs each, Eq. (2.1) per filter times #Out (union bound on a false hit in any of them).
    """
    t25 = THESIS_TABLE_2_5.rename(columns={"fp_target": "fp_limit"}).assign(
        source=THESIS_TABLE_2_5_SOURCE, n_out=1, n_in=THESIS_TABLE_2_5["n"], hit_rate_pct=np.nan)
    t23 = thesis_table_2_3().assign(source=THESIS_TABLE_2_3_SOURCE, n=lambda d: d["n_in"])
    df = pd.concat([t25, t23], ignore_index=True)[
        ["setting", "source", "m", "k", "n", "n_out", "n_in", "hit_rate_pct", "fp_limit"]]
    df["eq21_one_bf"] = [bloom.fp_rate(m, n, k) for m, n, k in zip(df["m"], df["n"], df["k"])]
    df["eq21_per_bf_union"] = [o * (1 - math.exp(-k * (i / o) / m)) ** k
                               for m, k, i, o in zip(df["m"], df["k"], df["n_in"], df["n_out"])]
    return df


def fp_experiment(m_values, bits_per_key, k_values, n_seeds, min_fp_events, min_queries, max_queries,
                  key_bytes=4, seed=0, thesis_settings=True, progress=None) -> pd.DataFrame:
    """Per-filter measurements over the grid (setting ``grid``) and, optionally, the thesis's settings."""
    points = grid_points(m_values, bits_per_key, k_values) + (thesis_points() if thesis_settings else [])
    seeds = [seed + i for i in range(n_seeds)]
    raw = fp_sweep(points, seeds, min_fp_events, min_queries, max_queries, key_bytes, progress)
    return raw[FILTER_COLUMNS]
