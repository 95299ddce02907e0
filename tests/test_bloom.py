"""Bloom filters with H3 hashing: no false negatives, numba == plain-Python reference, measured FP rate vs
Eq. (2.1) of akhlaghi2020 within a statistical bound, the function-unit semantics and the parameter checks."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from axlib.kernels import bloom
from axlib.kernels.bloom import (
    BloomFilter,
    BloomFunctionUnit,
    fp_rate,
    h3_coefficients,
    h3_tables,
    reference_bfu_query,
    reference_bloom_bits,
    reference_bloom_query,
    reference_h3,
)
from axlib.methods import bloomreuse
from axlib.validate import ParameterError

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def filters_and_keys(draw, max_keys=60):
    """(m, k, key_bytes, seed, stored keys, query keys) with keys of the given width."""
    key_bytes = draw(st.sampled_from([1, 2, 3, 4, 8]))
    m = 2 ** draw(st.integers(1, 12))
    k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32))
    hi = 2 ** (8 * key_bytes) - 1
    stored = draw(st.lists(st.integers(0, hi), min_size=0, max_size=max_keys))
    queries = draw(st.lists(st.integers(0, hi), min_size=0, max_size=max_keys))
    dtype = np.uint32 if key_bytes <= 4 else np.uint64
    return m, k, key_bytes, seed, np.array(stored, dtype=dtype), np.array(queries, dtype=dtype)


# --------------------------------------------------------------------------- hashing


def test_tables_xor_coefficients_per_byte():
    coeffs = h3_coefficients(1024, 3, 2, seed=5)
    tables = h3_tables(coeffs)
    assert tables.shape == (3, 2, 256) and tables.dtype == np.uint32
    for h, b, v in itertools.product(range(3), range(2), [0, 1, 2, 3, 128, 255, 77]):
        want = 0
        for j in range(8):
            if (v >> j) & 1:
                want ^= int(coeffs[h, 8 * b + j])
        assert tables[h, b, v] == want
    assert (tables[:, :, 0] == 0).all()


def test_single_bit_keys_hash_to_their_coefficient_and_h3_is_linear():
    bf = BloomFilter(4096, 4, key_bytes=4, seed=11)
    keys = np.array([1 << i for i in range(32)], dtype=np.uint32)
    assert np.array_equal(bf.positions(keys), bf.coefficients.T)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2**32, size=200, dtype=np.uint64)
    y = rng.integers(0, 2**32, size=200, dtype=np.uint64)
    assert np.array_equal(bf.positions(x ^ y), bf.positions(x) ^ bf.positions(y))  # GF(2)-linear, like the XOR tree
    assert int(bf.positions(x).max()) < bf.m


def test_seed_is_reproducible_and_matters():
    a, b, c = (h3_coefficients(256, 3, 4, seed=s) for s in (1, 1, 2))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.array_equal(h3_coefficients(256, 3, 4, np.random.default_rng(1)), a)


# --------------------------------------------------------------------------- no false negatives, numba == reference


@SETTINGS
@given(filters_and_keys())
def test_no_false_negatives(case):
    m, k, key_bytes, seed, stored, queries = case
    bf = BloomFilter(m, k, key_bytes, seed=seed)
    bf.insert(stored)
    assert bf.query(stored).all()
    bf.insert(queries)  # a second batch: the first one must still be found
    assert bf.query(stored).all() and bf.query(queries).all()
    assert bf.n_inserted == stored.size + queries.size


@SETTINGS
@given(filters_and_keys())
def test_numba_matches_reference(case):
    m, k, key_bytes, seed, stored, queries = case
    bf = BloomFilter(m, k, key_bytes, seed=seed)
    bf.insert(stored)
    ref_bits = reference_bloom_bits(stored.tolist(), bf.coefficients.tolist(), m)
    assert bf.bits().tolist() == ref_bits
    assert bf.query(queries).tolist() == reference_bloom_query(ref_bits, queries.tolist(), bf.coefficients.tolist())
    want_pos = [[reference_h3(x, c) for c in bf.coefficients.tolist()] for x in queries.tolist()]
    assert bf.positions(queries).tolist() == want_pos
    assert bf.fill == pytest.approx(sum(ref_bits) / m)


@pytest.mark.parametrize("m, k, key_bytes", [(16, 1, 1), (64, 3, 4), (256, 2, 3), (1024, 5, 8)])
def test_numba_matches_reference_half_full(m, k, key_bytes):
    """Half-full vectors, where many absent keys have some but not all of their k bits set."""
    rng = np.random.default_rng(m + k)
    n = max(1, round(m * math.log(2) / k))  # fill about 1/2
    stored = rng.integers(0, 2 ** (8 * key_bytes) - 1, size=n, dtype=np.uint64, endpoint=True)
    queries = rng.integers(0, 2 ** (8 * key_bytes) - 1, size=3000, dtype=np.uint64, endpoint=True)
    bf = BloomFilter(m, k, key_bytes, seed=k)
    bf.insert(stored)
    ref_bits = reference_bloom_bits(stored.tolist(), bf.coefficients.tolist(), m)
    assert bf.bits().tolist() == ref_bits
    got = bf.query(queries)
    want = reference_bloom_query(ref_bits, queries.tolist(), bf.coefficients.tolist())
    assert got.tolist() == want
    assert 0.01 < got.mean() < 0.9  # about 2^-k: most absent keys have some but not all of their bits set


def test_uncompiled_kernels_agree_with_compiled():
    """The kernels' Python source (prange = range) gives the same answers as the compiled kernels."""
    rng = np.random.default_rng(3)
    bf = BloomFilter(128, 3, 4, seed=2)
    keys = rng.integers(0, 2**32, size=40, dtype=np.uint64)
    q = rng.integers(0, 2**32, size=300, dtype=np.uint64)
    bf.insert(keys)
    words = np.zeros_like(bf.words)
    bloom._insert.py_func(keys, bf.tables, words, 0)
    assert np.array_equal(words, bf.words)
    out = np.zeros(q.size, dtype=np.bool_)
    bloom._query_one.py_func(q, bloom.padded_tables(bf.tables), bf.words, 0, out)
    assert np.array_equal(out, bf.query(q))
    unit = BloomFunctionUnit(64, 2, 4, seed=9)
    for v in range(3):
        unit.add_output(v, rng.integers(0, 2**32, size=8, dtype=np.uint64))
    first, claims = np.zeros(q.size, np.int64), np.zeros(q.size, np.int64)
    bloom._query_all.py_func(q, unit.tables, unit.words, first, claims)
    res = unit.query(q)
    assert np.array_equal(first, res.index) and np.array_equal(claims, res.claims)


