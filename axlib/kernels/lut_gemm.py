"""Fast, exact LUT GEMM and convolution kernels (numba) for approximate-multiplier emulation.

Convention (identical to :mod:`axlib.kernels.reference`, which these kernels are tested against
bit for bit): the product of activation ``x`` and weight ``y`` is ``lut[x + a_offset, y + w_offset]``,
and products are summed exactly in int64. Unsigned 8-bit tables: offsets 0, operands 0..255.
Signed 8-bit tables stored as ``T[x + 128, y + 128] = mul(x, y)``: offsets 128, operands -128..127.
Operands and results are integer codes; quantisation scales are the caller's business.

Layout: the operands are turned into table indices once (uint8 for tables with <= 256 rows/columns,
uint16 up to 65536). Convolutions with at least :data:`EXPANDED_MIN_OUT` output channels per group and
tables of at most :data:`EXPANDED_MAX_ROWS` rows with entries that fit int32 (every CNN layer with an
8x8 multiplier) go to the expanded-table kernel of :mod:`axlib.kernels.expanded` (one vector add per
output position and tap, no im2col). GEMMs with at least that many columns go there too, as 1x1 convolutions.
Everything else (narrow GEMMs, depthwise and few-channel convolutions,
int64-sized entries) uses the row-gather kernel: the table is made C-contiguous int32 (int64 only if
its entries need it), and for every output row ``m`` (in parallel) and every ``k`` the kernel fetches
``row = lut[a_idx[m, k]]`` and accumulates ``acc[n] += row[w_idx[k, n]]`` over contiguous ``n``; four
rows ``m`` share each weight-index load and accumulate in int32 whenever ``K · max|lut| < 2^31``
(otherwise int64). Convolutions on that path are lowered with an im2col into index matrices (in
batch chunks of bounded memory) and use the same grouped GEMM.
"""

from __future__ import annotations

import numba
import numpy as np

from axlib import validate
from axlib.config import NUMBA_PARALLEL_FLAGS
from axlib.kernels import checks, expanded

#: Upper bound on the bytes of one im2col index matrix; larger batches are processed in chunks.
IM2COL_BUDGET_BYTES = 64 * 2**20
#: Convolutions with at least this many output channels per group use the expanded-table kernel
#: (below it most of its 16-lane vector adds would be padding).
EXPANDED_MIN_OUT = 8
#: ... when the table has at most this many rows (the expanded table holds one row per table row and tap).
EXPANDED_MAX_ROWS = 1024

_INT32 = np.iinfo(np.int32)


# --------------------------------------------------------------------------- numba kernels


@numba.njit(**NUMBA_PARALLEL_FLAGS)
def _grouped_lut_gemm(a_idx, w_idx, lut, out):  # pragma: no cover - compiled
    """out[g, m, n] += sum_k lut[a_idx[g, m, k], w_idx[g, k, n]]; a_idx (G, M, K), w_idx (G, K, N), out (G, M, N) int64."""
    n_groups, m_count, k_count = a_idx.shape
    n_count = w_idx.shape[2]
    for t in numba.prange(n_groups * m_count):
        g = t // m_count
        m = t - g * m_count
        acc = out[g, m]
        for k in range(k_count):
            row = lut[a_idx[g, m, k]]
            wk = w_idx[g, k]
            for n in range(n_count):
                acc[n] += row[wk[n]]


@numba.njit(**NUMBA_PARALLEL_FLAGS)
def _grouped_lut_gemm_i32x4(a_idx, w_idx, lut, out):  # pragma: no cover - compiled
    """As :func:`_grouped_lut_gemm`, four output rows per task sharing each weight-index load, with
    int32 accumulators (the caller guarantees ``K · max|lut| < 2^31``, so no partial sum overflows)."""
    n_groups, m_count, k_count = a_idx.shape
    n_count = w_idx.shape[2]
    blocks = (m_count + 3) // 4
    for t in numba.prange(n_groups * blocks):
        g = t // blocks
        mb = 4 * (t - g * blocks)
        m1 = min(mb + 1, m_count - 1)
        m2 = min(mb + 2, m_count - 1)
        m3 = min(mb + 3, m_count - 1)
        acc = np.zeros((4, n_count), dtype=np.int32)
        for k in range(k_count):
            r0 = lut[a_idx[g, mb, k]]
            r1 = lut[a_idx[g, m1, k]]
            r2 = lut[a_idx[g, m2, k]]
            r3 = lut[a_idx[g, m3, k]]
            wk = w_idx[g, k]
            for n in range(n_count):
                j = wk[n]
                acc[0, n] += r0[j]
                acc[1, n] += r1[j]
                acc[2, n] += r2[j]
                acc[3, n] += r3[j]
        for i in range(4):
            m = mb + i
            if m < m_count:
                for n in range(n_count):
                    out[g, m, n] += acc[i, n]


