"""Plain NumPy reference implementations of LUT-based (approximate-multiplier) GEMM and convolution.

Convention (shared with :mod:`axlib.kernels.lut_gemm`): the product of an activation ``x`` and a
weight ``y`` is ``lut[x + a_offset, y + w_offset]``; the products are summed exactly in int64.
Unsigned 8-bit tables are indexed directly (offsets 0, operands 0..255); signed 8-bit tables are
stored with offset indexing, ``T[x + 128, y + 128] = mul(x, y)`` for ``x, y`` in [-128, 127]
(offsets 128). All values are integer codes (no scales): the caller applies quantisation scales.

These functions are written for obvious correctness, not speed; they are the oracle the fast
numba kernels are tested against. The input checks below are shared with the fast kernels.
"""

from __future__ import annotations

import numpy as np

_INT64_MAX = int(np.iinfo(np.int64).max)


# --------------------------------------------------------------------------- input checks (shared)


def _int_array(name: str, x, ndim: int) -> np.ndarray:
    """``x`` as an integer ndarray with ``ndim`` dimensions, else ValueError."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} must have an integer dtype (integer codes), got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    return x


def _int_param(name: str, value, lo: int | None = None) -> int:
    """A Python int from an int / numpy integer (bools are refused), optionally >= ``lo``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return value


