"""Exact low-rank path for LUT convolutions (plain torch ops, so it runs on CPU and CUDA).

Write the table as ``T[a, w] = a·w + E[a, w]``. When ``E = Σ_r u_r[a] v_r[w]`` with small rank
``r``, a LUT convolution equals the exact convolution of the codes plus ``r`` convolutions of the
mapped operands ``u_r(x)`` and ``v_r(w)``, all in float64; rounding the result gives the LUT
kernel's integers exactly when its error stays below 0.5. That is guaranteed, for every operand the
table admits, when (:meth:`LowRankTable.exactness_problem` checks all three before running):

1. ``K · max|a·w| <= 2^53``: every partial sum of the code convolution is an exact float64 integer;
2. ``K · max|T| <= 2^53``: the result itself is an exact float64 integer;
3. ``K · max_dev + float error < 0.5``, with ``max_dev`` a rigorous bound on ``|a·w + Σ_r u_r v_r - T|``
   and the float error of the ``r`` convolutions and ``r`` additions bounded (any summation order) by
   ``γ_r · K · max|a·w| + γ_{K+r} · K · max Σ_r |u_r(a) v_r(w)|``, ``γ_n = n·2^-53 / (1 - n·2^-53)``.

Past these limits (table entries or ``|operand| x K`` near 2^53) the path refuses to run instead of
returning wrong integers; the dispatcher then uses the LUT kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from axlib.kernels import checks

F64_EXACT = checks.F64_EXACT
_U = 2.0**-53  # unit roundoff of float64


def _gamma(n: int) -> float:
    """Higham's ``γ_n``: relative error bound of ``n`` float64 roundings."""
    return n * _U / (1 - n * _U)


@dataclass(frozen=True)
class LowRankTable:
    u: np.ndarray       # (A, r) float64: u[a + a_offset, i]
    v: np.ndarray       # (B, r) float64: v[w + w_offset, i]
    a_offset: int
    w_offset: int
    max_dev: float      # rigorous bound on |a·w + u v^T - T| over all entries
    max_table: int      # max |T| (integer)
    max_product: int    # max |a·w| over the table's operand range (integer)
    max_lowrank: float  # bound on max over entries of Σ_r |u_r(a)| |v_r(w)|

    @property
    def rank(self) -> int:
        return self.u.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        """(A, B): the table's rows (activation indices) and columns (weight indices)."""
        return self.u.shape[0], self.v.shape[0]

    def error_bound(self, k: int) -> float:
        """Bound on |float64 result - exact integer| of one dot product of length ``k`` (conditions 1-2 aside)."""
        r = self.rank
        float_err = _gamma(r) * k * self.max_product + _gamma(k + r) * k * self.max_lowrank
        return k * self.max_dev + 2 * float_err  # doubled: covers the rounding of this bound itself

    def exactness_problem(self, k: int) -> str | None:
        """Why dot products of length ``k`` may not round to the exact integers (None when they do)."""
        if k * self.max_product > F64_EXACT:
            return (f"partial sums of the code convolution reach K x max|a·w| = {k} x {self.max_product} = "
                    f"{k * self.max_product} > 2^53 = {F64_EXACT} (float64's exact integers)")
        if k * self.max_table > F64_EXACT:
            return (f"results reach K x max|T| = {k} x {self.max_table} = {k * self.max_table} > 2^53 = {F64_EXACT} "
                    f"(float64's exact integers)")
        bound = self.error_bound(k)
        if not bound < 0.5:
            return (f"rounding error bound K x max_dev + float error = {k} x {self.max_dev:.3g} + "
                    f"{bound - k * self.max_dev:.3g} = {bound:.3g} >= 0.5")
        return None

    def exact_for(self, k: int) -> bool:
        """True when dot products of length ``k`` still round to the exact integers."""
        return self.exactness_problem(k) is None


