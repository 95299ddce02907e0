"""Numba kernels for multiplication reuse in CNN layers (akhlaghi2020, thesis §2.5, §2.7.2).

Every convolution (cross-correlation, no padding) and every fully connected layer is treated as a
convolution: a linear layer with input (N, F) and weight (O, F) is a 1x1 convolution of an (N, F, 1, 1)
input. A *position* is one weight tap (c, p, q) shared by all O output channels; position ``pos =
(c*kh + p)*kw + q``, P = C*kh*kw positions. Weight element (o, c, p, q) multiplies every input element
``x[n, c, i*sh + p, j*sw + q]`` of the window of its position, i.e. N*Ho*Wo activations.

Two kernels:

- :func:`window_histograms` -- for every position, the number (and the sum) of window activations per
  activation key. With ``Mc[pos, b]`` = number of weights of key b at position pos (over o), the number
  of multiplications of operand-key pair (a, b) is ``sum_pos Hc[pos, a] * Mc[pos, b]`` (a matrix product),
  and the sum of their exact products is ``sum_pos Hs[pos, a] * Ms[pos, b]`` (Ms: sums of the weight
  values). This counts every multiplication of a layer without enumerating them.
- :func:`served_conv2d` -- the convolution with every multiplication either served from a table or
  computed exactly: ``table[key(x), key(w)]`` holds the value returned for that operand-key pair, NaN
  meaning "miss, compute ``x * w``". The same im2col + gather loop as the LUT kernel
  (:mod:`axlib.kernels.lut_gemm`), plus the exact fallback and a count of served multiplications; the
  table is read as (value, miss flag) pairs so the inner loop has no branch (about 3.5x faster on a
  LeNet conv2 than a NaN test with a branch: ~650 vs ~180 M multiplications/s on one core).

Arithmetic: operands are float32; an exact product is formed in float64 (exact: 24 + 24 significand
bits), served values are float32 (a 32-bit register), all sums are float64. Callers round the layer
output to float32 themselves.
"""

from __future__ import annotations

import numba
import numpy as np

from axlib.config import NUMBA_FLAGS, NUMBA_PARALLEL_FLAGS
from axlib.kernels import checks
from axlib.kernels.lut_gemm import _im2col

#: Upper bound on the bytes of one im2col block (keys + values) in :func:`served_conv2d`.
IM2COL_BUDGET_BYTES = 48 * 2**20


# --------------------------------------------------------------------------- histograms


@numba.njit(**NUMBA_FLAGS)
def _window_hist(keys, vals, kh, kw, sh, sw, ho, wo, counts, sums):  # pragma: no cover - compiled
    """counts[pos, keys[n, c, i*sh+p, j*sw+q]] += 1 and sums[...] += vals[...] for every window element."""
    n_batch, n_chan = keys.shape[0], keys.shape[1]
    for n in range(n_batch):
        for c in range(n_chan):
            for p in range(kh):
                for q in range(kw):
                    pos = (c * kh + p) * kw + q
                    crow = counts[pos]
                    srow = sums[pos]
                    for i in range(ho):
                        krow = keys[n, c, i * sh + p]
                        vrow = vals[n, c, i * sh + p]
                        for j in range(wo):
                            a = krow[j * sw + q]
                            crow[a] += 1
                            srow[a] += vrow[j * sw + q]


def out_size(h: int, w: int, kh: int, kw: int, sh: int, sw: int) -> tuple[int, int]:
    """Output height and width of an unpadded convolution."""
    return (h - kh) // sh + 1, (w - kw) // sw + 1


