"""SnaPEA early-terminating convolution + ReLU (akhlaghi2020 ch.3: §3.3-3.5, Eq. (3.1)).

Each output channel (kernel) ``o`` has speculation parameters ``(Th_o, N_o)``; ``N_o = 0`` is the
exact mode. Its K = C·kh·kw weights are executed in a static order (:func:`reorder`):

1. the ``N_o`` speculation weights (§3.5.1): sort the kernel's weights in ascending order, split the
   sorted list into ``N_o`` contiguous groups (``numpy.array_split``) and take the weight of largest
   magnitude of each group (ties: the first in sorted order), in group order;
2. the remaining non-negative weights (original order);
3. the remaining negative weights, most negative first (the thesis leaves this order open; most
   negative first terminates soonest).

The accumulator starts at the bias (plus the residual where a residual add precedes the ReLU).
After the ``N_o``-th MAC, a partial sum ``≤ Th_o`` ends the window with output 0 (predictive
check). In phase 3, a partial sum ``≤ 0`` after any MAC ends it with output 0 (exact sign check:
with non-negative inputs the remaining products can only lower the sum, so ReLU would give 0).
Otherwise all K MACs run and the output is ``max(0, sum)``. The MAC count of each window is
Eq. (3.1): ``N_o`` / the position of the terminating negative weight / ``K``.

Requirements (validated): inputs non-negative (post-ReLU activations), batch norm already folded
into ``w`` and ``bias``, dilation 1, groups 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from axlib import validate
from axlib.config import NUMBA_PARALLEL_FLAGS
from axlib.kernels import checks, early_term_blocks


@dataclass(frozen=True)
class Reordering:
    """Static execution order of every kernel: ``order[o]`` (K flat weight indices into (C, kh, kw)),
    ``n_spec[o]`` speculation weights first, negative tail from ``neg_start[o]`` on."""

    order: np.ndarray       # (O, K) int64
    n_spec: np.ndarray      # (O,) int64
    neg_start: np.ndarray   # (O,) int64


def speculation_indices(w_flat: np.ndarray, n: int) -> np.ndarray:
    """§3.5.1: flat indices of the ``n`` speculation weights of one kernel (see module docstring)."""
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(w_flat, kind="stable")                      # ascending values
    picks = []
    for group in np.array_split(order, n):
        picks.append(group[np.argmax(np.abs(w_flat[group]))])
    return np.asarray(picks, dtype=np.int64)


def _n_spec(n, o_count: int, k: int) -> np.ndarray:
    """Speculation group counts as (O,) int64: integers (integral floats accepted, 2.7 is not truncated)
    in [0, K], a scalar or one per kernel."""
    arr = np.asarray(n)
    if arr.dtype.kind not in "iuf" or (arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr)))):
        bad = arr.tolist() if arr.size <= 8 else f"{arr.size} values"
        raise validate.ParameterError(f"parameter n (speculation groups) must be integers in [0, {k}], got {bad}")
    if arr.ndim and arr.shape != (o_count,):
        raise validate.ParameterError(f"parameter n (speculation groups) must be a scalar or have shape ({o_count},) "
                                      f"(one per kernel), got shape {arr.shape}")
    arr = np.broadcast_to(arr.astype(np.int64), (o_count,)).copy()
    if o_count and (arr.min() < 0 or arr.max() > k):
        bad = sorted(set(arr.tolist()))
        raise validate.ParameterError(f"parameter n (speculation groups) must lie in [0, {k}], got {bad}")
    return arr


def reorder(w: np.ndarray, n_spec) -> Reordering:
    """Execution order of each kernel of ``w`` (O, C, kh, kw) for speculation group counts ``n_spec``
    (int or (O,) ints, each in ``[0, K]``)."""
    w = checks.real_array("w", w, ndim=4)
    o_count = w.shape[0]
    flat = w.reshape(o_count, -1)
    k = flat.shape[1]
    n_spec = _n_spec(n_spec, o_count, k)
    order = np.empty((o_count, k), dtype=np.int64)
    neg_start = np.empty(o_count, dtype=np.int64)
    for o in range(o_count):
        spec = speculation_indices(flat[o], int(n_spec[o]))
        rest = np.setdiff1d(np.arange(k), spec)                     # sorted: original order
        pos = rest[flat[o, rest] >= 0]
        neg = rest[flat[o, rest] < 0]
        neg = neg[np.argsort(flat[o, neg], kind="stable")]           # most negative first
        order[o] = np.concatenate([spec, pos, neg])
        neg_start[o] = len(spec) + len(pos)
    return Reordering(order, n_spec, neg_start)


@numba.njit(**NUMBA_PARALLEL_FLAGS)
def _early_term(xp, wr, cc, pp, qq, n_spec, neg_start, th, base, sh, sw, out, ops):  # pragma: no cover - compiled
    """xp (N, C, Hp, Wp) padded input; wr/cc/pp/qq (O, K) reordered weights and their (c, p, q);
    base (N, O, Ho, Wo) initial accumulator (bias + residual); out/ops (N, O, Ho, Wo)."""
    n_batch, o_count, ho, wo = out.shape
    k_count = wr.shape[1]
    for t in numba.prange(n_batch * o_count):
        n = t // o_count
        o = t - n * o_count
        ns = n_spec[o]
        neg0 = neg_start[o]
        tho = th[o]
        for i in range(ho):
            for j in range(wo):
                acc = base[n, o, i, j]
                done = k_count
                value = 0.0
                terminated = False
                for s in range(k_count):
                    acc += wr[o, s] * xp[n, cc[o, s], i * sh + pp[o, s], j * sw + qq[o, s]]
                    if s + 1 == ns and acc <= tho:
                        done = s + 1
                        terminated = True
                        break
                    if s >= neg0 and acc <= 0.0:
                        done = s + 1
                        terminated = True
                        break
                if not terminated and acc > 0.0:
                    value = acc
                out[n, o, i, j] = value
                ops[n, o, i, j] = done


@numba.njit(**NUMBA_PARALLEL_FLAGS)
def _early_term_windows(xp, wr, cc, pp, qq, n_spec, neg_start, th, base, sh, sw, out, ops):  # pragma: no cover
    """The same computation as :func:`_early_term` with the windows innermost: for one (image, kernel)
    every window's accumulator advances by one weight at a time (a loop over contiguous input pixels
    that vectorises), and each check records the first step at which a still-running window
    terminates. Terminated windows keep accumulating (their output is 0 whatever follows) until
    every window of the tile has terminated. Each window adds the same products in the same order
    as in :func:`_early_term`, so outputs are bit-identical and the MAC counts equal."""
    n_batch, o_count, ho, wo = out.shape
    k_count = wr.shape[1]
    for t in numba.prange(n_batch * o_count):
        n = t // o_count
        o = t - n * o_count
        ns = n_spec[o]
        neg0 = neg_start[o]
        tho = th[o]
        acc = np.empty((ho, wo), dtype=np.float64)
        stopped = np.zeros((ho, wo), dtype=np.bool_)
        done = np.empty((ho, wo), dtype=np.int32)
        for i in range(ho):
            for j in range(wo):
                acc[i, j] = base[n, o, i, j]
                done[i, j] = k_count
        running = ho * wo
        for s in range(k_count):
            wv = wr[o, s]
            c = cc[o, s]
            q = qq[o, s]
            for i in range(ho):
                row = xp[n, c, i * sh + pp[o, s]]
                a = acc[i]
                for j in range(wo):
                    a[j] += wv * row[j * sw + q]
            if s + 1 == ns:
                for i in range(ho):
                    for j in range(wo):
                        if not stopped[i, j] and acc[i, j] <= tho:
                            stopped[i, j] = True
                            done[i, j] = s + 1
                            running -= 1
            if s >= neg0:
                for i in range(ho):
                    for j in range(wo):
                        if not stopped[i, j] and acc[i, j] <= 0.0:
                            stopped[i, j] = True
                            done[i, j] = s + 1
                            running -= 1
            if running == 0:
                break
        for i in range(ho):
            for j in range(wo):
                out[n, o, i, j] = acc[i, j] if (not stopped[i, j] and acc[i, j] > 0.0) else 0.0
                ops[n, o, i, j] = done[i, j]


def check_inputs(x, w, bias, stride, padding, th, n, residual, reordering: Reordering | None = None):
    """Validated SnaPEA inputs, shared by the kernel and its reference: ``(x, w, bias, (sh, sw), (ph, pw),
    (Ho, Wo), th, reordering)`` with finite float64 arrays (NaN/inf refused), ``x >= 0``, ``bias`` (O,) or None,
    ``residual`` (N, O, Ho, Wo) or None, ``th`` (O,), stride >= 1, padding >= 0, groups 1."""
    x = checks.real_array("x", x, ndim=4)
    w = checks.real_array("w", w, ndim=4)
    stride, padding, _, (ho, wo) = checks.conv_geometry(x.shape, w.shape, stride, padding)
    if x.size and x.min() < 0:
        raise ValueError(f"early termination needs non-negative inputs (post-ReLU activations); min input is {x.min()}")
    o_count, k = w.shape[0], w[0].size
    if bias is not None:
        bias = checks.real_array("bias", bias, shape=(o_count,))
    if residual is not None:
        residual = checks.real_array("residual", residual, shape=(x.shape[0], o_count, ho, wo))
    th = checks.real_array("th", th)
    if th.ndim and th.shape != (o_count,):
        raise ValueError(f"th must be a scalar or have shape ({o_count},) (one threshold per kernel), got shape {th.shape}")
    th = np.broadcast_to(th, (o_count,)).copy()
    if reordering is None:
        reordering = reorder(w, n)
    else:
        r = reordering
        if r.order.shape != (o_count, k) or r.n_spec.shape != (o_count,) or r.neg_start.shape != (o_count,):
            raise ValueError(f"reordering does not fit w {w.shape}: order {r.order.shape} (expected {(o_count, k)}), "
                             f"n_spec {r.n_spec.shape}, neg_start {r.neg_start.shape} (expected {(o_count,)})")
        if r.order.size and (r.order.min() < 0 or r.order.max() >= k):
            raise ValueError(f"reordering.order must hold flat weight indices in [0, {k}), got "
                             f"[{r.order.min()}, {r.order.max()}]")
        if not np.array_equal(r.n_spec, _n_spec(n, o_count, k)):
            raise ValueError(f"reordering was computed for n={r.n_spec.tolist()} but n={n!r}; pass the same n")
    return x, w, bias, stride, padding, (ho, wo), th, reordering


KERNELS = ("auto", "blocks", "windows", "window")


def early_term_conv2d(x, w, bias=None, stride=1, padding=0, th=0.0, n=0, residual=None,
                      reordering: Reordering | None = None, kernel: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """SnaPEA convolution followed by ReLU.

    Args:
        x: non-negative finite inputs (N, C, H, W); integer or float (computed in float64).
        w: finite weights (O, C, kh, kw), batch norm folded in; ``bias``: (O,) or None.
        stride, padding: int or (h, w) pair; stride >= 1, padding >= 0.
        th: finite threshold(s) ``Th`` (scalar or (O,)); ``n``: speculation group count(s) ``N`` (0 = exact),
            integers in [0, K].
        residual: (N, O, Ho, Wo) added to the accumulator's initial value, or None.
        reordering: a precomputed :func:`reorder` of ``w`` for ``n`` (skips recomputing it).
        kernel: ``"blocks"`` (32 windows in vector registers, :mod:`axlib.kernels.early_term_blocks`;
            horizontal strides 1 and 2), ``"windows"`` (:func:`_early_term_windows`, windows innermost),
            ``"window"`` (window at a time, :func:`_early_term`) or ``"auto"`` (default: blocks where the
            stride allows, else windows). All give identical outputs and counts.

    Returns:
        ``(out, ops)``: post-ReLU outputs (N, O, Ho, Wo) float64 and MACs per window (int32, Eq. 3.1).

    Raises:
        ValueError (ParameterError for ``n``) naming the argument, its value and what is allowed
        (:func:`check_inputs`).
    """
    kernel = validate.choice("kernel", kernel, KERNELS)
    x, w, bias, (sh, sw), (ph, pw), (ho, wo), th_arr, r = check_inputs(x, w, bias, stride, padding, th, n, residual,
                                                                        reordering)
    if kernel == "blocks" and sw not in early_term_blocks.STRIDES:
        raise ValueError(f"kernel='blocks' serves horizontal strides {early_term_blocks.STRIDES}, got stride {sw}")
    o_count, c, kh, kw = w.shape
    n_batch = x.shape[0]
    flat = w.reshape(o_count, -1)
    wr = np.take_along_axis(flat, r.order, axis=1)
    cc, rem = np.divmod(r.order, kh * kw)
    pp, qq = np.divmod(rem, kw)
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    base = np.zeros((n_batch, o_count, ho, wo), dtype=np.float64)
    if bias is not None:
        base += bias.reshape(1, -1, 1, 1)
    if residual is not None:
        base += residual
    out = np.empty((n_batch, o_count, ho, wo), dtype=np.float64)
    ops = np.empty((n_batch, o_count, ho, wo), dtype=np.int32)
    if kernel == "blocks" or (kernel == "auto" and sw in early_term_blocks.STRIDES):
        if out.size:
            early_term_blocks.early_term_blocks(xp, r.order, wr, r.n_spec, r.neg_start, th_arr, base, kh, kw, sh, sw,
                                                out, ops)
        return out, ops
    loop = _early_term_windows if kernel in ("auto", "windows") else _early_term
    loop(xp, np.ascontiguousarray(wr), np.ascontiguousarray(cc), np.ascontiguousarray(pp),
         np.ascontiguousarray(qq), r.n_spec, r.neg_start, th_arr, base, sh, sw, out, ops)
    return out, ops


def ops_eq31(products_in_order: np.ndarray, base: np.ndarray, n_spec: int, neg_start: int, th: float) -> np.ndarray:
    """Eq. (3.1) evaluated directly from the products of windows in execution order.

    ``products_in_order``: (W, K) products ``w·x`` of W windows of one kernel in its execution order;
    ``base``: (W,) initial accumulator. Returns the MAC count of each window (int)."""
    partial = base[:, None] + np.cumsum(products_in_order, axis=1)
    k = partial.shape[1]
    spec_hit = np.zeros(partial.shape[0], dtype=bool) if n_spec == 0 else partial[:, n_spec - 1] <= th
    neg = partial[:, neg_start:] <= 0
    first_neg = np.where(neg.any(axis=1), neg.argmax(axis=1) + neg_start + 1, k)
    return np.where(spec_hit, n_spec, first_neg)


def speculation_mask(w_shape: tuple, reordering: Reordering) -> np.ndarray:
    """0/1 mask of the speculation weights, shape ``w_shape`` (O, C, kh, kw)."""
    o_count = w_shape[0]
    mask = np.zeros((o_count, int(np.prod(w_shape[1:]))), dtype=np.float32)
    for o in range(o_count):
        mask[o, reordering.order[o, :reordering.n_spec[o]]] = 1.0
    return mask.reshape(w_shape)


def snapea_torch(x, w, bias=None, stride=1, padding=0, th=0.0, n=0, residual=None, reordering: Reordering | None = None):
    """Vectorised torch equivalent of :func:`early_term_conv2d`'s outputs (no op counts), for
    accuracy sweeps on CPU or CUDA: the speculation partial sum is a convolution with the masked
    weights; windows with ``N_o > 0`` and partial ``≤ Th_o`` output 0, all others ``ReLU(conv)``
    (the exact sign checks never change an output). ``x``, ``w``, ``bias``, ``residual`` are tensors."""
    import torch
    import torch.nn.functional as F

    r = reordering if reordering is not None else reorder(w.detach().cpu().numpy(), n)
    full = F.conv2d(x, w, bias, stride, padding)
    if residual is not None:
        full = full + residual
    out = torch.relu(full)
    if not r.n_spec.any():
        return out
    mask = torch.from_numpy(speculation_mask(tuple(w.shape), r)).to(w.device, w.dtype)
    partial = F.conv2d(x, w * mask, bias, stride, padding)
    if residual is not None:
        partial = partial + residual
    th_t = torch.as_tensor(np.broadcast_to(np.asarray(th, dtype=np.float64), (w.shape[0],)).copy(), device=x.device,
                           dtype=x.dtype).view(1, -1, 1, 1)
    active = torch.from_numpy(r.n_spec > 0).to(x.device).view(1, -1, 1, 1)
    return torch.where(active & (partial <= th_t), torch.zeros_like(out), out)
