"""Reliability of the kernels' inputs (issue: "Kernel inputs"): the exact low-rank path refuses layers where
float64 cannot guarantee exact integers (and the dispatcher then uses the LUT kernel); every kernel refuses
float codes, out-of-range codes, non-finite values, wrong shapes, strides and paddings with a message that
names the argument, instead of truncating, wrapping around or failing inside a library."""

import numpy as np
import pytest
import torch

from axlib import multipliers as mul
from axlib.kernels import bloom, dispatch, lut_conv2d, reference_conv2d
from axlib.kernels.early_term import early_term_conv2d, reorder
from axlib.kernels.lowrank import factorize, lowrank_conv2d
from axlib.kernels.reference import reference_early_term_conv2d
from axlib.kernels.reuse import served_conv2d, window_histograms
from axlib.validate import ParameterError

F64_EXACT = 2**53
#: A table entry / operand magnitude just above 2^53 / K for K = 9 (a 3x3 kernel over one channel).
NEAR = F64_EXACT // 9 + 1


@pytest.fixture(autouse=True)
def _fresh():
    dispatch.clear()
    yield
    dispatch.clear()


def _big_entry_table():
    """2x2 table ``T = a·w + E`` with one error entry ``E[1, 1] = NEAR`` (rank 1, factorised exactly), so that
    a 3x3 window of ones sums ``9 (1 + NEAR) = 2^53 + 13``: odd and above 2^53, not a float64 integer."""
    a = np.arange(2)
    t = np.outer(a, a)
    t[1, 1] += NEAR
    return t


def _ones(shape):
    return torch.ones(shape, dtype=torch.int64)


# --------------------------------------------------------------------------- low-rank exactness bound


def test_lowrank_refuses_table_entries_whose_sums_pass_2_53():
    t = _big_entry_table()
    lr = factorize(t)
    assert lr is not None and lr.rank == 1
    x, w = _ones((1, 1, 3, 3)), _ones((1, 1, 3, 3))
    assert lut_conv2d(x.numpy(), w.numpy(), t)[0, 0, 0, 0] == 9 * (1 + NEAR) == F64_EXACT + 13
    assert int(float(F64_EXACT + 13)) != F64_EXACT + 13              # what a float64 sum would have to hold
    assert not lr.exact_for(9)
    with pytest.raises(ValueError, match=r"K=9.*K x max\|T\| = 9 x 1000799917193445 = 9007199254741005 > 2\^53"):
        lowrank_conv2d(x, w, lr)
    # shorter dot products stay below 2^53, but error terms near 1e15 cannot be proven to round right either
    assert "rounding error bound" in lr.exactness_problem(8)


def test_lowrank_refuses_operand_products_whose_sums_pass_2_53():
    # exact table (rank 0) over activation codes NEAR..NEAR+1 (a_offset = -NEAR) and weights 0..1
    a = np.arange(2) + NEAR
    t = np.outer(a, np.arange(2))
    lr = factorize(t, a_offset=-NEAR)
    assert lr is not None and lr.rank == 0
    x, w = torch.full((1, 1, 3, 3), NEAR + 1), _ones((1, 1, 3, 3))
    assert lut_conv2d(x.numpy(), w.numpy(), t, a_offset=-NEAR)[0, 0, 0, 0] == 9 * (NEAR + 1)
    with pytest.raises(ValueError, match=r"K x max\|a·w\| = 9 x 1000799917193445 = 9007199254741005 > 2\^53"):
        lowrank_conv2d(x, w, lr)


def test_factorize_refuses_tables_beyond_float64_integers():
    # a 1x1 table factors "exactly" in float64 after rounding 2^60 + 1 to 2^60: it must be refused instead
    with pytest.raises(ValueError, match=r"max\|T\| = 1152921504606846977.*2\^53"):
        factorize(np.array([[2**60 + 1]]))
    with pytest.raises(ValueError, match=r"max\|a·w\|.*2\^53"):
        factorize(np.zeros((2, 2), dtype=np.int64), a_offset=-(2**30), w_offset=-(2**30))