def test_parallel_and_serial_paths_agree():
    rng = np.random.default_rng(8)
    q = rng.integers(0, 2**32, size=3 * bloom.PARALLEL_MIN + 17, dtype=np.uint64)
    bf = BloomFilter(512, 3, 4, seed=4)
    bf.insert(rng.integers(0, 2**32, size=100, dtype=np.uint64))
    serial = np.zeros(q.size, dtype=np.bool_)
    bloom._query_one_range(q, bloom.padded_tables(bf.tables), bf.words, 0, serial, 0, q.size)
    parallel = bf.query(q)
    assert np.array_equal(parallel, serial) and 0 < parallel.sum() < q.size
    unit = BloomFunctionUnit(256, 2, 4, seed=4)
    for v in range(4):
        unit.add_output(v, rng.integers(0, 2**32, size=40, dtype=np.uint64))
    first, claims = np.zeros(q.size, np.int64), np.zeros(q.size, np.int64)
    bloom._query_all_range(q, unit.tables, unit.words, first, claims, 0, q.size)
    res = unit.query(q)
    assert np.array_equal(res.index, first) and np.array_equal(res.claims, claims) and res.multi_claims > 0


def test_packing_small_and_large_vectors():
    for m in (2, 8, 32, 64, 128, 2**16):
        bf = BloomFilter(m, 2, 2, seed=m)
        keys = np.arange(0, 2**16, 997, dtype=np.uint32)
        bf.insert(keys)
        assert bf.words.shape == (1, max(1, m // 64))
        assert bf.bits().tolist() == reference_bloom_bits(keys.tolist(), bf.coefficients.tolist(), m)


def test_query_keeps_shape_and_accepts_other_integer_dtypes():
    bf = BloomFilter(256, 2, 4, seed=0)
    keys = np.arange(12, dtype=np.int64).reshape(3, 4)
    bf.insert(keys)
    assert bf.query(keys).shape == (3, 4) and bf.query(keys).all()
    assert 5 in bf
    assert bf.query(np.zeros(0, dtype=np.uint32)).shape == (0,)


# --------------------------------------------------------------------------- false-positive rate


def test_fp_formulas():
    assert fp_rate(64, 1, 2) == pytest.approx((1 - math.exp(-2 / 64)) ** 2, rel=1e-15)
    assert fp_rate(64, 1, 2, "finite") == pytest.approx((1 - (63 / 64) ** 2) ** 2, rel=1e-15)
    assert fp_rate(1024, 0, 3) == 0.0 and fp_rate(1024, 0, 3, "exact") == 0.0
    # exact form: brute force over every placement of the k*n stored bits and the k query bits, m = 4 and m = 8
    for m, n, k in [(4, 2, 2), (4, 1, 3), (8, 2, 2), (8, 3, 1)]:
        hits = sum(all(q in stored for q in query)
                   for stored in itertools.product(range(m), repeat=k * n)
                   for query in itertools.product(range(m), repeat=k))
        assert fp_rate(m, n, k, "exact") == pytest.approx(hits / m ** (k * n + k), rel=1e-12)
    # for large m all three forms agree; for small m Eq. (2.1) is below the exact value
    assert fp_rate(2**20, 2**16, 4, "exact") == pytest.approx(fp_rate(2**20, 2**16, 4), rel=1e-4)
    assert fp_rate(64, 8, 6) < fp_rate(64, 8, 6, "exact")


@pytest.fixture(scope="module")
def measured():
    """Deterministic FP measurement on 60 independent filters per (m, n, k), equal expected FP events per point."""
    points = [{"setting": "t", "m": m, "n": n, "k": k} for m, n, k in
              [(256, 32, 3), (1024, 128, 2), (1024, 64, 4), (4096, 512, 3), (64, 8, 2), (2048, 128, 6)]]
    raw = bloomreuse.fp_sweep(points, seeds=list(range(60)), min_fp_events=6000, min_queries=2000, max_queries=400_000)
    return raw, bloomreuse.summarize(raw, alpha=0.01)


def test_measured_fp_rate_matches_eq21(measured):
    raw, s = measured
    assert (raw["false_negatives"] == 0).all()
    assert (s["false_positives"] >= 3000).all()  # enough events for a tight bound
    dev = (s["fp_mean"] - s["eq21"]).abs()
    assert (dev <= s["tol_eq21"]).all(), s[["m", "n", "k", "fp_mean", "eq21", "tol_eq21"]]
    assert (s["tol_eq21"] / s["eq21"] < 0.15).all()  # the bound is tight enough to mean something
    assert s["within_exact"].all()


def test_fp_check_rejects_wrong_formula_parameters(measured):
    """The same data and the same tolerance must reject Eq. (2.1) evaluated with a wrong k or n."""
    _, s = measured
    for dk, fn in [(1, 1.0), (-1, 1.0), (0, 1.3), (0, 0.75)]:
        wrong = [fp_rate(m, max(1, round(n * fn)), max(1, k + dk)) for m, n, k in zip(s["m"], s["n"], s["k"])]
        rejected = (s["fp_mean"] - np.array(wrong)).abs() > s["tol_eq21"]
        assert rejected.any(), (dk, fn)


def test_t_quantile():
    assert bloomreuse.t_quantile(0.975, 10) == pytest.approx(2.228, abs=2e-3)
    assert bloomreuse.t_quantile(0.995, 29) == pytest.approx(2.756, abs=2e-3)
    assert bloomreuse.t_quantile(0.975, 10**6) == pytest.approx(1.960, abs=1e-3)


def test_measure_fp_is_deterministic_and_counts_only_absent_keys():
    with pytest.raises(ParameterError, match="n=300 distinct keys do not fit in key_bytes=1"):
        bloomreuse.measure_fp(256, 300, 1, seed=4, n_queries=5000, key_bytes=1)
    full = bloomreuse.measure_fp(64, 256, 2, seed=1, n_queries=1000, key_bytes=1)  # every 1-byte key stored
    assert full["queries"] == 0 and full["false_negatives"] == 0
    b1 = bloomreuse.measure_fp(1024, 50, 3, seed=7, n_queries=20000)
    assert b1 == bloomreuse.measure_fp(1024, 50, 3, seed=7, n_queries=20000)
    assert b1["false_negatives"] == 0 and 0 < b1["queries"] <= 20000


# --------------------------------------------------------------------------- function unit


def test_bfu_hits_misses_and_values():
    unit = BloomFunctionUnit(2**16, 4, 4, seed=1)  # large vectors: no false positives among these few keys
    unit.add_output(10.5, np.array([1, 2, 3], dtype=np.uint32))
    unit.add_output(-2.0, np.array([100, 200], dtype=np.uint32))
    q = np.array([2, 200, 7, 3, 100, 999], dtype=np.uint32)
    res = unit.query(q, fill=np.nan)
    assert res.hit.tolist() == [True, True, False, True, True, False]
    assert res.index.tolist() == [0, 1, -1, 0, 1, -1]
    assert res.values[res.hit].tolist() == [10.5, -2.0, 10.5, -2.0]
    assert np.isnan(res.values[~res.hit]).all()
    assert res.multi_claims == 0 and res.hit_rate == pytest.approx(4 / 6)
    assert len(unit) == 2 and unit.n_stored == [3, 2] and unit.bits().shape == (2, 2**16)


def test_bfu_multi_claim_first_added_wins():
    unit = BloomFunctionUnit(2**16, 3, 4, seed=2)
    unit.add_output(5, np.array([42, 43], dtype=np.uint32))
    unit.add_output(9, np.array([42, 77], dtype=np.uint32))  # 42 stored under both outputs
    res = unit.query(np.array([42, 43, 77], dtype=np.uint32))
    assert res.values.tolist() == [5, 5, 9]
    assert res.claims.tolist() == [2, 1, 1] and res.multi_claims == 1


def test_bfu_from_profile_orders_by_frequency():
    keys = np.array([1, 1, 1, 2, 2, 5, 5, 5, 5, 6, 9, 9], dtype=np.uint32)
    outs = np.array([7, 7, 7, 7, 7, 3, 3, 3, 3, 3, 7, 3])  # output 7: 6 times, output 3: 6 times -> tie: 3 first
    unit = BloomFunctionUnit.from_profile(keys, outs, n_outputs=2, inputs_per_output=2, m=2**16, k=3, seed=0)
    assert unit.outputs == [3, 7]
    # output 3: keys 5 (4x), then 6 and 9 (1x each; the smaller key 6 wins the tie); output 7: keys 1 (3x), 2 (2x)
    res = unit.query(np.array([5, 6, 9, 1, 2], dtype=np.uint32))
    assert res.hit.tolist() == [True, True, False, True, True]
    assert res.values[res.hit].tolist() == [3, 3, 7, 7]
    keys2 = np.array([4, 4, 4, 4, 8, 8, 8], dtype=np.uint32)
    outs2 = np.array([1, 1, 1, 2, 2, 2, 2])  # output 2 more frequent; key 4 seen with both outputs
    unit2 = BloomFunctionUnit.from_profile(keys2, outs2, n_outputs=2, inputs_per_output=2, m=2**16, k=3, seed=0)
    assert unit2.outputs == [2, 1]
    res2 = unit2.query(np.array([4], dtype=np.uint32))
    assert res2.values.tolist() == [2] and res2.multi_claims == 1  # the more frequent output wins


@SETTINGS
@given(filters_and_keys(max_keys=30), st.integers(1, 5))
def test_bfu_matches_reference(case, n_bf):
    m, k, key_bytes, seed, stored, queries = case
    m = min(m, 64)  # small vectors: many false positives and multi-claims
    groups = [stored[i::n_bf] for i in range(n_bf)]
    unit = BloomFunctionUnit(m, k, key_bytes, seed=seed)
    for i, g in enumerate(groups):
        unit.add_output(i * 10, g)
    allq = np.concatenate([stored, queries]).astype(np.uint64)
    res = unit.query(allq, fill=-1)
    ref = reference_bfu_query([g.tolist() for g in groups], allq.tolist(), unit.coefficients.tolist(), m)
    assert list(zip(res.index.tolist(), res.claims.tolist())) == ref
    assert res.hit[: stored.size].all()  # no false negatives through the unit either
    assert np.array_equal(res.values[res.hit], res.index[res.hit] * 10)
    assert (res.values[~res.hit] == -1).all()


def test_empty_unit_misses_everything():
    res = BloomFunctionUnit(64, 2).query(np.array([1, 2], dtype=np.uint32))
    assert not res.hit.any() and res.index.tolist() == [-1, -1]


# --------------------------------------------------------------------------- parameter validation


@pytest.mark.parametrize("kwargs, match", [
    ({"m": 100, "k": 2}, r"m=100 must be a power of two.*64 or 128"),
    ({"m": 1, "k": 2}, r"m=1 is out of range"),
    ({"m": 2**31, "k": 2}, r"m=2147483648 is out of range"),
    ({"m": 64.0, "k": 2}, r"m=64.0 must be an integer"),
    ({"m": 64, "k": 0}, r"k=0 is out of range; allowed: integers in \[1, 32\]"),
    ({"m": 64, "k": 33}, r"k=33 is out of range"),
    ({"m": 64, "k": True}, r"k=True must be an integer"),
    ({"m": 64, "k": 2, "key_bytes": 0}, r"key_bytes=0 is out of range"),
    ({"m": 64, "k": 2, "key_bytes": 9}, r"key_bytes=9 is out of range"),
    ({"m": 64, "k": 2, "seed": -1}, r"seed=-1 must be a non-negative integer"),
])
def test_invalid_filter_parameters(kwargs, match):
    for cls in (BloomFilter, BloomFunctionUnit):
        with pytest.raises(ParameterError, match=match):
            cls(**kwargs)


def test_invalid_keys():
    bf = BloomFilter(64, 2, key_bytes=2)
    with pytest.raises(ParameterError, match=r"fit in key_bytes=2 bytes.*\[0, 65535\].*65536"):
        bf.insert(np.array([1, 65536]))
    with pytest.raises(ParameterError, match="non-negative"):
        bf.query(np.array([-3, 1]))
    with pytest.raises(ParameterError, match="unsigned integer keys"):
        bf.insert(np.array([1.0, 2.0]))
    with pytest.raises(ParameterError, match="same length"):
        BloomFunctionUnit.from_profile(np.array([1, 2]), np.array([1]), 1, 1, m=64, k=2)
    with pytest.raises(ParameterError, match="n_outputs=0"):
        BloomFunctionUnit.from_profile(np.array([1]), np.array([1]), 0, 1, m=64, k=2)


def test_invalid_formula_and_grid_parameters():
    with pytest.raises(ParameterError, match=r"form='eq21' is not allowed.*'eq2.1', 'finite', 'exact'"):
        fp_rate(64, 4, 2, form="eq21")
    with pytest.raises(ParameterError, match="n=-1"):
        fp_rate(64, -1, 2)
    with pytest.raises(ParameterError, match="m=100 must be a power of two"):
        bloomreuse.grid_points([64, 100], [4], [2])
    with pytest.raises(ParameterError, match=r"store none"):
        bloomreuse.grid_points([64], [128], [2])
    with pytest.raises(ParameterError, match=r"k_values has invalid value\(s\) \[0\]"):
        bloomreuse.grid_points([64], [4], [0, 2])


def test_split_inputs_is_even_and_complete():
    from axlib.methods import bloomreuse as br

    assert br.split_inputs(12, 4) == [3, 3, 3, 3]
    assert br.split_inputs(26, 6) == [5, 5, 4, 4, 4, 4]
    assert br.split_inputs(10, 10) == [1] * 10
    with pytest.raises(ParameterError):
        br.split_inputs(3, 4)


def test_unit_of_several_filters_has_no_false_negatives_and_the_union_rate():
    from axlib.methods import bloomreuse as br

    m, k, n_out, n_in = 64, 2, 4, 12
    rates = [br.measure_unit_fp(m, k, n_out, n_in, s, 20_000) for s in range(8)]
    assert all(r["false_negatives"] == 0 for r in rates)
    measured = sum(r["false_positives"] for r in rates) / sum(r["queries"] for r in rates)
    union = br.unit_union_bound(m, k, n_out, n_in)
    single = bloom.fp_rate(m, n_in // n_out, k)
    # any of 4 filters: about 4x one filter's rate (below the union bound), far above a single filter
    assert single * 2.5 < measured < union * 1.15
    one = br.measure_unit_fp(m, k, 1, 3, 0, 20_000)
    assert abs(one["fp_rate"] - bloom.fp_rate(m, 3, k)) < 0.02


def test_summarize_units_attaches_limits_and_bounds():
    from axlib.methods import bloomreuse as br

    raw = br.unit_fp_experiment(2, 10, 100, 200)
    s = br.summarize_units(raw)
    assert len(s) == len(br.THESIS_TABLE_2_3)
    assert s["fp_limit"].notna().all() and (s["union_bound"] > 0).all()
    assert (s["queries"] >= 2 * 100 * 0.99).all()
