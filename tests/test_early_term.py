"""SnaPEA early-terminating convolution (akhlaghi2020 ch.3)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from axlib.kernels.early_term import early_term_conv2d, ops_eq31, reorder, snapea_torch, speculation_indices
from axlib.kernels.reference import reference_early_term_conv2d
from axlib.validate import ParameterError


def _int_case(rng, n=2, c=3, h=6, o=4, k=3):
    x = rng.integers(0, 6, size=(n, c, h, h)).astype(np.float64)          # post-ReLU: non-negative
    w = rng.integers(-4, 5, size=(o, c, k, k)).astype(np.float64)
    b = rng.integers(-3, 4, size=o).astype(np.float64)
    return x, w, b


def _relu_conv(x, w, b, stride=1, padding=0, residual=None):
    y = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), stride, padding)
    if residual is not None:
        y = y + torch.from_numpy(residual)
    return torch.relu(y).numpy()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), stride=st.sampled_from([1, 2]), padding=st.sampled_from([0, 1]))
def test_exact_mode_is_bit_exact_relu_conv_on_integers(seed, stride, padding):
    x, w, b = _int_case(np.random.default_rng(seed))
    out, ops = early_term_conv2d(x, w, b, stride, padding)
    assert np.array_equal(out, _relu_conv(x, w, b, stride, padding))
    assert ops.min() >= 1 and ops.max() <= w[0].size


def test_exact_mode_float_inputs_same_zero_pattern():
    rng = np.random.default_rng(1)
    x = np.abs(rng.standard_normal((2, 8, 9, 9)))
    w = rng.standard_normal((6, 8, 3, 3))
    b = rng.standard_normal(6) * 0.1
    out, ops = early_term_conv2d(x, w, b, 1, 1)
    ref = _relu_conv(x, w, b, 1, 1)
    assert np.array_equal(out == 0, ref == 0)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    assert ops.mean() < w[0].size   # some windows did terminate early


@pytest.mark.parametrize("seed", range(4))
def test_numba_equals_the_reference_in_predictive_mode_with_residual(seed):
    rng = np.random.default_rng(seed)
    x, w, b = _int_case(rng, o=5)
    res = rng.integers(-2, 3, size=(2, 5, 4, 4)).astype(np.float64)
    th = rng.integers(-2, 6, size=5).astype(np.float64)
    n = rng.integers(0, 6, size=5)
    out, ops = early_term_conv2d(x, w, b, th=th, n=n, residual=res)
    ref_out, ref_ops = reference_early_term_conv2d(x, w, b, th=th, n=n, residual=res)
    assert np.array_equal(out, ref_out) and np.array_equal(ops, ref_ops)
    # the torch path gives the same outputs
    got = snapea_torch(*(torch.from_numpy(a) for a in (x, w, b)), th=th, n=n, residual=torch.from_numpy(res))
    assert np.array_equal(got.numpy(), out)
    # predictive outputs are either 0 or the exact ReLU(conv)
    exact = _relu_conv(x, w, b, residual=res)
    assert np.all((out == 0) | (out == exact))


def test_op_counts_follow_eq_3_1():
    rng = np.random.default_rng(7)
    x, w, b = _int_case(rng, n=1, c=2, h=5, o=3)
    th, n = np.array([1.0, -2.0, 0.0]), np.array([2, 0, 4])
    _, ops = early_term_conv2d(x, w, b, th=th, n=n)
    r = reorder(w, n)
    for o in range(3):
        windows = np.lib.stride_tricks.sliding_window_view(x[0], (3, 3), axis=(1, 2))      # (C, 3, 3, kh, kw)
        cols = windows.transpose(1, 2, 0, 3, 4).reshape(9, -1)                               # (W, K) in (c, p, q)
        prods = cols[:, r.order[o]] * w[o].reshape(-1)[r.order[o]]
        expected = ops_eq31(prods, np.full(9, b[o]), int(r.n_spec[o]), int(r.neg_start[o]), th[o])
        assert np.array_equal(ops[0, o].reshape(-1), expected)


def test_worked_example_of_fig_3_4():
    """A 1x3 convolution built to match the text of §3.4: the unaltered output is -9; the exact mode
    stops after 2 MACs at -3; the predictive mode stops after 1 MAC at +2 (threshold 2)."""
    x = np.array([1.0, 5.0, 6.0]).reshape(1, 1, 1, 3)
    w = np.array([2.0, -1.0, -1.0]).reshape(1, 1, 1, 3)
    assert float((x * w).sum()) == -9.0
    out, ops = early_term_conv2d(x, w)
    assert out.item() == 0.0 and ops.item() == 2
    out, ops = early_term_conv2d(x, w, th=2.0, n=1)
    assert out.item() == 0.0 and ops.item() == 1
    out, ops = early_term_conv2d(x, w, th=1.0, n=1)    # +2 > 1: no speculation, exact path
    assert ops.item() == 2


def test_speculation_weights_rule():
    w = np.array([0.5, -3.0, 0.1, 2.0, -0.2, 1.0])
    # ascending: -3, -0.2, 0.1, 0.5, 1, 2 -> groups (-3, -0.2) (0.1, 0.5) (1, 2) -> largest |w| each
    assert speculation_indices(w, 3).tolist() == [1, 0, 3]
    assert speculation_indices(w, 6).tolist() == [1, 4, 2, 0, 5, 3]
    r = reorder(w.reshape(1, 1, 1, 6), 3)
    assert r.order[0].tolist() == [1, 0, 3, 2, 5, 4] and r.neg_start[0] == 5


def test_validation():
    x, w, b = _int_case(np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-negative"):
        early_term_conv2d(x - 1, w, b)
    with pytest.raises(ParameterError, match="speculation groups"):
        early_term_conv2d(x, w, b, n=1000)


def _compare_kernels(seed: int) -> int:
    """The blocks and windows-innermost kernels: outputs bit-identical and MAC counts equal to the
    window-at-a-time loop, in exact and predictive mode, with strides (incl. unequal ones), padding,
    a residual, 1x1/3x3/5x3 kernels, rows of 1-41 windows (partial chunks and blocks spanning rows)."""
    rng = np.random.default_rng(100 + seed)
    n, c, o = 2, int(rng.integers(1, 6)), int(rng.integers(1, 5))
    h, wd = int(rng.integers(5, 12)), int(rng.integers(3, 42))
    kh, kw = [(1, 1), (3, 3), (5, 3)][seed % 3]
    stride = (int(rng.integers(1, 3)), int(rng.integers(1, 3)))
    padding = (int(rng.integers(0, 2)), int(rng.integers(0, 2)))
    x = np.maximum(rng.normal(size=(n, c, h, wd)), 0) * (rng.random((n, c, h, wd)) < 0.7)
    w, b = rng.normal(size=(o, c, kh, kw)), rng.normal(size=o)
    ns = rng.integers(0, c * kh * kw + 1, size=o) if seed % 2 else 0
    th = rng.normal(size=o) * 0.5
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (wd + 2 * padding[1] - kw) // stride[1] + 1
    res = rng.normal(size=(n, o, ho, wo)) * 0.3
    z = early_term_conv2d(x, w, b, stride, padding, th, ns, res, kernel="window")
    for kernel in ("blocks", "windows", "auto"):
        a = early_term_conv2d(x, w, b, stride, padding, th, ns, res, kernel=kernel)
        assert np.array_equal(a[0], z[0]) and np.array_equal(a[1], z[1]), kernel
    return int((z[1] < c * kh * kw).sum())  # windows that terminated early


@pytest.mark.parametrize("seed", range(10))
def test_vector_kernels_equal_the_window_at_a_time_kernel(seed):
    _compare_kernels(seed)


def test_vector_kernel_cases_terminate_early():
    """The random cases above do exercise early termination (most of them, not only full runs)."""
    early = [_compare_kernels(seed) for seed in range(10)]
    assert sum(e > 0 for e in early) >= 7, early


def test_kernel_choice_is_validated():
    x, w, b = _int_case(np.random.default_rng(0))
    with pytest.raises(ValueError, match="kernel"):
        early_term_conv2d(x, w, b, kernel="simd")
    with pytest.raises(ValueError, match="strides"):
        early_term_conv2d(x, w, b, stride=3, kernel="blocks")
    a = early_term_conv2d(x, w, b, stride=3)                     # auto falls back to the windows loop
    assert np.array_equal(a[0], early_term_conv2d(x, w, b, stride=3, kernel="window")[0])