@pytest.mark.parametrize("path", ["auto", "lowrank"])
def test_dispatcher_falls_back_to_lut_where_lowrank_is_inexact(path):
    t = _big_entry_table()
    pt = dispatch.PreparedTable(t, name="big")
    rng = np.random.default_rng(0)
    x, w = torch.from_numpy(rng.integers(0, 2, (2, 1, 6, 6))), torch.from_numpy(rng.integers(0, 2, (2, 1, 3, 3)))
    x[0, 0, :3, :3] = 1
    w[0] = 1                                                       # one window sums 2^53 + 13
    ref = reference_conv2d(x.numpy(), w.numpy(), t)
    assert ref.max() == F64_EXACT + 13
    if path == "lowrank":
        with pytest.raises(ValueError, match=r"low-rank path unavailable for big: not exact for K=9.*> 2\^53"):
            dispatch.conv2d(x, w, pt, path="lowrank")
        return
    for _ in range(2):                                             # decided, then the stored decision
        got = dispatch.conv2d(x, w, pt, path="auto")
        assert got.dtype == torch.int64 and np.array_equal(got.numpy(), ref)
    d = dispatch.decisions()
    assert d["path"].tolist() == ["lut"] and "2^53" in d["reason"][0]
    # a table whose entries float64 cannot hold falls back too, with that reason
    huge = dispatch.PreparedTable(np.array([[2**60 + 1]]), name="huge")
    zero = torch.zeros((1, 1, 1, 1), dtype=torch.int64)
    assert dispatch.conv2d(zero, zero, huge).item() == 2**60 + 1
    assert "not representable in float64" in dispatch.decisions()["reason"].iloc[-1]
    # ordinary tables keep the low-rank path for long dot products (K = 4608: 512 channels x 3x3)
    m = mul.truncated(7)
    assert factorize(m.table).error_bound(4608) < 1e-3 and dispatch.lowrank_unavailable(
        dispatch.PreparedTable(m.table), 4608) is None


# --------------------------------------------------------------------------- integer codes: dtype and range


@pytest.mark.parametrize("operand, value", [("x", -1), ("w", -1), ("x", 256)])
def test_lowrank_refuses_codes_outside_the_table(operand, value):
    m = mul.truncated(3)
    lr = factorize(m.table)
    x, w = torch.full((1, 2, 4, 4), 7), torch.full((3, 2, 3, 3), 5)
    (x if operand == "x" else w)[0, 0, 0, 0] = value
    lo = min(value, 7 if operand == "x" else 5)
    with pytest.raises(ValueError, match=rf"{operand} values must lie in \[0, 255\].*got values in \[{lo}, "):
        lowrank_conv2d(x, w, lr)


@pytest.mark.parametrize("operand", ["x", "w"])
def test_lowrank_refuses_float_codes(operand):
    lr = factorize(mul.truncated(3).table)
    x, w = torch.full((1, 2, 4, 4), 7), torch.full((3, 2, 3, 3), 5)
    if operand == "x":
        x = x.double() - 4.3                                       # 2.7 would become 2
    else:
        w = w.float() + 0.5
    with pytest.raises(ValueError, match=rf"{operand} must have an integer dtype .*floats are not truncated"):
        lowrank_conv2d(x, w, lr)


def test_lowrank_refuses_bad_stride_padding_and_groups():
    lr = factorize(mul.truncated(3).table)
    x, w = torch.full((1, 2, 4, 4), 7), torch.full((2, 2, 3, 3), 5)
    with pytest.raises(ValueError, match="stride must be >= 1, got 0"):
        lowrank_conv2d(x, w, lr, stride=0)
    with pytest.raises(ValueError, match=r"padding\[1\] must be >= 0, got -1"):   # F.pad would crop
        lowrank_conv2d(x, w, lr, padding=(0, -1))
    with pytest.raises(ValueError, match="groups=2 must divide"):
        lowrank_conv2d(x, torch.full((3, 1, 3, 3), 5), lr, groups=2)