@numba.njit(**NUMBA_PARALLEL_FLAGS)
def _im2col(xp, groups, kh, kw, sh, sw, ho, wo, cols):  # pragma: no cover - compiled
    """cols[g, (n*ho + i)*wo + j, (c*kh + p)*kw + q] = xp[n, g*C/groups + c, i*sh + p, j*sw + q]; xp is the padded input."""
    n_batch = xp.shape[0]
    cg = xp.shape[1] // groups
    plane = ho * wo
    for r in numba.prange(n_batch * plane):
        n = r // plane
        rem = r - n * plane
        i = rem // wo
        j = rem - i * wo
        for g in range(groups):
            for c in range(cg):
                for p in range(kh):
                    src = xp[n, g * cg + c, i * sh + p]
                    base = (c * kh + p) * kw
                    for q in range(kw):
                        cols[g, r, base + q] = src[j * sw + q]


# --------------------------------------------------------------------------- helpers


def _index_dtype(size: int):
    if size <= 2**8:
        return np.uint8
    if size <= 2**16:
        return np.uint16
    return np.int64


def _to_index(x: np.ndarray, offset: int, size: int) -> np.ndarray:
    """C-contiguous table indices ``x + offset`` (range already checked) in the smallest unsigned dtype."""
    dtype = _index_dtype(size)
    if offset == 0:
        return np.ascontiguousarray(x, dtype=dtype)
    return np.ascontiguousarray(x.astype(np.int64) + offset, dtype=dtype)


def _gemm(a_idx: np.ndarray, w_idx: np.ndarray, table: np.ndarray, out: np.ndarray) -> None:
    """Dispatch to the int32-accumulator kernel when no partial sum can leave int32, else the int64 one."""
    bound = max(abs(int(table.min())), abs(int(table.max()))) * a_idx.shape[2]
    if table.dtype == np.int32 and bound < _INT32.max:
        _grouped_lut_gemm_i32x4(a_idx, w_idx, table, out)
    else:
        _grouped_lut_gemm(a_idx, w_idx, table, out)


KERNELS = ("auto", "expanded", "gather")


def _expandable(lut: np.ndarray, out_per_group: int, kernel: str) -> np.ndarray | None:
    """The narrowed table when the expanded-table kernel serves this layer, else None (row gather).

    ``kernel``: ``"auto"`` (expanded when the layer has :data:`EXPANDED_MIN_OUT` or more outputs per group
    and the table qualifies), ``"expanded"`` (error if the table does not qualify) or ``"gather"``."""
    if kernel == "gather":
        return None
    narrow = expanded.narrow_table(lut) if lut.shape[0] <= EXPANDED_MAX_ROWS else None
    if kernel == "expanded":
        if narrow is None:
            raise ValueError(f"the expanded-table kernel needs a table of at most {EXPANDED_MAX_ROWS} rows with "
                             f"int32 entries; got shape {lut.shape}, entries {int(lut.min())}..{int(lut.max())}")
        return narrow
    return narrow if out_per_group >= EXPANDED_MIN_OUT else None


def _table(lut: np.ndarray) -> np.ndarray:
    """C-contiguous int32 copy/view of the table, or int64 when its entries do not fit int32."""
    if lut.dtype.itemsize <= 2 or (int(lut.min()) >= _INT32.min and int(lut.max()) <= _INT32.max):
        return np.ascontiguousarray(lut, dtype=np.int32)
    return np.ascontiguousarray(lut, dtype=np.int64)


# --------------------------------------------------------------------------- public API