def _pair(name: str, value, lo: int) -> tuple[int, int]:
    """``int`` or ``(h, w)`` tuple -> ``(h, w)`` of ints >= ``lo``."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or an (h, w) pair, got {value!r}")
        return _int_param(f"{name}[0]", value[0], lo), _int_param(f"{name}[1]", value[1], lo)
    v = _int_param(name, value, lo)
    return v, v


def _check_lut(lut) -> np.ndarray:
    lut = _int_array("lut", lut, 2)
    if lut.shape[0] == 0 or lut.shape[1] == 0:
        raise ValueError(f"lut must be non-empty, got shape {lut.shape}")
    return lut


def _check_range(name: str, x: np.ndarray, offset: int, size: int, axis: str) -> None:
    """Every ``x + offset`` must be a valid index into a LUT axis of length ``size``."""
    if x.size == 0:
        return
    xmin, xmax = int(x.min()), int(x.max())
    if xmin + offset < 0 or xmax + offset >= size:
        raise ValueError(
            f"{name} values must lie in [{-offset}, {size - 1 - offset}] so that value + offset ({offset}) indexes the "
            f"LUT's {axis} axis (length {size}); got values in [{xmin}, {xmax}]"
        )


def _check_accumulation(lut: np.ndarray, k: int) -> None:
    """Refuse inputs whose int64 sum of ``k`` table entries could overflow (never the case for int32 tables
    with k < 2**32)."""
    bound = max(abs(int(lut.min())), abs(int(lut.max()))) * k
    if bound > _INT64_MAX:
        raise ValueError(f"the sum of {k} products of magnitude up to {bound // max(k, 1)} could overflow int64")


def _check_gemm(a, w, lut, a_offset, w_offset):
    """Validated ``(a, w, lut, a_offset, w_offset)`` for a LUT GEMM ``(M, K) x (K, N)``."""
    lut = _check_lut(lut)
    a = _int_array("a", a, 2)
    w = _int_array("w", w, 2)
    if a.shape[1] != w.shape[0]:
        raise ValueError(f"shape mismatch: a is {a.shape} (M, K) but w is {w.shape} (K, N); K must agree")
    a_offset = _int_param("a_offset", a_offset)
    w_offset = _int_param("w_offset", w_offset)
    _check_range("a", a, a_offset, lut.shape[0], "first (activation)")
    _check_range("w", w, w_offset, lut.shape[1], "second (weight)")
    _check_accumulation(lut, a.shape[1])
    return a, w, lut, a_offset, w_offset


def _check_conv(x, w, lut, stride, padding, groups, a_offset, w_offset):
    """Validated conv inputs plus the output size: ``(x, w, lut, (sh, sw), (ph, pw), groups, a_offset, w_offset,
    (Ho, Wo))``."""
    lut = _check_lut(lut)
    x = _int_array("x", x, 4)
    w = _int_array("w", w, 4)
    sh, sw = _pair("stride", stride, 1)
    ph, pw = _pair("padding", padding, 0)
    groups = _int_param("groups", groups, 1)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    if c % groups or o % groups:
        raise ValueError(f"groups={groups} must divide both the input channels ({c}) and the output channels ({o})")
    if cg != c // groups:
        raise ValueError(f"shape mismatch: w is {w.shape} (O, C/groups, kh, kw) but x has C={c} channels and groups={groups}, "
                         f"so w.shape[1] must be {c // groups}")
    if kh == 0 or kw == 0:
        raise ValueError(f"kernel must be at least 1x1, got w.shape={w.shape}")
    if h + 2 * ph < kh or wd + 2 * pw < kw:
        raise ValueError(f"kernel {kh}x{kw} is larger than the padded input {h + 2 * ph}x{wd + 2 * pw}")
    a_offset = _int_param("a_offset", a_offset)
    w_offset = _int_param("w_offset", w_offset)
    _check_range("x", x, a_offset, lut.shape[0], "first (activation)")
    if ph or pw:  # the padding value 0 is an activation operand like any other
        _check_range("x padding value", np.zeros(1, np.int64), a_offset, lut.shape[0], "first (activation)")
    _check_range("w", w, w_offset, lut.shape[1], "second (weight)")
    _check_accumulation(lut, cg * kh * kw)
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (wd + 2 * pw - kw) // sw + 1
    return x, w, lut, (sh, sw), (ph, pw), groups, a_offset, w_offset, (ho, wo)


# --------------------------------------------------------------------------- references


def reference_gemm(a, w, lut, a_offset: int = 0, w_offset: int = 0) -> np.ndarray:
    """Reference LUT GEMM: ``out[m, n] = sum_k lut[a[m, k] + a_offset, w[k, n] + w_offset]``.

    Args:
        a: integer activations, shape (M, K).
        w: integer weights, shape (K, N).
        lut: integer product table, shape (A, B); ``lut[i, j]`` is the (approximate) product of the
            operands with indices ``i`` and ``j``.
        a_offset, w_offset: added to the operands to form table indices (128 for signed 8-bit tables
            stored as ``T[x + 128, y + 128]``, 0 for unsigned tables).

    Returns:
        int64 array of shape (M, N), summed exactly (integer codes, no scaling).

    Raises:
        ValueError: non-integer dtypes, wrong ranks, K mismatch, or operands outside the table.
    """
    a, w, lut, a_offset, w_offset = _check_gemm(a, w, lut, a_offset, w_offset)
    lut64 = lut.astype(np.int64)
    ai = a.astype(np.int64) + a_offset
    wi = w.astype(np.int64) + w_offset
    m, n = a.shape[0], w.shape[1]
    out = np.zeros((m, n), dtype=np.int64)
    for i in range(m):
        # products[k, j] = lut[a[i, k], w[k, j]]; summed over k
        products = lut64[ai[i][:, None], wi]
        out[i] = products.sum(axis=0)
    return out


def reference_conv2d(x, w, lut, stride=1, padding=0, groups: int = 1, a_offset: int = 0, w_offset: int = 0) -> np.ndarray:
    """Reference LUT convolution (cross-correlation, as ``torch.nn.functional.conv2d``), every product a table lookup.

    ``out[n, o, i, j] = sum_{c, p, q} lut[xp[n, g*C/groups + c, i*sh + p, j*sw + q] + a_offset, w[o, c, p, q] + w_offset]``
    with ``g = o // (O/groups)`` and ``xp`` the zero-padded input.

    Zero padding: the padded value is the integer 0, and it goes through the table like any other
    activation, i.e. each padded tap contributes ``lut[0 + a_offset, w + w_offset]`` -- which need not
    be 0 for an approximate multiplier. (With offset 128 the code 0 means the signed value 0.)

    Args:
        x: integer activations, shape (N, C, H, W).
        w: integer weights, shape (O, C/groups, kh, kw).
        lut: integer product table, shape (A, B).
        stride, padding: int or (h, w) pair; stride >= 1, padding >= 0.
        groups: channel groups; must divide C and O (depthwise: groups == C == O).
        a_offset, w_offset: see :func:`reference_gemm`.

    Returns:
        int64 array of shape (N, O, Ho, Wo) with ``Ho = (H + 2*ph - kh) // sh + 1`` (likewise Wo).

    Raises:
        ValueError: non-integer dtypes, wrong ranks or shapes, bad stride/padding/groups, or operands
            (including the padding value 0) outside the table.
    """
    x, w, lut, (sh, sw), (ph, pw), groups, a_offset, w_offset, (ho, wo) = _check_conv(
        x, w, lut, stride, padding, groups, a_offset, w_offset)
    n_batch, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    lut64 = lut.astype(np.int64)
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="constant", constant_values=0)
    out = np.zeros((n_batch, o, ho, wo), dtype=np.int64)
    for n in range(n_batch):
        for oc in range(o):
            g = oc // og
            wi = w[oc].astype(np.int64) + w_offset  # (C/groups, kh, kw)
            for i in range(ho):
                for j in range(wo):
                    patch = xp[n, g * cg:(g + 1) * cg, i * sh:i * sh + kh, j * sw:j * sw + kw] + a_offset
                    out[n, oc, i, j] = lut64[patch, wi].sum()
    return out


# --------------------------------------------------------------------------- SnaPEA (akhlaghi2020 ch.3)


def reference_early_term_conv2d(x, w, bias=None, stride=1, padding=0, th=0.0, n=0, residual=None):
    """Plain-Python SnaPEA convolution + ReLU with MAC counts (oracle of
    :func:`axlib.kernels.early_term.early_term_conv2d`; same reordering rule)."""
    from axlib.kernels.early_term import reorder

    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    o_count, c, kh, kw = w.shape
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = (x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1
    r = reorder(w, n)
    ths = np.broadcast_to(np.asarray(th, dtype=np.float64), (o_count,))
    out = np.zeros((x.shape[0], o_count, ho, wo))
    ops = np.zeros((x.shape[0], o_count, ho, wo), dtype=np.int64)
    for b in range(x.shape[0]):
        for o in range(o_count):
            for i in range(ho):
                for j in range(wo):
                    acc = 0.0 if bias is None else float(bias[o])
                    if residual is not None:
                        acc += float(residual[b, o, i, j])
                    count, value = kh * kw * c, None
                    for s, flat in enumerate(r.order[o]):
                        ch, rem = divmod(int(flat), kh * kw)
                        p, q = divmod(rem, kw)
                        acc += w[o, ch, p, q] * xp[b, ch, i * sh + p, j * sw + q]
                        if (s + 1 == r.n_spec[o] and acc <= ths[o]) or (s >= r.neg_start[o] and acc <= 0):
                            count, value = s + 1, 0.0
                            break
                    out[b, o, i, j] = max(acc, 0.0) if value is None else value
                    ops[b, o, i, j] = count
    return out, ops