def factorize(table: np.ndarray, a_offset: int = 0, w_offset: int = 0, max_rank: int = 16,
              tol: float = 1e-7) -> LowRankTable | None:
    """Smallest-rank SVD factorisation of ``E = T - a·w`` (integer table) with every entry within ``tol``;
    None if no rank up to ``max_rank`` reproduces the table.

    Raises:
        ValueError: a non-integer table, or entries / operand products beyond 2^53, where float64 cannot
            even hold ``T`` and ``E`` exactly.
    """
    t = checks.check_lut(table)
    a_offset, w_offset = checks.int_param("a_offset", a_offset), checks.int_param("w_offset", w_offset)
    amax = max(abs(a_offset), abs(t.shape[0] - 1 - a_offset))
    wmax = max(abs(w_offset), abs(t.shape[1] - 1 - w_offset))
    tmax = max(abs(int(t.min())), abs(int(t.max())))
    if amax * wmax > F64_EXACT or tmax > F64_EXACT:
        raise ValueError(f"table not representable in float64: max|T| = {tmax}, max|a·w| = {amax} x {wmax} = "
                         f"{amax * wmax}; both must be <= 2^53 = {F64_EXACT}")
    a = np.arange(t.shape[0], dtype=np.int64) - a_offset
    w = np.arange(t.shape[1], dtype=np.int64) - w_offset
    e_int = t.astype(np.int64) - np.outer(a, w)        # exact: |T|, |a·w| <= 2^53
    emax = int(np.abs(e_int).max())
    if emax > F64_EXACT:
        raise ValueError(f"error matrix not representable in float64: max|T - a·w| = {emax} > 2^53 = {F64_EXACT}")
    e = e_int.astype(np.float64)
    common = dict(a_offset=a_offset, w_offset=w_offset, max_table=tmax, max_product=amax * wmax)
    if not emax:
        z = np.zeros((t.shape[0], 0)), np.zeros((t.shape[1], 0))
        return LowRankTable(z[0], z[1], max_dev=0.0, max_lowrank=0.0, **common)
    u, s, vt = np.linalg.svd(e)
    for r in range(1, min(max_rank, len(s)) + 1):
        ur, vr = u[:, :r] * s[:r], vt[:r].T
        dev = float(np.abs(ur @ vr.T - e).max())
        if dev <= tol:
            lowrank = float((np.abs(ur) @ np.abs(vr).T).max())
            # the computed dev misses the rounding of ur @ vr.T (<= γ_r Σ|u||v|) and of the subtraction
            max_dev = dev * (1 + 2 * _U) + 2 * _gamma(r) * lowrank
            return LowRankTable(ur, vr, max_dev=max_dev, max_lowrank=lowrank * (1 + 2 * _gamma(r)), **common)
    return None


def lowrank_conv2d(x: torch.Tensor, w: torch.Tensor, lr: LowRankTable, stride=1, padding=0, groups: int = 1
                   ) -> torch.Tensor:
    """Integer LUT convolution of integer codes ``x`` (N, C, H, W) and ``w`` (O, C/g, kh, kw) via the
    low-rank identity; returns int64, bit-identical to ``lut_conv2d``.

    Raises:
        ValueError: non-integer dtypes (floats are not truncated), codes outside the table (no wrap-around),
            bad shapes / stride / padding / groups, ``w`` on another device, or a layer whose dot-product
            length K makes the float64 result inexact (:meth:`LowRankTable.exactness_problem`).
    """
    x, w, stride, padding, groups, _, _, _ = checks.check_conv_operands(
        x, w, lr.shape, stride, padding, groups, lr.a_offset, lr.w_offset, tensors=True)
    x, w = torch.as_tensor(x), torch.as_tensor(w)
    if w.device != x.device:
        raise ValueError(f"w is on {w.device} but x is on {x.device}; both must be on the same device")
    k = w.shape[1] * w.shape[2] * w.shape[3]
    why_not = lr.exactness_problem(k)
    if why_not:
        raise ValueError(f"low-rank path not exact for this layer (K={k}): {why_not}; use the LUT kernel")
    pad = padding
    xi = F.pad(x.long(), (pad[1], pad[1], pad[0], pad[0]))  # operand 0 at padded taps, like the LUT kernel
    xd, wd = xi.double(), w.double()
    out = F.conv2d(xd, wd, stride=stride, groups=groups)
    if lr.rank:
        u = torch.from_numpy(lr.u).to(x.device)
        v = torch.from_numpy(lr.v).to(x.device)
        ux = u[xi + lr.a_offset]            # (N, C, H, W, r)
        vw = v[w.long() + lr.w_offset]      # (O, C/g, kh, kw, r)
        for i in range(lr.rank):
            out = out + F.conv2d(ux[..., i], vw[..., i], stride=stride, groups=groups)
    return torch.round(out).long()
