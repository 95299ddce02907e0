"""LUT convolution on CUDA GPUs (Triton): every product a table lookup, summed exactly.

Same convention as :mod:`axlib.kernels.lut_gemm` (``lut[x + a_offset, w + w_offset]``) and bit-identical
to it and to :func:`axlib.kernels.reference.reference_conv2d`. An implicit GEMM: each program computes
a tile of ``BLOCK_M`` output positions x ``BLOCK_N`` output channels of one group; per step of
``BLOCK_K`` taps it reads the activation indices straight from the padded input (no im2col), the weight
indices, and gathers the ``BLOCK_M x BLOCK_K x BLOCK_N`` products from the table, reducing over taps.
The table (int16/int32, 128-256 KiB for 8x8 multipliers) is read through the GPU's L1/L2 caches:
Triton gives no indexed access to shared memory, and an int32 256x256 table would not fit in it
anyway. Accumulation is int32 when ``K · max|lut| < 2^31`` (the same bound as the CPU kernels), else
int64; the result is int64.

Tested on the CPU through Triton's interpreter (``TRITON_INTERPRET=1``, tests/test_lut_triton.py), so no
GPU is needed to check it; :func:`axlib.kernels.dispatch.conv2d` uses it for CUDA tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

try:  # Triton ships with the CUDA builds of torch; the CPU-only wheels lack it
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the torch build
    triton = None

#: Tile sizes: output positions, output channels, taps per step.
BLOCK_M, BLOCK_N, BLOCK_K = 32, 32, 8

_INT32_MAX = np.iinfo(np.int32).max


def available() -> bool:
    """Whether Triton is importable (the kernel also needs a CUDA device or ``TRITON_INTERPRET=1``)."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _lut_conv_kernel(x_ptr, w_ptr, lut_ptr, out_ptr,
                         C, HP, WP, HO, WO, M, K, OG, CG, LUT_COLS,
                         SH: tl.constexpr, SW: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr,
                         ACC_INT64: tl.constexpr,
                         BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
        """out[n, g*OG + o, i, j] = sum_k lut[x[n, g*CG + c, i*SH + p, j*SW + q] * LUT_COLS + w[g, k, o]] with
        k = (c*KH + p)*KW + q; x holds padded table row indices (int32), w table column indices (int32)."""
        pid_m = tl.program_id(0)
        pid_n = tl.program_id(1)
        g = tl.program_id(2)
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        mask_m = offs_m < M
        mask_n = offs_n < OG
        plane = HO * WO
        n_img = offs_m // plane
        rem = offs_m - n_img * plane
        n_img = n_img.to(tl.int64)  # image offsets into input and output may pass 2^31 elements
        i = rem // WO
        j = rem - i * WO
        base = n_img * (C * HP * WP) + g * CG * HP * WP + (i * SH) * WP + j * SW
        if ACC_INT64:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int64)
        else:
            acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.int32)
        for k0 in range(0, K, BLOCK_K):
            offs_k = k0 + tl.arange(0, BLOCK_K)
            mask_k = offs_k < K
            c = offs_k // (KH * KW)
            pq = offs_k - c * (KH * KW)
            p = pq // KW
            q = pq - p * KW
            tap = c * (HP * WP) + p * WP + q
            a = tl.load(x_ptr + base[:, None] + tap[None, :], mask=mask_m[:, None] & mask_k[None, :], other=0)
            wv = tl.load(w_ptr + (g * K + offs_k[:, None]) * OG + offs_n[None, :],
                         mask=mask_k[:, None] & mask_n[None, :], other=0)
            mask3 = mask_m[:, None, None] & mask_k[None, :, None] & mask_n[None, None, :]
            prod = tl.load(lut_ptr + a[:, :, None] * LUT_COLS + wv[None, :, :], mask=mask3, other=0)
            if ACC_INT64:
                acc += tl.sum(prod.to(tl.int64), axis=1)
            else:
                acc += tl.sum(prod.to(tl.int32), axis=1)
        o = g * OG + offs_n
        out_off = (n_img[:, None] * (tl.num_programs(2) * OG) + o[None, :]) * plane + rem[:, None]
        tl.store(out_ptr + out_off, acc.to(tl.int64), mask=mask_m[:, None] & mask_n[None, :])


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if np.isscalar(v) else (int(v[0]), int(v[1]))


@dataclass(frozen=True)
class DeviceTable:
    """A product table on a device, in the narrowest of int16/int32/int64 holding it, with its peak |entry|."""

    values: torch.Tensor
    peak: int
    cols: int


def device_table(lut: np.ndarray, device) -> DeviceTable:
    """Copy the (A, B) integer table to ``device`` once (callers keep it: see ``PreparedTable``)."""
    lut = np.asarray(lut)
    lo, hi = int(lut.min()), int(lut.max())
    dtype = next(d for d, info in ((np.int16, np.iinfo(np.int16)), (np.int32, np.iinfo(np.int32)),
                                   (np.int64, np.iinfo(np.int64))) if info.min <= lo and hi <= info.max)
    values = torch.as_tensor(np.ascontiguousarray(lut, dtype=dtype)).to(device)
    return DeviceTable(values, max(abs(lo), abs(hi)), int(lut.shape[1]))


def triton_lut_conv2d(x: torch.Tensor, w: torch.Tensor, lut, stride=1, padding=0, groups: int = 1,
                      a_offset: int = 0, w_offset: int = 0) -> torch.Tensor:
    """LUT convolution (cross-correlation) of integer codes with the Triton kernel; int64 (N, O, Ho, Wo)
    on ``x.device``.

    ``x`` (N, C, H, W) and ``w`` (O, C/groups, kh, kw) are integer tensors already checked by the caller
    (:func:`axlib.kernels.checks.check_conv_operands`: codes inside the table after the offsets, shapes,
    stride, padding, groups); ``lut`` is the (A, B) integer table, or a :class:`DeviceTable` already on
    ``x.device``. On the CPU this runs only under ``TRITON_INTERPRET=1``.
    """
    if triton is None:
        raise RuntimeError("Triton is not installed (it ships with the CUDA builds of torch)")
    (sh, sw), (ph, pw) = _pair(stride), _pair(padding)
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    og = o // groups
    k = cg * kh * kw
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    dev = x.device
    table = lut if isinstance(lut, DeviceTable) else device_table(lut, dev)
    xi = torch.nn.functional.pad(x.to(torch.int32) + a_offset, (pw, pw, ph, ph), value=a_offset).contiguous()
    wi = (w.to(dev, torch.int32) + w_offset).reshape(groups, og, k).transpose(1, 2).contiguous()
    out = torch.empty((n, o, ho, wo), dtype=torch.int64, device=dev)
    m = n * ho * wo
    if out.numel() == 0:
        return out
    grid = (triton.cdiv(m, BLOCK_M), triton.cdiv(og, BLOCK_N), groups)
    _lut_conv_kernel[grid](xi, wi, table.values, out, c, h + 2 * ph, wd + 2 * pw, ho, wo, m, k, og, cg, table.cols,
                           SH=sh, SW=sw, KH=kh, KW=kw, ACC_INT64=bool(k * table.peak >= _INT32_MAX),
                           BLOCK_M=BLOCK_M, BLOCK_N=BLOCK_N, BLOCK_K=BLOCK_K)
    return out