@pytest.mark.parametrize("path", ["lut", "lowrank", "auto"])
def test_dispatcher_refuses_float_codes_on_every_path(path):
    pt = dispatch.PreparedTable(mul.truncated(3).table, name="trunc3")
    x = torch.full((1, 2, 4, 4), 2.7)
    w = torch.full((3, 2, 3, 3), 5)
    with pytest.raises(ValueError, match=r"x must have an integer dtype .*got dtype torch.float32"):
        dispatch.conv2d(x, w, pt, path=path)
    with pytest.raises(ValueError, match=r"x values must lie in \[0, 255\]"):
        dispatch.conv2d(torch.full((1, 2, 4, 4), -1), w, pt, path=path)
    with pytest.raises(ValueError, match="stride must be an integer, got 1.5"):
        dispatch.conv2d(torch.full((1, 2, 4, 4), 3), w, pt, stride=1.5, path=path)


def test_dispatcher_refuses_float_tables_and_bad_linear_shapes():
    with pytest.raises(ValueError, match="lut must have an integer dtype"):
        dispatch.PreparedTable(np.full((4, 4), 2.7))
    with pytest.raises(ValueError, match="a_offset must be an integer, got 0.5"):
        dispatch.PreparedTable(np.zeros((4, 4), dtype=np.int64), a_offset=0.5)
    pt = dispatch.PreparedTable(mul.truncated(3).table)
    with pytest.raises(ValueError, match=r"x must be 2-D, got shape \(5,\)"):
        dispatch.linear(torch.ones(5, dtype=torch.int64), torch.ones((3, 5), dtype=torch.int64), pt)


# --------------------------------------------------------------------------- early termination (SnaPEA)


def _et_case():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, size=(2, 3, 6, 6)).astype(np.float64)
    w = rng.integers(-4, 5, size=(4, 3, 3, 3)).astype(np.float64)
    return x, w, np.zeros(4)


@pytest.mark.parametrize("fn", [early_term_conv2d, reference_early_term_conv2d])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_early_term_refuses_non_finite_inputs(fn, bad):
    x, w, b = _et_case()
    x[1, 2, 3, 4] = bad
    with pytest.raises(ValueError, match=r"x must be finite; got 1 NaN/inf value\(s\).*index \(1, 2, 3, 4\)"):
        fn(x, w, b)
    x, w, b = _et_case()
    w[0, 0, 0, 0] = bad
    with pytest.raises(ValueError, match="w must be finite"):
        fn(x, w, b)


@pytest.mark.parametrize("length", [1, 5])
def test_early_term_refuses_a_bias_of_the_wrong_length(length):
    x, w, _ = _et_case()
    with pytest.raises(ValueError, match=rf"bias must have shape \(4,\), got \({length},\)"):
        early_term_conv2d(x, w, np.ones(length))


def test_early_term_refuses_bad_geometry():
    x, w, b = _et_case()
    with pytest.raises(ValueError, match="stride must be >= 1, got 0"):
        early_term_conv2d(x, w, b, stride=0)
    with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
        early_term_conv2d(x, w, b, padding=-1)
    with pytest.raises(ValueError, match=r"stride\[1\] must be an integer, got 1.5"):
        early_term_conv2d(x, w, b, stride=(1, 1.5))
    with pytest.raises(ValueError, match="kernel 7x7 is larger than the padded input 6x6"):
        early_term_conv2d(x, np.zeros((4, 3, 7, 7)), b)
    with pytest.raises(ValueError, match=r"w.shape\[1\] must be 3"):
        early_term_conv2d(x, np.zeros((4, 2, 3, 3)), b)


def test_early_term_refuses_bad_thresholds_residuals_and_group_counts():
    x, w, b = _et_case()
    with pytest.raises(ValueError, match=r"th must be a scalar or have shape \(4,\).*got shape \(3,\)"):
        early_term_conv2d(x, w, b, th=np.zeros(3))
    with pytest.raises(ValueError, match="th must be finite"):
        early_term_conv2d(x, w, b, th=np.nan)
    with pytest.raises(ValueError, match=r"residual must have shape \(2, 4, 4, 4\), got \(2, 1, 4, 4\)"):
        early_term_conv2d(x, w, b, residual=np.zeros((2, 1, 4, 4)))       # would broadcast silently
    with pytest.raises(ParameterError, match=r"n \(speculation groups\) must be integers in \[0, 27\], got 1.5"):
        early_term_conv2d(x, w, b, n=1.5)                                 # would be truncated to 1
    with pytest.raises(ParameterError, match=r"must be a scalar or have shape \(4,\)"):
        early_term_conv2d(x, w, b, n=[1, 2])
    with pytest.raises(ValueError, match=r"reordering was computed for n=\[2, 2, 2, 2\] but n=0"):
        early_term_conv2d(x, w, b, reordering=reorder(w, 2))
    out, _ = early_term_conv2d(x, w, b, n=np.full(4, 2.0), th=0.5)       # integral floats are fine
    assert np.array_equal(out, early_term_conv2d(x, w, b, n=2, th=0.5)[0])