def window_histograms(keys: np.ndarray, vals: np.ndarray, kh: int, kw: int, stride: tuple[int, int],
                      n_keys: int, counts: np.ndarray | None = None, sums: np.ndarray | None = None):
    """Per-position histograms of activation keys over all windows (accumulating into ``counts``/``sums``).

    Args:
        keys: (N, C, H, W) integer activation keys in [0, n_keys).
        vals: (N, C, H, W) finite float32 activations (summed per key into ``sums``).
        kh, kw: kernel size (each >= 1, at most the input's); stride: int or (sh, sw), >= 1.
        n_keys: number of activation keys (2**apx_bit).
        counts, sums: optional (C*kh*kw, n_keys) int64 / float64 accumulators (created if None).

    Returns:
        ``(counts, sums)``: counts[pos, a] = number of window elements of position pos with key a;
        sums[pos, a] = their sum (float64).
    """
    keys = np.ascontiguousarray(checks.int_array("keys", keys, 4))
    vals = np.ascontiguousarray(checks.real_array("vals", vals, shape=keys.shape, dtype=np.float32))
    n_keys = checks.int_param("n_keys", n_keys, 1)
    c = keys.shape[1]
    kh, kw = checks.int_param("kh", kh, 1), checks.int_param("kw", kw, 1)
    (sh, sw), _, _, (ho, wo) = checks.conv_geometry(keys.shape, (1, c, kh, kw), stride, 0)
    checks.check_range("keys", keys, 0, n_keys, "activation-key", "histogram")
    shape = (c * kh * kw, n_keys)
    if counts is None:
        counts = np.zeros(shape, dtype=np.int64)
    if sums is None:
        sums = np.zeros(shape, dtype=np.float64)
    for name, acc, dtype in (("counts", counts, np.int64), ("sums", sums, np.float64)):
        if not isinstance(acc, np.ndarray) or acc.shape != shape or acc.dtype != dtype:
            raise ValueError(f"{name} must be a {np.dtype(dtype)} array of shape {shape} (C*kh*kw, n_keys), got "
                             f"{getattr(acc, 'dtype', type(acc).__name__)} {np.shape(acc)}")
    _window_hist(keys, vals, kh, kw, sh, sw, ho, wo, counts, sums)
    return counts, sums


# --------------------------------------------------------------------------- served convolution


@numba.njit(**NUMBA_PARALLEL_FLAGS)
def _served_gemm(a_key, a_val, w_key, w_val, pairs, out, served):  # pragma: no cover - compiled
    """out[m, n] = sum_k pairs[a, b, 0] + pairs[a, b, 1] * a_val[m,k] * w_val[k,n] with (a, b) the operand keys;
    served[m] = number of (k, n) with pairs[a, b, 1] == 0. Branch-free: a miss has (0, 1), a served pair (v, 0)."""
    m_count, k_count = a_key.shape
    n_count = w_key.shape[1]
    for m in numba.prange(m_count):
        acc = np.zeros(n_count, dtype=np.float64)
        miss = 0.0
        for k in range(k_count):
            row = pairs[a_key[m, k]]
            av = np.float64(a_val[m, k])
            wk = w_key[k]
            wv = w_val[k]
            for n in range(n_count):
                j = wk[n]
                f = row[j, 1]
                acc[n] += row[j, 0] + f * (av * np.float64(wv[n]))
                miss += f
        for n in range(n_count):
            out[m, n] = acc[n]
        served[m] = k_count * n_count - np.int64(miss)


def pair_table(table: np.ndarray) -> np.ndarray:
    """(A, B) float32 table with NaN = miss -> (A, B, 2) float32 ``[value or 0, 1.0 if miss else 0.0]``.

    The kernel reads both halves with one cache line and needs no branch (a miss adds ``0 + 1 * x * w``,
    a served pair ``v + 0 * x * w``; operands are finite)."""
    table = np.asarray(table)
    if table.dtype.kind not in "iuf":
        raise ValueError(f"table must be a real numeric array (float32, NaN = miss), got dtype {table.dtype}")
    table = table.astype(np.float32)
    if table.ndim != 2 or 0 in table.shape:
        raise ValueError(f"table must be 2-D and non-empty (activation key, weight key), got shape {table.shape}")
    if np.isinf(table).any():
        raise ValueError(f"table values must be finite (NaN marks a miss); got {int(np.isinf(table).sum())} inf value(s)")
    miss = np.isnan(table)
    out = np.empty(table.shape + (2,), dtype=np.float32)
    out[..., 0] = np.where(miss, np.float32(0), table)
    out[..., 1] = miss
    return out


