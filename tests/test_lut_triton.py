"""The Triton LUT convolution, run on the CPU through Triton's interpreter: bit-exact against the reference.

Triton reads ``TRITON_INTERPRET`` when the kernel is defined, so the checks run in a child process that
sets it before importing the kernel (this process may have imported Triton already, without it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from axlib.kernels import dispatch

triton = pytest.importorskip("triton")

CHECKS = textwrap.dedent("""
    import numpy as np, torch
    from axlib.kernels import lut_triton, reference_conv2d
    from axlib.kernels.lut_triton import triton_lut_conv2d
    rng = np.random.default_rng(7)
    tables = {
        "unsigned16": (rng.integers(0, 2**16, size=(256, 256)), 0),
        "signed16": (rng.integers(-2**15, 2**15, size=(256, 256)), 128),
        "int32_overflowing": (np.full((256, 256), (2**31 - 1) // 4, dtype=np.int64), 0),
        "int64": (rng.integers(-2**40, 2**40, size=(256, 256)), 128),
    }
    # (N, C, H, W, O, kh, kw, stride, padding, groups): odd sizes, strides, padding, groups, partial tiles
    shapes = [(2, 3, 7, 6, 5, 3, 3, 1, 1, 1), (1, 4, 6, 6, 6, 2, 2, 2, 0, 2), (2, 6, 5, 5, 39, 3, 3, (2, 1), (1, 0), 3),
              (1, 4, 9, 9, 70, 3, 3, 1, 1, 1), (1, 2, 4, 4, 3, 1, 1, 1, 2, 1), (3, 8, 3, 3, 8, 3, 3, 1, 1, 8)]
    for name, (lut, off) in tables.items():
        for (n, c, h, w_, o, kh, kw, s, p, g) in shapes:
            x = rng.integers(0, 256, size=(n, c, h, w_)) - off
            w = rng.integers(0, 256, size=(o, c // g, kh, kw)) - off
            if name == "int32_overflowing":
                x[:], w[:] = 255, 255
            got = triton_lut_conv2d(torch.from_numpy(x), torch.from_numpy(w), lut, s, p, g, off, off)
            want = reference_conv2d(x, w, lut, stride=s, padding=p, groups=g, a_offset=off, w_offset=off)
            assert got.dtype == torch.int64 and tuple(got.shape) == want.shape, (name, n, c, h)
            assert np.array_equal(got.numpy(), want), (name, (n, c, h, w_, o, kh, kw, s, p, g))
    assert np.abs(want).max() > 2**31  # the int64 table really needed the int64 accumulator
    print("triton-interpreter-ok")
""")


def test_triton_kernel_matches_reference_in_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    res = subprocess.run([sys.executable, "-c", CHECKS], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "triton-interpreter-ok" in res.stdout


def test_dispatch_picks_triton_on_cuda():
    assert dispatch.lut_backend(torch.device("cuda")) == "triton"
    assert dispatch.lut_backend(torch.device("cpu")) == "numba"


def test_gpu_benchmark_script_smoke():
    """The prepared GPU script runs end to end (tiny shapes, CPU interpreter) and checks exactness."""
    script = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "lut_triton_gpu.py")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    res = subprocess.run([sys.executable, script, "--smoke"], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "tiny.stride2" in res.stdout and "True" in res.stdout
