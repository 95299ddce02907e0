"""Batch membership-query throughput: numba H3 Bloom filter vs a Python ``set`` vs ``rbloom`` (not a test).

    python benchmarks/bloom_query.py [--n 1000 100000] [--queries 1000000] [--repeats 7] [--threads 1 2]

For every stored-set size n: n distinct random 32-bit keys are stored in each structure and one batch
of queries (a numpy uint64 array; ``--hit-fraction`` of them stored keys, the rest random) is answered
as a numpy bool array. Timed, per batch:

- ``numba T thr``: :class:`axlib.kernels.bloom.BloomFilter` (m = the power of two nearest
  ``bits-per-key * n``, ``--k`` H3 hashes), ``query`` with numba using T threads;
- ``set``: exact membership in a Python ``set`` of ints (the batch converted with ``tolist()``, which
  is part of the time, and answered by a generator into ``np.fromiter``);
- ``rbloom``: ``rbloom.Bloom`` sized for the same n and the numba filter's Eq. (2.1) false-positive
  rate (rbloom picks its own m and k), queried like the set;
- ``np.isin``: exact vectorised membership against the sorted stored keys (a numpy baseline);
- ``early-exit loop``: the query loop axlib used before (per hash a byte loop, stopping at the first
  clear bit), on the same filter and threads, so the speed-up of the branch-free kernel is measured
  side by side.

Methods are interleaved within each repeat (rotating order); reported: median queries/s per method
and the median over repeats of the paired ratio numba/other. Every method must find every stored key.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np
import pandas as pd

from axlib.kernels import bloom

try:
    import rbloom
except ImportError:  # optional (dev extra)
    rbloom = None


@numba.njit(parallel=True, nogil=True)
def _early_exit_query(keys, tables, words, out):  # the earlier axlib kernel, kept here as the baseline
    for c in numba.prange((keys.shape[0] + 4095) // 4096):
        for i in range(c * 4096, min(keys.shape[0], (c + 1) * 4096)):
            x = keys[i]
            hit = True
            for h in range(tables.shape[0]):
                p = np.uint32(0)
                for b in range(tables.shape[1]):
                    p ^= tables[h, b, (x >> np.uint64(8 * b)) & np.uint64(255)]
                if (words[0, p >> 6] >> np.uint64(p & 63)) & np.uint64(1) == 0:
                    hit = False
                    break
            out[i] = hit


def _pow2(x: float) -> int:
    return 1 << max(1, round(np.log2(max(x, 2))))


def build(n: int, bits_per_key: float, k: int, seed: int):
    rng = np.random.default_rng(seed)
    keys = rng.choice(2**32, size=n, replace=False).astype(np.uint64)
    bf = bloom.BloomFilter(_pow2(bits_per_key * n), k, key_bytes=4, seed=rng)
    bf.insert(keys)
    target = bf.expected_fp_rate()
    methods = {}
    for t in THREADS:
        def q_numba(q, t=t):
            numba.set_num_threads(t)
            return bf.query(q)
        methods[f"numba {t} thr"] = q_numba

    def q_early_exit(q):
        numba.set_num_threads(max(THREADS))
        out = np.zeros(q.size, dtype=np.bool_)
        _early_exit_query(bloom.check_keys(q, 4), bf.tables, bf.words, out)
        return out
    methods[f"early-exit loop {max(THREADS)} thr"] = q_early_exit
    s = set(keys.tolist())
    methods["set"] = lambda q: np.fromiter((x in s for x in q.tolist()), dtype=bool, count=q.size)
    if rbloom is not None:
        rb = rbloom.Bloom(n, max(target, 1e-9))
        rb.update(keys.tolist())
        methods["rbloom"] = lambda q: np.fromiter((x in rb for x in q.tolist()), dtype=bool, count=q.size)
    sorted_keys = np.sort(keys)
    methods["np.isin"] = lambda q: np.isin(q, sorted_keys, kind="sort")
    return keys, bf, methods


def run(ns, n_queries, hit_fraction, bits_per_key, k, repeats, seed) -> pd.DataFrame:
    rows = []
    for n in ns:
        keys, bf, methods = build(n, bits_per_key, k, seed)
        rng = np.random.default_rng(seed + 1)
        n_hit = int(round(hit_fraction * n_queries))
        q = np.concatenate([rng.choice(keys, size=n_hit), rng.integers(0, 2**32, size=n_queries - n_hit, dtype=np.uint64)])
        rng.shuffle(q)
        member = np.isin(q, keys)
        names = list(methods)
        for name in names:  # warm-up (numba compile / caches) and correctness
            got = methods[name](q)
            assert got[member].all(), f"{name} missed a stored key"
            fp = float(got[~member].mean()) if (~member).any() else float("nan")
            rows.append({"n": n, "m": bf.m, "k": bf.k, "method": name, "repeat": -1, "seconds": float("nan"),
                         "fp_rate": fp, "eq21": bf.expected_fp_rate()})
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:  # rotate the order every repeat
                t0 = time.perf_counter()
                methods[name](q)
                dt = time.perf_counter() - t0
                rows.append({"n": n, "m": bf.m, "k": bf.k, "method": name, "repeat": r, "seconds": dt,
                             "fp_rate": float("nan"), "eq21": bf.expected_fp_rate()})
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    df = pd.DataFrame(rows)
    df["queries_per_s"] = n_queries / df["seconds"]
    return df


def summarize(df: pd.DataFrame, reference: str) -> pd.DataFrame:
    timed = df[df["repeat"] >= 0]
    fps = df[df["repeat"] < 0].set_index(["n", "method"])["fp_rate"]
    out = []
    for (n, method), g in timed.groupby(["n", "method"], sort=False):
        ref = timed[(timed["n"] == n) & (timed["method"] == reference)].set_index("repeat")["seconds"]
        mine = g.set_index("repeat")["seconds"]
        out.append({"n": n, "m": int(g["m"].iloc[0]), "k": int(g["k"].iloc[0]), "method": method,
                    "median Mq/s": statistics.median(g["queries_per_s"]) / 1e6,
                    f"time / time({reference}), median of paired ratios": statistics.median(mine / ref),
                    "FP rate measured": fps[(n, method)], "Eq. 2.1": float(g["eq21"].iloc[0])})
    return pd.DataFrame(out)


THREADS: list[int] = [1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", nargs="+", type=int, default=[1_000, 100_000], help="stored keys")
    ap.add_argument("--queries", type=int, default=1_000_000, help="queries per batch")
    ap.add_argument("--hit-fraction", type=float, default=0.5, help="share of queries that are stored keys")
    ap.add_argument("--bits-per-key", type=float, default=16.0, help="m / n (m rounded to a power of two)")
    ap.add_argument("--k", type=int, default=3, help="hash functions of the numba filter")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", nargs="+", type=int, default=sorted({1, numba.config.NUMBA_NUM_THREADS}))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    THREADS[:] = args.threads
    if rbloom is None:
        print("rbloom is not installed (pip install -e '.[dev]'); benchmarking against the set and np.isin only")
    df = run(args.n, args.queries, args.hit_fraction, args.bits_per_key, args.k, args.repeats, args.seed)
    ref = f"numba {max(args.threads)} thr"
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"{args.queries} queries per batch, {args.hit_fraction:.0%} stored keys, {args.repeats} repeats, "
              f"numba threads available: {numba.config.NUMBA_NUM_THREADS}")
        s = summarize(df, ref)
        print(s.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