# --------------------------------------------------------------------------- multiplication reuse, Bloom hashing


def test_window_histograms_refuses_bad_keys_values_and_geometry():
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 16, size=(1, 2, 5, 5)).astype(np.int32)
    vals = rng.random((1, 2, 5, 5)).astype(np.float32)
    bad = keys.copy()
    bad[0, 1, 2, 3] = -1                                          # numba would index counts[pos, -1]
    with pytest.raises(ValueError, match=r"keys values must lie in \[0, 15\].*got values in \[-1, "):
        window_histograms(bad, vals, 3, 3, (1, 1), 16)
    with pytest.raises(ValueError, match="keys must have an integer dtype"):
        window_histograms(keys + 0.5, vals, 3, 3, (1, 1), 16)
    nan = vals.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="vals must be finite"):
        window_histograms(keys, nan, 3, 3, (1, 1), 16)
    with pytest.raises(ValueError, match=r"vals must have shape \(1, 2, 5, 5\), got \(2, 2, 5, 5\)"):
        window_histograms(keys, np.concatenate([vals, vals]), 3, 3, (1, 1), 16)
    with pytest.raises(ValueError, match=r"stride\[1\] must be >= 1, got 0"):
        window_histograms(keys, vals, 3, 3, (1, 0), 16)
    with pytest.raises(ValueError, match=r"counts must be a int64 array of shape \(18, 16\)"):
        window_histograms(keys, vals, 3, 3, (1, 1), 16, counts=np.zeros((18, 8), dtype=np.int64))


def test_served_conv2d_refuses_non_finite_operands_and_bad_keys():
    rng = np.random.default_rng(1)
    x = rng.random((1, 2, 5, 5)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
    xk, wk = rng.integers(0, 4, x.shape), rng.integers(0, 4, w.shape)
    table = np.full((4, 4), np.nan, dtype=np.float32)
    table[1, 1] = 0.25
    out, _ = served_conv2d(x, xk, w, wk, table)
    xn = x.copy()
    xn[0, 0, 0, 0] = np.nan                                       # a served pair would add 0 * NaN = NaN
    with pytest.raises(ValueError, match="x must be finite"):
        served_conv2d(xn, xk, w, wk, table)
    with pytest.raises(ValueError, match="x_key must have an integer dtype"):
        served_conv2d(x, xk + 0.7, w, wk, table)                  # would be truncated
    neg = wk.copy()
    neg[0, 0, 0, 0] = -1                                          # would wrap to 65535
    with pytest.raises(ValueError, match=r"w_key values must lie in \[0, 3\].*got values in \[-1, "):
        served_conv2d(x, xk, w, neg, table)
    with pytest.raises(ValueError, match=r"stride\[0\] must be >= 1, got 0"):
        served_conv2d(x, xk, w, wk, table, stride=(0, 1))
    with pytest.raises(ValueError, match="table values must be finite"):
        served_conv2d(x, xk, w, wk, np.where(np.isnan(table), table, np.inf))
    assert np.isfinite(out).all()


def test_h3_tables_refuses_float_and_negative_coefficients():
    with pytest.raises(ParameterError, match="coefficients must be a 2-D integer array"):
        bloom.h3_tables(np.full((2, 8), 3.7))
    with pytest.raises(ParameterError, match=r"coefficients must lie in \[0, 2\^32\).*got \[-1, "):
        bloom.h3_tables(np.full((2, 8), -1))