def lut_gemm(a, w, lut, a_offset: int = 0, w_offset: int = 0, kernel: str = "auto") -> np.ndarray:
    """LUT GEMM: ``out[m, n] = sum_k lut[a[m, k] + a_offset, w[k, n] + w_offset]``, exact in int64.

    Bit-identical to :func:`axlib.kernels.reference.reference_gemm`; served by the expanded-table kernel
    (as a 1x1 convolution) when N >= :data:`EXPANDED_MIN_OUT`, else by the row-gather kernel.

    Args:
        a: integer activations (codes), shape (M, K).
        w: integer weights (codes), shape (K, N).
        lut: integer product table, shape (A, B): ``lut[i, j]`` is the (approximate) product of the
            operands with indices ``i`` and ``j``; e.g. (256, 256) for 8-bit multipliers.
        a_offset, w_offset: added to the operands to form table indices (128 for signed 8-bit tables
            stored as ``T[x + 128, y + 128]``, 0 for unsigned tables).
        kernel: ``"auto"`` (default), ``"expanded"`` or ``"gather"``: which exact kernel serves the call
            (module docstring); all give identical results, the choice is for benchmarks and tests.

    Returns:
        int64 array of shape (M, N) (integer codes, no scaling).

    Raises:
        ValueError: non-integer dtypes, wrong ranks, K mismatch, operands outside the table after the
            offset, or a table whose entries could overflow an int64 sum over K.
    """
    kernel = validate.choice("kernel", kernel, KERNELS)
    a, w, lut, a_offset, w_offset = checks.check_gemm(a, w, lut, a_offset, w_offset)
    out = np.zeros((1, a.shape[0], w.shape[1]), dtype=np.int64)
    if out.size == 0 or a.shape[1] == 0:
        return out[0]
    a_idx = _to_index(a, a_offset, lut.shape[0])
    w_idx = _to_index(w, w_offset, lut.shape[1])
    narrow = _expandable(lut, w.shape[1], kernel)
    if narrow is not None:  # a GEMM is a 1x1 convolution of M positions
        (m, k), n = a_idx.shape, w_idx.shape[1]
        expanded.expanded_conv(a_idx.reshape(m, k, 1, 1), w_idx[None], narrow, 1, 1, 1, 1, 1, 1,
                               out=out[0].reshape(m, n, 1, 1))
        return out[0]
    _gemm(a_idx[None], w_idx[None], _table(lut), out)
    return out[0]


def lut_conv2d(x, w, lut, stride=1, padding=0, groups: int = 1, a_offset: int = 0, w_offset: int = 0,
               kernel: str = "auto") -> np.ndarray:
    """LUT convolution (cross-correlation, as ``torch.nn.functional.conv2d``), every product a table lookup.

    Bit-identical to :func:`axlib.kernels.reference.reference_conv2d`: the expanded-table kernel for
    layers with :data:`EXPANDED_MIN_OUT` or more output channels per group, otherwise im2col into table
    indices and the grouped row-gather GEMM (module docstring). Zero padding inserts the integer
    operand 0, which goes through the table like any other activation (each padded tap contributes
    ``lut[0 + a_offset, w + w_offset]``, not necessarily 0 for an approximate multiplier).

    Args:
        x: integer activations (codes), shape (N, C, H, W).
        w: integer weights (codes), shape (O, C/groups, kh, kw).
        lut: integer product table, shape (A, B).
        stride, padding: int or (h, w) pair; stride >= 1, padding >= 0.
        groups: channel groups; must divide C and O (depthwise: groups == C == O).
        a_offset, w_offset, kernel: see :func:`lut_gemm`.

    Returns:
        int64 array of shape (N, O, Ho, Wo) with ``Ho = (H + 2*ph - kh) // sh + 1`` (likewise Wo).

    Raises:
        ValueError: as :func:`axlib.kernels.reference.reference_conv2d`.
    """
    kernel = validate.choice("kernel", kernel, KERNELS)
    x, w, lut, (sh, sw), (ph, pw), groups, a_offset, w_offset, (ho, wo) = checks.check_conv(
        x, w, lut, stride, padding, groups, a_offset, w_offset)
    n_batch, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    k = cg * kh * kw
    out = np.zeros((n_batch, o, ho, wo), dtype=np.int64)
    if out.size == 0 or k == 0:
        return out
    x_idx = _to_index(x, a_offset, lut.shape[0])
    if ph or pw:
        x_idx = np.pad(x_idx, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="constant", constant_values=a_offset)
    # (O, C/g, kh, kw) -> (G, K, O/g), K ordered (c, p, q) like the im2col columns
    w_idx = np.ascontiguousarray(_to_index(w, w_offset, lut.shape[1]).reshape(groups, og, k).transpose(0, 2, 1))
    narrow = _expandable(lut, og, kernel)
    if narrow is not None:
        expanded.expanded_conv(np.ascontiguousarray(x_idx), w_idx, narrow, kh, kw, sh, sw, ho, wo, out=out)
        return out
    table = _table(lut)
    row_bytes = groups * ho * wo * k * x_idx.dtype.itemsize
    chunk = max(1, IM2COL_BUDGET_BYTES // max(row_bytes, 1))
    for start in range(0, n_batch, chunk):
        xb = np.ascontiguousarray(x_idx[start:start + chunk])
        nb = xb.shape[0]
        cols = np.empty((groups, nb * ho * wo, k), dtype=x_idx.dtype)
        _im2col(xb, groups, kh, kw, sh, sw, ho, wo, cols)
        res = np.zeros((groups, nb * ho * wo, og), dtype=np.int64)
        _gemm(cols, w_idx, table, res)
        # (G, nb*Ho*Wo, O/g) -> (nb, G, O/g, Ho, Wo) -> (nb, O, Ho, Wo)
        out[start:start + nb] = res.reshape(groups, nb, ho, wo, og).transpose(1, 0, 4, 2, 3).reshape(nb, o, ho, wo)
    return out