def _check_pairs(pairs) -> np.ndarray:
    """A :func:`pair_table` form: (A, B, 2) float32 (shape and dtype only: its values were checked when it was
    made, and scanning a 4096 x 4096 table on every call would cost more than many convolutions)."""
    pairs = np.asarray(pairs)
    if pairs.dtype.kind != "f" or pairs.shape[2] != 2 or 0 in pairs.shape:
        raise ValueError(f"a 3-D table must be the pair_table form (A, B, 2) float32, got {pairs.dtype} {pairs.shape}")
    return np.ascontiguousarray(pairs, dtype=np.float32)


def served_conv2d(x: np.ndarray, x_key: np.ndarray, w: np.ndarray, w_key: np.ndarray, table: np.ndarray,
                  stride: tuple[int, int] = (1, 1)) -> tuple[np.ndarray, int]:
    """Unpadded convolution with table-served multiplications.

    Args:
        x: (N, C, H, W) finite float32 activations; x_key: their keys, same shape, integers in [0, table.shape[0]).
        w: (O, C, kh, kw) finite float32 weights; w_key: their keys, same shape, in [0, table.shape[1]).
        table: (A, B) float32; ``table[a, b]`` is the value returned for a multiplication whose operand keys
            are (a, b), NaN where it is computed exactly; or its :func:`pair_table` form (A, B, 2).
        stride: int or (sh, sw), >= 1.

    Raises:
        ValueError naming the argument: non-finite operands (a served pair adds ``0 * x * w``, which a NaN or
        inf operand would turn into NaN), float or out-of-range keys (no truncation, no wrap-around), shape
        mismatches, a kernel larger than the input, a bad stride.

    Returns:
        ``(out, served)``: out (N, O, Ho, Wo) float64 sums without bias; served = number of multiplications
        answered from the table.
    """
    x = np.ascontiguousarray(checks.real_array("x", x, ndim=4, dtype=np.float32))
    w = np.ascontiguousarray(checks.real_array("w", w, ndim=4, dtype=np.float32))
    x_key = checks.int_array("x_key", x_key, 4)
    w_key = checks.int_array("w_key", w_key, 4)
    if x_key.shape != x.shape or w_key.shape != w.shape:
        raise ValueError(f"shape mismatch: x {x.shape}, x_key {x_key.shape}, w {w.shape}, w_key {w_key.shape}")
    (sh, sw), _, _, (ho, wo) = checks.conv_geometry(x.shape, w.shape, stride, 0)
    pairs = _check_pairs(table) if np.ndim(table) == 3 else pair_table(table)
    checks.check_range("x_key", x_key, 0, pairs.shape[0], "first (activation-key)", "table")
    checks.check_range("w_key", w_key, 0, pairs.shape[1], "second (weight-key)", "table")
    kdt = np.uint16 if max(pairs.shape[:2]) <= 2**16 else np.int64
    xk = np.ascontiguousarray(x_key, dtype=kdt)
    n_batch, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    k = c * kh * kw
    wk = np.ascontiguousarray(np.asarray(w_key, dtype=kdt).reshape(o, k).T)
    wv = np.ascontiguousarray(w.reshape(o, k).T)
    out = np.zeros((n_batch, o, ho, wo), dtype=np.float64)
    served_total = 0
    row_bytes = ho * wo * k * (4 + xk.dtype.itemsize)
    chunk = max(1, IM2COL_BUDGET_BYTES // max(row_bytes, 1))
    for start in range(0, n_batch, chunk):
        nb = min(chunk, n_batch - start)
        ck = np.empty((1, nb * ho * wo, k), dtype=kdt)
        cv = np.empty((1, nb * ho * wo, k), dtype=np.float32)
        _im2col(xk[start:start + nb], 1, kh, kw, sh, sw, ho, wo, ck)
        _im2col(x[start:start + nb], 1, kh, kw, sh, sw, ho, wo, cv)
        res = np.empty((nb * ho * wo, o), dtype=np.float64)
        served = np.zeros(nb * ho * wo, dtype=np.int64)
        _served_gemm(ck[0], cv[0], wk, wv, pairs, res, served)
        out[start:start + nb] = res.reshape(nb, ho, wo, o).transpose(0, 3, 1, 2)
        served_total += int(served.sum())
    return out, served_total
