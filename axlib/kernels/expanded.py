"""Expanded-table LUT convolution: one vector add per (output position, tap) instead of one gather per product.

For a convolution whose every product is a table lookup ``lut[x + a_offset, w + w_offset]`` (the
convention of :mod:`axlib.kernels.lut_gemm`), the table is expanded once per call, per weight:

    E[g, ch, k, v, j] = lut[v, w_idx[g, k, ch*W + j]]        (0 where ch*W + j >= O/groups)

— for every tap ``k = (c, p, q)`` and every activation index ``v`` the contiguous row of products over
a block of ``W`` output channels. An output position then needs, per tap, the activation index ``v``
read straight from the padded input (no im2col: the tap's address is the position's base plus a
precomputed tap offset) and one ``W``-wide vector add of ``E[g, ch, k, v, :]`` into an int32 register
accumulator. The accumulator is an LLVM vector kept in registers for a tile of taps (a numba
``@intrinsic``, :func:`_rowsum`; numba cannot express this loop otherwise: its loop vectoriser handles
a 16-wide row only in its scalar remainder, and it does not vectorise register accumulators), and is
added to the int64 output once per tile. Every partial sum is exact: tiles are at most
``(2^31 - 1) // max|lut|`` taps long, so no int32 accumulator overflows, and tiles add in int64.

Cache blocking: a tile's expanded rows (``taps · rows · W`` entries, uint16/int16 for every 8x8
multiplier) are kept within :data:`TILE_BYTES` (L2) and reused across a block of output positions,
as large a block as leaves every thread a task (each block streams all of ``E`` once); ``E`` as a
whole is built in tap chunks of at most :data:`BUDGET_BYTES`.

Expanded tables are kept for reuse (up to :data:`CACHE_BYTES`, least recently used first out), keyed
by the digests of the table and of the weight indices: evaluating a network over a test set expands
each layer's table once, while retraining (new weights every step) expands on every call.
:func:`clear_cache` empties it (benchmarks time both cases).

Bit-identical to :func:`axlib.kernels.reference.reference_conv2d` (tests/test_lut_gemm.py).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from axlib.config import NUMBA_PARALLEL_FLAGS

#: Output-channel block widths (int32 lanes of one register accumulator); 64 = four AVX-512 registers.
WIDTHS = (16, 32, 64)
#: Upper bound on the bytes of the expanded table built at once (larger layers go in tap chunks).
BUDGET_BYTES = 32 * 2**20
#: Upper bound on the bytes of the int64 accumulators of one chunk of images (larger batches go in chunks).
RESULT_BUDGET_BYTES = 64 * 2**20
#: Target bytes of the expanded rows of one tap tile (kept in L2 while a block of positions uses it;
#: 512 KiB was best or within 10 % of best on every bench01 shape among 256 KiB-2 MiB, 1 MiB L2).
TILE_BYTES = 512 * 2**10

#: Bytes of expanded tables kept for reuse across calls (a whole ResNet-20 needs about 150 MB).
CACHE_BYTES = 256 * 2**20

_INT32_MAX = np.iinfo(np.int32).max
_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_STATS = {"hits": 0, "misses": 0}


def clear_cache() -> None:
    """Forget every kept expanded table (and the hit/miss counts)."""
    with _CACHE_LOCK:
        _CACHE.clear()
        _CACHE_STATS.update(hits=0, misses=0)


def cache_info() -> dict:
    """``{"entries", "bytes", "hits", "misses"}`` of the expanded-table cache."""
    with _CACHE_LOCK:
        return {"entries": len(_CACHE), "bytes": sum(e.nbytes for e in _CACHE.values()), **_CACHE_STATS}


def _digest(a: np.ndarray) -> str:
    return hashlib.blake2b(np.ascontiguousarray(a).tobytes() + str((a.dtype.str, a.shape)).encode(),
                           digest_size=16).hexdigest()


def _gather_source(table: np.ndarray) -> np.ndarray:
    """The table as int32, the row source :func:`_expand` gathers from (only needed when expanding)."""
    return np.ascontiguousarray(table, dtype=np.int32)


def _cached_expansion(w_idx: np.ndarray, table: np.ndarray, width: int) -> np.ndarray:
    """The whole expanded table of one layer, from the cache or built (and kept) now."""
    key = (_digest(table), _digest(w_idx), width)
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            _CACHE_STATS["hits"] += 1
            return hit
        _CACHE_STATS["misses"] += 1
    n_groups, k, og = w_idx.shape
    expanded = np.zeros((n_groups, -(-og // width), k, table.shape[0], width), dtype=table.dtype)
    _expand(w_idx, _gather_source(table), width, expanded)
    if expanded.nbytes <= CACHE_BYTES:
        with _CACHE_LOCK:
            _CACHE[key] = expanded
            while sum(e.nbytes for e in _CACHE.values()) > CACHE_BYTES:
                _CACHE.popitem(last=False)
    return expanded


@intrinsic
def _rowsum(typingctx, x_t, base_t, offs_t, e_t, out_t, width_t):
    """``out[0:W] += sum_k e[k, x[base + offs[k]], 0:W]`` with a ``<W x i32>`` register accumulator.

    ``x``: 1-D table indices (uint8/uint16) of the padded input; ``base``: the output position's flat
    offset into ``x``; ``offs``: 1-D int64 tap offsets (one tile); ``e``: C-contiguous (taps, rows, W)
    expanded rows (uint16/int16/int32; widened to int32); ``out``: 1-D contiguous int64 row of ``W``;
    ``width``: the literal ``W``. The caller guarantees that no int32 partial sum overflows.
    """
    if not isinstance(width_t, types.IntegerLiteral):
        return None
    width = width_t.literal_value
    sig = types.void(x_t, base_t, offs_t, e_t, out_t, width_t)

    def codegen(context, builder, signature, args):
        x, base, offs, e, out, _ = args
        xa = context.make_array(x_t)(context, builder, x)
        fa = context.make_array(offs_t)(context, builder, offs)
        ea = context.make_array(e_t)(context, builder, e)
        oa = context.make_array(out_t)(context, builder, out)
        i64, i32 = ir.IntType(64), ir.IntType(32)
        entry = context.get_data_type(e_t.dtype)
        v32, ventry, v64 = ir.VectorType(i32, width), ir.VectorType(entry, width), ir.VectorType(i64, width)
        n_taps = builder.extract_value(fa.shape, 0)
        tap_stride = builder.mul(builder.extract_value(ea.shape, 1), ir.Constant(i64, width))
        xbase = builder.gep(xa.data, [context.cast(builder, base, base_t, types.int64)])
        acc = cgutils.alloca_once(builder, v32)
        builder.store(ir.Constant(v32, None), acc)
        with cgutils.for_range(builder, n_taps) as loop:
            k = loop.index
            v = builder.zext(builder.load(builder.gep(xbase, [builder.load(builder.gep(fa.data, [k]))])), i64)
            row = builder.add(builder.mul(k, tap_stride), builder.mul(v, ir.Constant(i64, width)))
            ptr = builder.bitcast(builder.gep(ea.data, [row]), ventry.as_pointer())
            vals = builder.load(ptr, align=e_t.dtype.bitwidth // 8)
            if entry.width < 32:
                vals = builder.sext(vals, v32) if e_t.dtype.signed else builder.zext(vals, v32)
            builder.store(builder.add(builder.load(acc), vals), acc)
        optr = builder.bitcast(oa.data, v64.as_pointer())
        builder.store(builder.add(builder.load(optr, align=8), builder.sext(builder.load(acc), v64)), optr, align=8)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(**NUMBA_PARALLEL_FLAGS)
def _expand(w_idx, lut, width, expanded):  # pragma: no cover - compiled
    """expanded[g, ch, k, v, j] = lut[v, w_idx[g, k, ch*width + j]] (0 beyond O/g); w_idx (G, K, O/g),
    lut (rows, B) int32 (gathers from int32 rows ran 25 % faster than from uint16 ones), expanded
    (G, n_blocks, K, rows, width), zero-initialised by the caller."""
    n_groups, k_count, og = w_idx.shape
    n_blocks = expanded.shape[1]
    rows = lut.shape[0]
    for t in numba.prange(n_groups * n_blocks * k_count):
        g = t // (n_blocks * k_count)
        rem = t - g * n_blocks * k_count
        ch = rem // k_count
        k = rem - ch * k_count
        j1 = min(width, og - ch * width)
        cols = np.empty(j1, dtype=np.int64)
        for j in range(j1):
            cols[j] = w_idx[g, k, ch * width + j]
        for v in range(rows):
            src = lut[v]
            dst = expanded[g, ch, k, v]
            for j in range(j1):
                dst[j] = src[cols[j]]


@numba.njit(**NUMBA_PARALLEL_FLAGS)
def _conv(x_flat, img_stride, row_stride, ho, wo, sh, sw, offs, expanded, width, tile, block, out):  # pragma: no cover
    """out[g, m, ch*W:(ch+1)*W] += sum_k expanded[g, ch, k, x[base(m) + offs[g, k]]] for output positions
    ``m = (n*ho + i)*wo + j`` with ``base(m) = n*img_stride + i*sh*row_stride + j*sw``; out int64
    (G, N*ho*wo, n_blocks*W). Tasks: (group, channel block, block of positions); taps in tiles."""
    n_groups, n_blocks, k_count = expanded.shape[0], expanded.shape[1], expanded.shape[2]
    m_count = out.shape[1]
    plane = ho * wo
    m_blocks = (m_count + block - 1) // block
    for t in numba.prange(n_groups * n_blocks * m_blocks):
        g = t // (n_blocks * m_blocks)
        rem = t - g * n_blocks * m_blocks
        ch = rem // m_blocks
        m0 = (rem - ch * m_blocks) * block
        m1 = min(m_count, m0 + block)
        for k0 in range(0, k_count, tile):
            k1 = min(k_count, k0 + tile)
            rows = expanded[g, ch, k0:k1]
            taps = offs[g, k0:k1]
            for m in range(m0, m1):
                n = m // plane
                r = m - n * plane
                i = r // wo
                base = n * img_stride + i * sh * row_stride + (r - i * wo) * sw
                dst = out[g, m, ch * width:(ch + 1) * width]
                if width == 16:
                    _rowsum(x_flat, base, taps, rows, dst, 16)
                elif width == 32:
                    _rowsum(x_flat, base, taps, rows, dst, 32)
                else:
                    _rowsum(x_flat, base, taps, rows, dst, 64)


def block_width(out_per_group: int) -> int:
    """The width in :data:`WIDTHS` that pads ``out_per_group`` output channels least (ties: the wider)."""
    return min(WIDTHS, key=lambda w: (-(-out_per_group // w) * w, -w))


def narrow_table(table: np.ndarray) -> np.ndarray | None:
    """The table in the narrowest of uint16 / int16 / int32 holding every entry (None: it needs int64)."""
    lo, hi = int(table.min()), int(table.max())
    for dtype in (np.uint16, np.int16, np.int32):
        info = np.iinfo(dtype)
        if info.min <= lo and hi <= info.max:
            return np.ascontiguousarray(table, dtype=dtype)
    return None


def expanded_conv(x_pad: np.ndarray, w_idx: np.ndarray, table: np.ndarray, kh: int, kw: int, sh: int, sw: int,
                  ho: int, wo: int, out: np.ndarray | None = None) -> np.ndarray:
    """Exact LUT convolution of padded table indices with the expanded-table kernel.

    Args:
        x_pad: C-contiguous table indices (uint8/uint16) of the zero-padded input, shape (N, C, Hp, Wp).
        w_idx: weight table indices, shape (G, K, O/g), K ordered (c, p, q).
        table: product table narrowed by :func:`narrow_table` (rows <= 65536).
        kh, kw, sh, sw, ho, wo: kernel size, stride and output size.
        out: optional C-contiguous int64 (N, O, Ho, Wo) array to write the result into.

    Returns:
        int64 array (N, O, Ho, Wo) (``out`` when given). Images go in chunks whose int64 accumulators
        stay within :data:`RESULT_BUDGET_BYTES`.
    """
    n_batch, c, hp, wp = x_pad.shape
    n_groups, k, og = w_idx.shape
    cg = c // n_groups
    width = block_width(og)
    n_blocks = -(-og // width)
    rows = table.shape[0]
    row_bytes = rows * width * table.dtype.itemsize                      # one tap of one channel block
    peak = max(abs(int(table.min())), abs(int(table.max())), 1)
    tile = max(1, min(TILE_BYTES // row_bytes, _INT32_MAX // peak))
    chunk = max(1, BUDGET_BYTES // (n_groups * n_blocks * row_bytes))
    # tap offsets relative to a position's base, per group: channel plane, kernel row, kernel column
    cc, pp, qq = np.meshgrid(np.arange(cg), np.arange(kh), np.arange(kw), indexing="ij")
    tap = (cc * hp * wp + pp * wp + qq).reshape(-1)
    offs = np.ascontiguousarray(np.arange(n_groups)[:, None] * cg * hp * wp + tap[None, :], dtype=np.int64)
    if out is None:
        out = np.empty((n_batch, n_groups * og, ho, wo), dtype=np.int64)
    whole = _cached_expansion(np.ascontiguousarray(w_idx), table, width) if k <= chunk else None
    source = None if whole is not None else _gather_source(table)
    images = max(1, RESULT_BUDGET_BYTES // max(1, n_groups * ho * wo * n_blocks * width * 8))
    for b0 in range(0, n_batch, images):
        b1 = min(n_batch, b0 + images)
        m_count = (b1 - b0) * ho * wo
        # as few position blocks as keep every thread busy: each block streams every tile of E once
        # (measured: 1024-position blocks on ResNet-20 layer3 ran at 0.4x the speed of one block per thread)
        block = -(-m_count // max(1, -(-numba.get_num_threads() // (n_groups * n_blocks))))
        res = np.zeros((n_groups, m_count, n_blocks * width), dtype=np.int64)
        x_flat = x_pad[b0:b1].reshape(-1)
        for k0 in range(0, k, chunk):
            k1 = min(k, k0 + chunk)
            if whole is not None:
                expanded = whole
            else:
                expanded = np.zeros((n_groups, n_blocks, k1 - k0, rows, width), dtype=table.dtype)
                _expand(np.ascontiguousarray(w_idx[:, k0:k1]), source, width, expanded)
            _conv(x_flat, c * hp * wp, wp, ho, wo, sh, sw, np.ascontiguousarray(offs[:, k0:k1]), expanded, width,
                  tile, block, res)
        # (G, nb*Ho*Wo, O/g) -> (nb, G, O/g, Ho, Wo), written into out without an intermediate copy
        out[b0:b1].reshape(b1 - b0, n_groups, og, ho, wo)[:] = (
            res[:, :, :og].reshape(n_groups, b1 - b0, ho, wo, og).transpose(1, 0, 4, 2, 3))
    return out
