"""Benchmark of the LUT convolution against the tools it replaces (not a test).

For each conv shape and batch size, the implementations run interleaved, ``repeats`` times:
exact float32 ``torch.nn.functional.conv2d`` (the speed reference), the numba LUT kernel
``axlib.kernels.lut_conv2d`` as dispatched (``numba_lut``: the expanded-table kernel on these shapes,
its cache cleared before every call so the table expansion is included, as in retraining where the
weights change every step; ``numba_lut_warm``: the same call with the expansion reused, as when a
network is evaluated over a test set), its row-gather kernel (``numba_gather``: one gather per product, im2col
included; the kernel of earlier versions), a chunked NumPy gather baseline (im2col, then
``lut[a_idx, w_idx]`` summed over K in chunks), and the exact low-rank path
(``axlib.kernels.lowrank``, float64 torch convs) for tables of increasing error rank
(``lowrank:<circuit>``). Every repeat records the seconds of each method, so ratios can be taken
per repeat (paired) and summarised by their median.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from axlib import multipliers
from axlib.kernels import expanded, lut_conv2d
from axlib.kernels.lowrank import factorize, lowrank_conv2d

#: (name, C_in, C_out, H=W, kernel, stride, padding): the conv shapes of ResNet-20 (CIFAR-10) and LeNet-5.
SHAPES = {
    "resnet20.layer1": (16, 16, 32, 3, 1, 1),
    "resnet20.layer2.0.conv1": (16, 32, 32, 3, 2, 1),
    "resnet20.layer2": (32, 32, 16, 3, 1, 1),
    "resnet20.layer3.0.conv1": (32, 64, 16, 3, 2, 1),
    "resnet20.layer3": (64, 64, 8, 3, 1, 1),
    "lenet5.conv2": (20, 50, 12, 5, 1, 0),
}


def numpy_gather_conv(x: np.ndarray, w: np.ndarray, lut: np.ndarray, stride: int, padding: int,
                      chunk_elems: int = 1 << 24) -> np.ndarray:
    """Baseline: torch-free im2col with NumPy, then a chunked fancy-index gather and sum (unsigned codes)."""
    n, c, h, _ = x.shape
    o, _, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - k) // stride + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * ho, c * k * k)          # (M, K)
    wk = w.reshape(o, -1).T                                                          # (K, O)
    out = np.empty((cols.shape[0], o), dtype=np.int64)
    rows = max(1, chunk_elems // (cols.shape[1] * o))
    for s in range(0, cols.shape[0], rows):
        out[s:s + rows] = lut[cols[s:s + rows, :, None], wk[None, :, :]].sum(axis=1, dtype=np.int64)
    return out.reshape(n, ho, ho, o).transpose(0, 3, 1, 2)


#: Unsigned EvoApprox circuits whose error matrices factor exactly, by increasing rank (0, 1, 4, 8, 15).
LOWRANK_TABLES = ("evoapprox:mul8u_1JFF", "evoapprox:mul8u_Y48", "evoapprox:mul8u_125K", "evoapprox:mul8u_7C1",
                  "evoapprox:mul8u_KEM")


def lowrank_factors(names: list[str], max_rank: int = 16) -> dict:
    """``{name: (multiplier, LowRankTable)}``; raises ValueError for a table with no exact factorisation."""
    out = {}
    for name in names:
        m = multipliers.get(name)
        if m.signed:
            raise ValueError(f"{name}: the benchmark uses unsigned operands; pick a mul8u circuit")
        lr = factorize(m.table, max_rank=max_rank)
        if lr is None:
            raise ValueError(f"{name}: error matrix has no exact factorisation of rank <= {max_rank}")
        out[name] = (m, lr)
    return out


def run(shapes: list[str], batch_sizes: list[int], repeats: int, seed: int, with_numpy: bool = True,
        lowrank_tables: list[str] = ()) -> pd.DataFrame:
    """Long table: one row per (shape, batch, repeat, method) with seconds and table lookups; low-rank
    methods are named ``lowrank:<table>`` and carry the table's ``rank``."""
    rng = np.random.default_rng(seed)
    lut = rng.integers(0, 65536, size=(256, 256)).astype(np.int64)  # any table: the cost does not depend on it
    factors = lowrank_factors(list(lowrank_tables))
    rows = []
    for name in shapes:
        cin, cout, hw, k, s, p = SHAPES[name]
        for b in batch_sizes:
            x = rng.integers(0, 256, size=(b, cin, hw, hw)).astype(np.uint8)
            w = rng.integers(0, 256, size=(cout, cin, k, k)).astype(np.uint8)
            xt, wt = torch.from_numpy(x.astype(np.float32)), torch.from_numpy(w.astype(np.float32))
            ho = (hw + 2 * p - k) // s + 1
            lookups = b * cout * ho * ho * cin * k * k
            methods = {"torch_conv_fp32": lambda: F.conv2d(xt, wt, stride=s, padding=p),
                       "numba_lut": lambda: (expanded.clear_cache(), lut_conv2d(x, w, lut, stride=s, padding=p))[1],
                       "numba_lut_warm": lambda: lut_conv2d(x, w, lut, stride=s, padding=p),
                       "numba_gather": lambda: lut_conv2d(x, w, lut, stride=s, padding=p, kernel="gather")}
            if with_numpy:
                methods["numpy_gather"] = lambda: numpy_gather_conv(x, w, lut, s, p)
            xl, wl = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(w.astype(np.int64))
            for tname, (_m, lr) in factors.items():
                methods[f"lowrank:{tname}"] = lambda lr=lr: lowrank_conv2d(xl, wl, lr, s, p)
            for f in methods.values():  # warm-up: numba compile, allocator
                f()
            assert np.array_equal(methods["numba_lut"](), methods["numba_gather"]())
            if with_numpy:
                assert np.array_equal(methods["numba_lut"](), methods["numpy_gather"]())
            for tname, (m, _) in factors.items():  # the low-rank path must equal the LUT kernel on its table
                assert np.array_equal(methods[f"lowrank:{tname}"]().numpy(), lut_conv2d(x, w, m.table, stride=s, padding=p))
            for r in range(repeats):
                for method, f in methods.items():
                    t0 = time.perf_counter()
                    f()
                    rank = factors[method.split(":", 1)[1]][1].rank if method.startswith("lowrank:") else None
                    rows.append({"shape": name, "batch": b, "repeat": r, "method": method,
                                 "seconds": time.perf_counter() - t0, "lookups": lookups, "rank": rank})
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Per (shape, batch): median seconds, G lookups/s (torch: G MAC/s), and medians (with min-max) of the
    paired ratios: dispatched LUT kernel / torch conv, row-gather kernel / dispatched kernel (its speed-up),
    NumPy gather / dispatched kernel."""
    wide = df.pivot_table(index=["shape", "batch", "repeat"], columns="method", values="seconds").reset_index()
    out = []
    for (shape, batch), g in wide.groupby(["shape", "batch"], sort=False):
        lookups = df[(df["shape"] == shape) & (df["batch"] == batch)]["lookups"].iloc[0]
        row = {"shape": shape, "batch": batch, "lookups_M": lookups / 1e6}
        for m in ("torch_conv_fp32", "numba_lut", "numba_lut_warm", "numba_gather", "numpy_gather"):
            if m in g:
                row[f"{m}_ms"] = 1e3 * g[m].median()
        row["torch_G_MAC_per_s"] = lookups / g["torch_conv_fp32"].median() / 1e9
        row["numba_G_lookups_per_s"] = lookups / g["numba_lut"].median() / 1e9
        ratio = g["numba_lut"] / g["torch_conv_fp32"]
        row["numba_over_torch"] = ratio.median()
        row["numba_over_torch_min"], row["numba_over_torch_max"] = ratio.min(), ratio.max()
        if "numba_lut_warm" in g:
            row["warm_G_lookups_per_s"] = lookups / g["numba_lut_warm"].median() / 1e9
            row["warm_over_torch"] = (g["numba_lut_warm"] / g["torch_conv_fp32"]).median()
        if "numba_gather" in g:
            speedup = g["numba_gather"] / g["numba_lut"]
            row["gather_over_numba"] = speedup.median()
            row["gather_over_numba_min"], row["gather_over_numba_max"] = speedup.min(), speedup.max()
        if "numpy_gather" in g:
            row["numpy_over_numba"] = (g["numpy_gather"] / g["numba_lut"]).median()
        out.append(row)
    return pd.DataFrame(out)


def summarize_lowrank(df: pd.DataFrame) -> pd.DataFrame:
    """Per (shape, batch, low-rank table): rank, median ms, and medians of the paired ratios to the
    numba LUT kernel and to the float32 torch conv (< 1 vs LUT: the low-rank path wins there)."""
    wide = df.pivot_table(index=["shape", "batch", "repeat"], columns="method", values="seconds").reset_index()
    ranks = df.dropna(subset=["rank"]).groupby("method")["rank"].first()
    out = []
    for (shape, batch), g in wide.groupby(["shape", "batch"], sort=False):
        for method, rank in ranks.items():
            if method not in g:
                continue
            out.append({"shape": shape, "batch": batch, "table": method.split(":", 1)[1], "rank": int(rank),
                        "lowrank_ms": 1e3 * g[method].median(),
                        "lowrank_over_lut": (g[method] / g["numba_lut"]).median(),
                        "lowrank_over_torch": (g[method] / g["torch_conv_fp32"]).median()})
    return pd.DataFrame(out)


def error_rank_table() -> pd.DataFrame:
    """Error metrics (incl. error-matrix rank) of every EvoApprox 8x8 table in ``AXLIB_DATA``."""
    rows = [multipliers.error_metrics(multipliers.get(f"evoapprox:{n}")) for n in multipliers.evoapprox_names()]
    return pd.DataFrame(rows)
