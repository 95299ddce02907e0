"""Exact low-rank path for LUT convolutions (plain torch ops, so it runs on CPU and CUDA).

Write the table as ``T[a, w] = a·w + E[a, w]``. When ``E = Σ_r u_r[a] v_r[w]`` with small rank
``r``, a LUT convolution equals the exact convolution of the codes plus ``r`` convolutions of the
mapped operands ``u_r(x)`` and ``v_r(w)``. The factorisation is accepted only when it reproduces
every table entry to within ``max_dev`` and ``max_dev · K < 0.5`` for the layer's dot-product length
``K``, so rounding the float64 result gives the LUT kernel's integers exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LowRankTable:
    u: np.ndarray       # (A, r) float64: u[a + a_offset, i]
    v: np.ndarray       # (B, r) float64: v[w + w_offset, i]
    a_offset: int
    w_offset: int
    max_dev: float      # max |a·w + u v^T - T| over all entries

    @property
    def rank(self) -> int:
        return self.u.shape[1]

    def exact_for(self, k: int) -> bool:
        """True when dot products of length ``k`` still round to the exact integers."""
        return self.max_dev * k < 0.5


def factorize(table: np.ndarray, a_offset: int = 0, w_offset: int = 0, max_rank: int = 16,
              tol: float = 1e-7) -> LowRankTable | None:
    """Smallest-rank SVD factorisation of ``E = T - a·w`` with every entry within ``tol``; None if
    no rank up to ``max_rank`` reproduces the table."""
    t = np.asarray(table, dtype=np.float64)
    a = np.arange(t.shape[0]) - a_offset
    w = np.arange(t.shape[1]) - w_offset
    e = t - np.outer(a, w)
    if not e.any():
        z = np.zeros((t.shape[0], 0)), np.zeros((t.shape[1], 0))
        return LowRankTable(z[0], z[1], a_offset, w_offset, 0.0)
    u, s, vt = np.linalg.svd(e)
    for r in range(1, min(max_rank, len(s)) + 1):
        ur, vr = u[:, :r] * s[:r], vt[:r].T
        dev = float(np.abs(ur @ vr.T - e).max())
        if dev <= tol:
            return LowRankTable(ur, vr, a_offset, w_offset, dev)
    return None


def lowrank_conv2d(x: torch.Tensor, w: torch.Tensor, lr: LowRankTable, stride=1, padding=0, groups: int = 1
                   ) -> torch.Tensor:
    """Integer LUT convolution of integer codes ``x`` (N, C, H, W) and ``w`` (O, C/g, kh, kw) via the
    low-rank identity; returns int64, bit-identical to ``lut_conv2d`` when ``lr.exact_for(K)``."""
    k = w.shape[1] * w.shape[2] * w.shape[3]
    if not lr.exact_for(k):
        raise ValueError(f"factorisation error {lr.max_dev:.3g} x K={k} >= 0.5: not exact for this layer")
    pad = (padding, padding) if isinstance(padding, int) else tuple(padding)
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
