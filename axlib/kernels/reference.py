"""Plain NumPy reference implementations of LUT-based (approximate-multiplier) GEMM and convolution.

Convention (shared with :mod:`axlib.kernels.lut_gemm`): the product of an activation ``x`` and a
weight ``y`` is ``lut[x + a_offset, y + w_offset]``; the products are summed exactly in int64.
Unsigned 8-bit tables are indexed directly (offsets 0, operands 0..255); signed 8-bit tables are
stored with offset indexing, ``T[x + 128, y + 128] = mul(x, y)`` for ``x, y`` in [-128, 127]
(offsets 128). All values are integer codes (no scales): the caller applies quantisation scales.

These functions are written for obvious correctness, not speed; they are the oracle the fast
numba kernels are tested against. Their input checks (:mod:`axlib.kernels.checks`) are shared with the
fast kernels.
"""

from __future__ import annotations

import numpy as np

from axlib.kernels import checks

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
    a, w, lut, a_offset, w_offset = checks.check_gemm(a, w, lut, a_offset, w_offset)
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
    x, w, lut, (sh, sw), (ph, pw), groups, a_offset, w_offset, (ho, wo) = checks.check_conv(
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
    from axlib.kernels.early_term import check_inputs

    x, w, bias, (sh, sw), (ph, pw), (ho, wo), ths, r = check_inputs(x, w, bias, stride, padding, th, n, residual)
    o_count, c, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
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
