"""SnaPEA early termination, 32 windows at a time in vector registers (akhlaghi2020 ch.3, Eq. (3.1)).

The computation of :func:`axlib.kernels.early_term._early_term` (same products, same order of
additions, same checks), organised for SIMD: the windows of one (image, kernel) are taken in
chunks of 8 consecutive windows of an output row, and 4 chunks (32 windows) advance together
through the kernel's weights in execution order inside one LLVM loop (a numba ``@intrinsic``,
:func:`_block`): per weight, each chunk loads its 8 input pixels (every ``sw``-th of a contiguous
run), multiplies by the weight and adds (``fmul`` then ``fadd``, no fusing: bit-identical to the
scalar loop), with the 32 float64 accumulators, the "stopped" lanes and each lane's MAC count held
in registers. The predictive check runs after step ``N_o``, the sign check after every step of the
negative tail, each as a first-crossing record per lane; the loop ends as soon as every lane of the
block has stopped (lanes beyond the row's last window start stopped). The input is padded on the
right so that the last chunk of a row reads inside the array.

Strides 1 and 2 are served (every conv of the ResNets in this project); other strides fall back to
the windows-innermost numba loop.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from axlib.config import NUMBA_PARALLEL_FLAGS

#: Windows per chunk (one AVX-512 register of float64) and chunks per block.
CHUNK, CHUNKS = 8, 4
LANES = CHUNK * CHUNKS
STRIDES = (1, 2)


@intrinsic
def _block(typingctx, x_t, bases_t, taps_t, wts_t, state_t, done_t, params_t, stride_t):
    """Advance one block of 32 windows through a kernel's weights, with both SnaPEA checks.

    ``x``: flat float64 padded input; ``bases``: (4,) int64 flat offsets of each chunk's first window
    (its top-left input pixel); ``taps``: (K,) int64 flat tap offsets in execution order; ``wts``: (K,)
    float64 weights in execution order; ``state``: (2, 32) float64, row 0 the initial accumulators (in)
    and final accumulators (out), row 1 1.0 for lanes that start stopped (in) and stopped lanes (out);
    ``done``: (32,) int32 MACs per lane (out, Eq. (3.1)); ``params``: (4,) float64 = (N_o, neg_start,
    Th_o, K); ``stride``: the literal horizontal stride (1 or 2).
    """
    if not isinstance(stride_t, types.IntegerLiteral) or stride_t.literal_value not in STRIDES:
        return None
    sw = stride_t.literal_value
    sig = types.void(x_t, bases_t, taps_t, wts_t, state_t, done_t, params_t, stride_t)

    def codegen(context, builder, signature, args):
        x, bases, taps, wts, state, done, params, _ = args
        xa, ba, ta, wa, sa, da, pa = (context.make_array(t)(context, builder, v) for t, v in
                                      zip(signature.args[:7], (x, bases, taps, wts, state, done, params)))
        f64, i64, i32, i1 = ir.DoubleType(), ir.IntType(64), ir.IntType(32), ir.IntType(1)
        vd, vi, vb = ir.VectorType(f64, LANES), ir.VectorType(i32, LANES), ir.VectorType(i1, LANES)
        vchunk = ir.VectorType(f64, CHUNK * sw)

        def splat(value, vty):
            undef = ir.Constant(vty, ir.Undefined)
            first = builder.insert_element(undef, value, ir.Constant(i32, 0))
            return builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(i32, vty.count), [0] * vty.count))

        def param(idx):
            return builder.load(builder.gep(pa.data, [ir.Constant(i64, idx)]))

        n_spec = builder.fptosi(param(0), i64)
        neg0 = builder.fptosi(param(1), i64)
        thr = splat(param(2), vd)
        k_count = builder.fptosi(param(3), i64)
        acc_p = cgutils.alloca_once(builder, vd)
        stop_p = cgutils.alloca_once(builder, vb)
        done_p = cgutils.alloca_once(builder, vi)
        acc_in = builder.load(builder.bitcast(sa.data, vd.as_pointer()), align=8)
        stop_in = builder.load(builder.bitcast(builder.gep(sa.data, [ir.Constant(i64, LANES)]), vd.as_pointer()), align=8)
        builder.store(acc_in, acc_p)
        builder.store(builder.fcmp_ordered("!=", stop_in, ir.Constant(vd, 0.0)), stop_p)
        builder.store(splat(builder.trunc(k_count, i32), vi), done_p)
        chunk_bases = [builder.gep(xa.data, [builder.load(builder.gep(ba.data, [ir.Constant(i64, c)]))])
                       for c in range(CHUNKS)]
        pick = ir.Constant(ir.VectorType(i32, CHUNK), [sw * j for j in range(CHUNK)])
        concat = [ir.Constant(ir.VectorType(i32, 2 * CHUNK), list(range(2 * CHUNK))),
                  ir.Constant(ir.VectorType(i32, LANES), list(range(LANES)))]

        def step(s):
            """acc += w[s] * x[block windows, tap s] (one fmul and one fadd per lane)."""
            tap = builder.load(builder.gep(ta.data, [s]))
            parts = []
            for c in range(CHUNKS):
                ptr = builder.bitcast(builder.gep(chunk_bases[c], [tap]), vchunk.as_pointer())
                v = builder.load(ptr, align=8)
                if sw != 1:
                    v = builder.shuffle_vector(v, v, pick)
                parts.append(v)
            lo = builder.shuffle_vector(parts[0], parts[1], concat[0])
            hi = builder.shuffle_vector(parts[2], parts[3], concat[0])
            xs = builder.shuffle_vector(lo, hi, concat[1])
            w = splat(builder.load(builder.gep(wa.data, [s])), vd)
            acc = builder.fadd(builder.load(acc_p), builder.fmul(w, xs))
            builder.store(acc, acc_p)
            return acc

        def check(acc, bound, count):
            """Lanes still running whose accumulator is <= bound stop now, with ``count`` MACs."""
            stop = builder.load(stop_p)
            hit = builder.and_(builder.fcmp_ordered("<=", acc, bound), builder.not_(stop))
            builder.store(builder.select(hit, splat(builder.trunc(count, i32), vi), builder.load(done_p)), done_p)
            stop = builder.or_(stop, hit)
            builder.store(stop, stop_p)
            return builder.icmp_signed("==", builder.bitcast(stop, ir.IntType(LANES)), ir.Constant(ir.IntType(LANES), -1))

        one = ir.Constant(i64, 1)
        spec_end = builder.select(builder.icmp_signed("<", n_spec, neg0), n_spec, neg0)
        # phase 1: the speculation weights, then the predictive check
        with cgutils.for_range(builder, spec_end) as loop:
            step(loop.index)
        with builder.if_then(builder.icmp_signed(">", n_spec, ir.Constant(i64, 0))):
            check(builder.load(acc_p), thr, n_spec)
        # phase 2: the remaining non-negative weights (no check can fire)
        with cgutils.for_range(builder, builder.sub(neg0, spec_end)) as loop:
            step(builder.add(spec_end, loop.index))
        # phase 3: the negative tail, a sign check after every step, leaving once every lane stopped
        stopped_all = builder.icmp_signed("==", builder.bitcast(builder.load(stop_p), ir.IntType(LANES)),
                                          ir.Constant(ir.IntType(LANES), -1))
        s_p = cgutils.alloca_once_value(builder, neg0)
        head = builder.append_basic_block("neg.head")
        body = builder.append_basic_block("neg.body")
        end = builder.append_basic_block("neg.end")
        builder.cbranch(stopped_all, end, head)
        builder.position_at_end(head)
        s = builder.load(s_p)
        builder.cbranch(builder.icmp_signed("<", s, k_count), body, end)
        builder.position_at_end(body)
        acc = step(s)
        nxt = builder.add(s, one)
        builder.store(nxt, s_p)
        all_stopped = check(acc, ir.Constant(vd, 0.0), nxt)
        builder.cbranch(all_stopped, end, head)
        builder.position_at_end(end)
        builder.store(builder.load(acc_p), builder.bitcast(sa.data, vd.as_pointer()), align=8)
        stop_f = builder.uitofp(builder.load(stop_p), vd)
        builder.store(stop_f, builder.bitcast(builder.gep(sa.data, [ir.Constant(i64, LANES)]), vd.as_pointer()), align=8)
        builder.store(builder.load(done_p), builder.bitcast(da.data, vi.as_pointer()), align=4)
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(**NUMBA_PARALLEL_FLAGS)
def _early_term_blocks(xe, taps, wr, n_spec, neg_start, th, base, sh, sw, out, ops):  # pragma: no cover - compiled
    """xe (N, C, Hp, We) padded input (We >= (Wo + CHUNK) * sw + kw); taps (O, K) flat tap offsets within
    one image; wr (O, K) weights in execution order; base (N, O, Ho, Wo) initial accumulator; out/ops
    (N, O, Ho, Wo)."""
    n_batch, o_count, ho, wo = out.shape
    k_count = wr.shape[1]
    c_count, hp, we = xe.shape[1], xe.shape[2], xe.shape[3]
    x_flat = xe.reshape(-1)
    chunks_per_row = (wo + CHUNK - 1) // CHUNK
    n_chunks = ho * chunks_per_row
    for t in numba.prange(n_batch * o_count):
        n = t // o_count
        o = t - n * o_count
        params = np.array([float(n_spec[o]), float(neg_start[o]), th[o], float(k_count)])
        bases = np.empty(CHUNKS, dtype=np.int64)
        rows = np.empty(CHUNKS, dtype=np.int64)
        cols = np.empty(CHUNKS, dtype=np.int64)
        state = np.empty((2, LANES), dtype=np.float64)
        done = np.empty(LANES, dtype=np.int32)
        img = n * c_count * hp * we
        tp = taps[o]
        wo_ = wr[o]
        for b0 in range(0, n_chunks, CHUNKS):
            for c in range(CHUNKS):
                ch = min(b0 + c, n_chunks - 1)           # a missing chunk repeats the last one, stopped
                i = ch // chunks_per_row
                j0 = (ch - i * chunks_per_row) * CHUNK
                rows[c] = i
                cols[c] = j0
                bases[c] = img + i * sh * we + j0 * sw
                for lane in range(CHUNK):
                    j = j0 + lane
                    real = b0 + c < n_chunks and j < wo
                    state[0, c * CHUNK + lane] = base[n, o, i, j] if real else 0.0
                    state[1, c * CHUNK + lane] = 0.0 if real else 1.0
            if sw == 1:
                _block(x_flat, bases, tp, wo_, state, done, params, 1)
            else:
                _block(x_flat, bases, tp, wo_, state, done, params, 2)
            for c in range(CHUNKS):
                if b0 + c >= n_chunks:
                    break
                i = rows[c]
                for lane in range(CHUNK):
                    j = cols[c] + lane
                    if j < wo:
                        a = state[0, c * CHUNK + lane]
                        # a lane's final state: stopped (output 0, its recorded count) or all K MACs done
                        stopped = state[1, c * CHUNK + lane] != 0.0
                        out[n, o, i, j] = a if (not stopped and a > 0.0) else 0.0
                        ops[n, o, i, j] = done[c * CHUNK + lane]


def early_term_blocks(x_pad: np.ndarray, order: np.ndarray, wr: np.ndarray, n_spec: np.ndarray,
                      neg_start: np.ndarray, th: np.ndarray, base: np.ndarray, kh: int, kw: int, sh: int, sw: int,
                      out: np.ndarray, ops: np.ndarray) -> None:
    """Run the block kernel: ``x_pad`` (N, C, Hp, Wp) zero-padded float64 input, ``order`` (O, K) flat weight
    indices in execution order, ``wr`` the weights in that order; writes ``out``/``ops`` (N, O, Ho, Wo)."""
    n_batch, c, hp, wp = x_pad.shape
    wo = out.shape[3]
    we = max(wp, (wo + CHUNK) * sw + kw)
    xe = np.zeros((n_batch, c, hp, we), dtype=np.float64)
    xe[..., :wp] = x_pad
    cc, rem = np.divmod(order, kh * kw)
    pp, qq = np.divmod(rem, kw)
    taps = np.ascontiguousarray(cc * hp * we + pp * we + qq, dtype=np.int64)
    _early_term_blocks(xe, taps, np.ascontiguousarray(wr), n_spec, neg_start, th, base, sh, sw, out, ops)
