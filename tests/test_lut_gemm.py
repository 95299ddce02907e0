"""LUT GEMM / conv kernels: bit-exact against the NumPy reference, exact tables against integer matmul / torch conv2d."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from axlib.kernels import lut_conv2d, lut_gemm, reference_conv2d, reference_gemm

_RNG = np.random.default_rng(20240611)
#: random unsigned table (offset 0, operands 0..255)
LUT_U = _RNG.integers(0, 2**16, size=(256, 256)).astype(np.uint16)
#: random signed table in offset form (offsets 128, operands -128..127)
LUT_S = _RNG.integers(-(2**15), 2**15, size=(256, 256)).astype(np.int16)
#: exact products
EXACT_U = np.outer(np.arange(256), np.arange(256))
EXACT_S = np.outer(np.arange(-128, 128), np.arange(-128, 128))

# (lut, offset, lo, hi, operand dtype)
CASES = {
    "unsigned": (LUT_U, 0, 0, 255, np.uint8),
    "signed": (LUT_S, 128, -128, 127, np.int8),
}

SETTINGS = settings(max_examples=25, deadline=None)


def _operands(draw, shape, kind):
    _, _, lo, hi, dtype = CASES[kind]
    return draw(hnp.arrays(dtype, shape, elements=st.integers(lo, hi)))


@st.composite
def gemm_inputs(draw, kind):
    m, k, n = draw(st.integers(1, 9)), draw(st.integers(1, 40)), draw(st.integers(1, 17))
    return _operands(draw, (m, k), kind), _operands(draw, (k, n), kind)


@st.composite
def conv_inputs(draw, kind):
    groups = draw(st.sampled_from([1, 2, 3]))
    cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    h = draw(st.integers(max(1, kh - 2 * padding[0]), 7))
    w = draw(st.integers(max(1, kw - 2 * padding[1]), 7))
    n = draw(st.integers(1, 2))
    x = _operands(draw, (n, groups * cg, h, w), kind)
    wt = _operands(draw, (groups * og, cg, kh, kw), kind)
    return x, wt, stride, padding, groups


# --------------------------------------------------------------------------- bit-exact vs reference


@pytest.mark.parametrize("kind", list(CASES))
def test_gemm_matches_reference(kind):
    lut, off, *_ = CASES[kind]

    @SETTINGS
    @given(gemm_inputs(kind))
    def check(ops):
        a, w = ops
        got = lut_gemm(a, w, lut, off, off)
        assert got.dtype == np.int64 and got.shape == (a.shape[0], w.shape[1])
        assert np.array_equal(got, reference_gemm(a, w, lut, off, off))

    check()


@pytest.mark.parametrize("kind", list(CASES))
def test_conv_matches_reference(kind):
    lut, off, *_ = CASES[kind]

    @SETTINGS
    @given(conv_inputs(kind))
    def check(ops):
        x, w, stride, padding, groups = ops
        got = lut_conv2d(x, w, lut, stride=stride, padding=padding, groups=groups, a_offset=off, w_offset=off)
        want = reference_conv2d(x, w, lut, stride=stride, padding=padding, groups=groups, a_offset=off, w_offset=off)
        assert got.dtype == np.int64 and got.shape == want.shape
        assert np.array_equal(got, want)

    check()


@pytest.mark.parametrize("kind, value", [("unsigned", 0), ("unsigned", 255), ("signed", -128), ("signed", 127), ("signed", 0)])
def test_edge_values(kind, value):
    lut, off, _, _, dtype = CASES[kind]
    a = np.full((3, 21), value, dtype=dtype)
    w = np.full((21, 4), value, dtype=dtype)
    expected = np.full((3, 4), 21 * int(lut[value + off, value + off]), dtype=np.int64)
    assert np.array_equal(reference_gemm(a, w, lut, off, off), expected)
    assert np.array_equal(lut_gemm(a, w, lut, off, off), expected)
    x = np.full((1, 2, 4, 4), value, dtype=dtype)
    wc = np.full((2, 2, 3, 3), value, dtype=dtype)
    got = lut_conv2d(x, wc, lut, padding=1, a_offset=off, w_offset=off)
    assert np.array_equal(got, reference_conv2d(x, wc, lut, padding=1, a_offset=off, w_offset=off))
    # centre taps see no padding: 18 products of value*value; corners see 4 real taps and 5 padded (operand 0)
    assert got[0, 0, 1, 1] == 18 * int(lut[value + off, value + off])
    assert got[0, 0, 0, 0] == 2 * (4 * int(lut[value + off, value + off]) + 5 * int(lut[off, value + off]))


def test_extreme_operand_pairs_signed():
    """All four corners of the signed table in one GEMM."""
    a = np.array([[-128, 127], [127, -128]], dtype=np.int8)
    w = np.array([[-128, 127], [127, -128]], dtype=np.int8)
    want = reference_gemm(a, w, LUT_S, 128, 128)
    assert want[0, 0] == int(LUT_S[0, 0]) + int(LUT_S[255, 255])
    assert want[0, 1] == int(LUT_S[0, 255]) + int(LUT_S[255, 0])
    assert np.array_equal(lut_gemm(a, w, LUT_S, 128, 128), want)


# --------------------------------------------------------------------------- exact tables vs integer arithmetic


@SETTINGS
@given(gemm_inputs("unsigned"))
def test_exact_unsigned_table_is_matmul(ops):
    a, w = ops
    assert np.array_equal(lut_gemm(a, w, EXACT_U), a.astype(np.int64) @ w.astype(np.int64))


@SETTINGS
@given(gemm_inputs("signed"))
def test_exact_signed_table_is_matmul(ops):
    a, w = ops
    assert np.array_equal(lut_gemm(a, w, EXACT_S, 128, 128), a.astype(np.int64) @ w.astype(np.int64))


def _torch_conv(x, w, stride, padding, groups):
    torch = pytest.importorskip("torch")
    out = torch.nn.functional.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                                     stride=stride, padding=padding, groups=groups)
    return out.numpy()


@pytest.mark.parametrize("kind", list(CASES))
@pytest.mark.parametrize("stride, padding, groups",
                         [(1, 0, 1), (2, 1, 1), (1, 1, 2), (2, 1, 2), ((2, 1), (0, 1), 1), (1, 1, "dw"), (2, 1, "dw")])
def test_exact_table_conv_matches_torch(kind, stride, padding, groups):
    _, off, lo, hi, dtype = CASES[kind]
    lut = EXACT_U if kind == "unsigned" else EXACT_S
    rng = np.random.default_rng(7)
    c = 4
    if groups == "dw":  # depthwise: groups == C == O
        groups, o, cg = c, c, 1
    else:
        o, cg = 6, c // groups
    x = rng.integers(lo, hi + 1, size=(2, c, 7, 6)).astype(dtype)
    w = rng.integers(lo, hi + 1, size=(o, cg, 3, 3)).astype(dtype)
    x[0, 0, 0, :] = hi  # make sure the extremes occur
    w[0, 0, 0, 0] = lo
    got = lut_conv2d(x, w, lut, stride=stride, padding=padding, groups=groups, a_offset=off, w_offset=off)
    want = _torch_conv(x, w, stride, padding, groups)
    assert got.shape == want.shape
    assert np.array_equal(got, want.astype(np.int64))
    assert np.array_equal(got, reference_conv2d(x, w, lut, stride=stride, padding=padding, groups=groups,
                                                a_offset=off, w_offset=off))


def test_large_k_no_overflow():
    k = 576
    a = np.full((3, k), 255, dtype=np.uint8)
    w = np.full((k, 5), 255, dtype=np.uint8)
    got = lut_gemm(a, w, EXACT_U)
    assert got.dtype == np.int64
    assert np.all(got == 576 * 255 * 255)
    assert np.array_equal(got, reference_gemm(a, w, EXACT_U))
    # the same through a convolution: 64 channels x 3x3 = 576 taps per output
    x = np.full((1, 64, 3, 3), 255, dtype=np.uint8)
    wc = np.full((2, 64, 3, 3), 255, dtype=np.uint8)
    assert np.all(lut_conv2d(x, wc, EXACT_U) == 576 * 255 * 255)


def test_large_table_values_no_overflow():
    """int32-sized table entries summed over K would overflow int32; the int64 accumulator must not."""
    lut = np.full((256, 256), 2**31 - 1, dtype=np.int64)
    a = np.zeros((2, 8), dtype=np.uint8)
    w = np.zeros((8, 3), dtype=np.uint8)
    assert np.all(lut_gemm(a, w, lut) == 8 * (2**31 - 1))
    lut = np.full((256, 256), 2**40, dtype=np.int64)  # needs the int64 table path
    assert np.all(lut_gemm(a, w, lut) == 8 * 2**40)


def test_non_contiguous_and_wide_dtypes():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, size=(10, 30)).astype(np.int64)[::2, ::3]
    w = np.asfortranarray(rng.integers(0, 256, size=(10, 7)).astype(np.int32))
    assert np.array_equal(lut_gemm(a, w, LUT_U), reference_gemm(a, w, LUT_U))


def test_batch_chunking(monkeypatch):
    mod = importlib.import_module("axlib.kernels.lut_gemm")  # the package attribute of that name is the function

    monkeypatch.setattr(mod, "IM2COL_BUDGET_BYTES", 1)  # one image per chunk
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, size=(3, 2, 5, 5))
    w = rng.integers(0, 256, size=(4, 2, 3, 3))
    assert np.array_equal(lut_conv2d(x, w, LUT_U, padding=1), reference_conv2d(x, w, LUT_U, padding=1))


# --------------------------------------------------------------------------- invalid inputs


@pytest.mark.parametrize("fn", [lut_gemm, reference_gemm])
def test_gemm_invalid_inputs(fn):
    a = np.zeros((2, 3), dtype=np.uint8)
    w = np.zeros((3, 4), dtype=np.uint8)
    with pytest.raises(ValueError, match="integer dtype"):
        fn(a.astype(np.float32), w, LUT_U)
    with pytest.raises(ValueError, match="integer dtype"):
        fn(a, w, LUT_U.astype(np.float64))
    with pytest.raises(ValueError, match="shape mismatch"):
        fn(a, np.zeros((4, 4), dtype=np.uint8), LUT_U)
    with pytest.raises(ValueError, match="2-D"):
        fn(a[0], w, LUT_U)
    with pytest.raises(ValueError, match="must lie in"):
        fn(np.full((2, 3), 256), w, LUT_U)
    with pytest.raises(ValueError, match="must lie in"):
        fn(a, np.full((3, 4), -1), LUT_U)
    with pytest.raises(ValueError, match="must lie in"):  # signed operand without offset
        fn(np.full((2, 3), -128), w, LUT_S)
    with pytest.raises(ValueError, match="must lie in"):  # 128 is outside a signed 8-bit table
        fn(np.full((2, 3), 128), w, LUT_S, 128, 128)
    with pytest.raises(ValueError, match="a_offset"):
        fn(a, w, LUT_U, a_offset=0.5)


@pytest.mark.parametrize("fn", [lut_conv2d, reference_conv2d])
def test_conv_invalid_inputs(fn):
    x = np.zeros((1, 4, 5, 5), dtype=np.uint8)
    w = np.zeros((2, 4, 3, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="integer dtype"):
        fn(x.astype(np.float64), w, LUT_U)
    with pytest.raises(ValueError, match="shape mismatch"):
        fn(x, w, LUT_U, groups=2)
    with pytest.raises(ValueError, match="groups"):
        fn(x, np.zeros((3, 4, 3, 3), dtype=np.uint8), LUT_U, groups=2)
    with pytest.raises(ValueError, match="4-D"):
        fn(x[0], w, LUT_U)
    with pytest.raises(ValueError, match="larger than the padded input"):
        fn(x, np.zeros((2, 4, 7, 7), dtype=np.uint8), LUT_U)
    with pytest.raises(ValueError, match="stride"):
        fn(x, w, LUT_U, stride=0)
    with pytest.raises(ValueError, match="padding"):
        fn(x, w, LUT_U, padding=-1)
    with pytest.raises(ValueError, match="must lie in"):
        fn(np.full((1, 4, 5, 5), 300), w, LUT_U)
    with pytest.raises(ValueError, match="padding value"):  # operand 0 is not in a table that starts at 1
        fn(np.ones((1, 4, 5, 5), dtype=np.uint8), w, LUT_U, padding=1, a_offset=-1)


@pytest.mark.parametrize("over", [False, True])
def test_int32_accumulator_boundary(over, monkeypatch):
    """Tables whose K-term sums sit just inside / just outside int32 use the int32 / int64 kernel; both exact."""
    mod = importlib.import_module("axlib.kernels.lut_gemm")
    k = 37
    top = (2**31 - 1) // k + (1 if over else 0)
    lut = np.full((256, 256), top, dtype=np.int64)
    lut[0, 0] = -top
    rng = np.random.default_rng(5)
    a = rng.integers(1, 256, size=(9, k))
    a[:, 0] = 255
    w = rng.integers(1, 256, size=(k, 5))
    used = []
    for name in ("_grouped_lut_gemm", "_grouped_lut_gemm_i32x4"):
        fn = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *args, fn=fn, name=name: (used.append(name), fn(*args))[1])
    got = lut_gemm(a, w, lut)
    assert np.array_equal(got, reference_gemm(a, w, lut))
    assert got.max() == k * top
    assert used == (["_grouped_lut_gemm"] if over else ["_grouped_lut_gemm_i32x4"])


# --------------------------------------------------------------------------- expanded-table kernel


def _expanded_module():
    return importlib.import_module("axlib.kernels.expanded")


def _spy_expanded(monkeypatch) -> list:
    """Record every call of the expanded-table convolution (so a test knows which kernel served it)."""
    mod = _expanded_module()
    calls = []
    real = mod.expanded_conv
    monkeypatch.setattr(mod, "expanded_conv", lambda *a, **k: (calls.append(a[2].dtype), real(*a, **k))[1])
    return calls


@pytest.mark.parametrize("kind", list(CASES))
def test_expanded_conv_matches_reference(kind, monkeypatch):
    """Every hypothesis conv case (groups, strides, paddings, 1-3 channels) through the expanded kernel."""
    lut, off, *_ = CASES[kind]
    calls = _spy_expanded(monkeypatch)

    @SETTINGS
    @given(conv_inputs(kind))
    def check(ops):
        x, w, stride, padding, groups = ops
        got = lut_conv2d(x, w, lut, stride=stride, padding=padding, groups=groups, a_offset=off, w_offset=off,
                         kernel="expanded")
        assert np.array_equal(got, reference_conv2d(x, w, lut, stride=stride, padding=padding, groups=groups,
                                                    a_offset=off, w_offset=off))

    check()
    assert calls and all(dt == (np.uint16 if kind == "unsigned" else np.int16) for dt in calls)


@pytest.mark.parametrize("out_channels", [8, 16, 17, 32, 48, 50, 64, 65, 130])
@pytest.mark.parametrize("kind", list(CASES))
def test_expanded_conv_widths(out_channels, kind, monkeypatch):
    """CNN-sized layers on the default dispatch: every channel-block width and padded last block."""
    lut, off, lo, hi, dtype = CASES[kind]
    calls = _spy_expanded(monkeypatch)
    rng = np.random.default_rng(out_channels)
    x = rng.integers(lo, hi + 1, size=(3, 5, 7, 6)).astype(dtype)
    w = rng.integers(lo, hi + 1, size=(out_channels, 5, 3, 3)).astype(dtype)
    for stride, padding in ((1, 1), (2, 0), ((2, 1), (0, 2))):
        got = lut_conv2d(x, w, lut, stride=stride, padding=padding, a_offset=off, w_offset=off)
        assert np.array_equal(got, reference_conv2d(x, w, lut, stride=stride, padding=padding, a_offset=off,
                                                    w_offset=off))
    assert len(calls) == 3


def test_expanded_conv_groups_and_extremes():
    rng = np.random.default_rng(11)
    x = rng.integers(-128, 128, size=(2, 6, 5, 5)).astype(np.int8)
    w = rng.integers(-128, 128, size=(24, 3, 3, 3)).astype(np.int8)
    x[0, :, 0, :] = -128
    x[1, :, :, 0] = 127
    w[:, :, 0, 0] = -128
    got = lut_conv2d(x, w, LUT_S, padding=1, groups=2, a_offset=128, w_offset=128)
    assert np.array_equal(got, reference_conv2d(x, w, LUT_S, padding=1, groups=2, a_offset=128, w_offset=128))
    exact = lut_conv2d(x, w, EXACT_S.astype(np.int32), padding=1, groups=2, a_offset=128, w_offset=128)
    assert np.array_equal(exact, _torch_conv(x, w, 1, 1, 2).astype(np.int64))


def test_expanded_conv_chunks_tiles_and_int32_tables(monkeypatch):
    """Tap chunks of E (budget 1 byte: one tap per chunk), one-tap tiles, one image per chunk, int32 entries whose tile length
    is limited by int32 overflow, and a 300-row table (uint16 activation indices)."""
    mod = _expanded_module()
    rng = np.random.default_rng(12)
    x = rng.integers(0, 256, size=(2, 4, 6, 6))
    w = rng.integers(0, 256, size=(20, 4, 3, 3))
    want = reference_conv2d(x, w, LUT_U, padding=1)
    monkeypatch.setattr(mod, "BUDGET_BYTES", 1)
    assert np.array_equal(lut_conv2d(x, w, LUT_U, padding=1), want)
    monkeypatch.setattr(mod, "TILE_BYTES", 1)
    assert np.array_equal(lut_conv2d(x, w, LUT_U, padding=1), want)
    monkeypatch.setattr(mod, "RESULT_BUDGET_BYTES", 1)          # and one image per chunk
    assert np.array_equal(lut_conv2d(x, w, LUT_U, padding=1), want)
    monkeypatch.setattr(mod, "BUDGET_BYTES", 2**30)             # whole E, images in chunks
    assert np.array_equal(lut_conv2d(x, w, LUT_U, padding=1), want)
    monkeypatch.undo()
    big = np.full((256, 256), (2**31 - 1) // 5, dtype=np.int64)
    big[::3] = -(2**31 - 1) // 5
    assert mod.narrow_table(big).dtype == np.int32
    got = lut_conv2d(x, w, big, padding=1)  # 36 taps, at most 5 per int32 tile
    assert np.array_equal(got, reference_conv2d(x, w, big, padding=1))
    assert np.abs(got).max() > 2**31
    tall = rng.integers(-1000, 1000, size=(300, 256))
    xt = rng.integers(0, 300, size=(2, 4, 6, 6))
    assert np.array_equal(lut_conv2d(xt, w, tall, padding=1, a_offset=0), reference_conv2d(xt, w, tall, padding=1))


def test_expanded_block_width():
    mod = _expanded_module()
    assert [mod.block_width(n) for n in (8, 16, 17, 32, 48, 50, 64, 100, 128)] == [16, 16, 32, 32, 16, 64, 64, 16, 64]
    assert mod.narrow_table(np.array([[0, 65535]])).dtype == np.uint16
    assert mod.narrow_table(np.array([[-1, 32767]])).dtype == np.int16
    assert mod.narrow_table(np.array([[0, 2**40]])) is None


def test_kernel_choice(monkeypatch):
    """``kernel=`` picks the kernel (same result); bad choices and unfit tables are refused before any work."""
    calls = _spy_expanded(monkeypatch)
    rng = np.random.default_rng(13)
    x = rng.integers(0, 256, size=(2, 3, 5, 5))
    w = rng.integers(0, 256, size=(16, 3, 3, 3))
    want = reference_conv2d(x, w, LUT_U, padding=1)
    for kernel in ("auto", "expanded", "gather"):
        assert np.array_equal(lut_conv2d(x, w, LUT_U, padding=1, kernel=kernel), want)
    assert len(calls) == 2
    a, wg = rng.integers(0, 256, size=(7, 30)), rng.integers(0, 256, size=(30, 3))
    assert np.array_equal(lut_gemm(a, wg, LUT_U, kernel="expanded"), reference_gemm(a, wg, LUT_U))
    assert len(calls) == 3
    with pytest.raises(ValueError, match="kernel"):
        lut_conv2d(x, w, LUT_U, kernel="fast")
    with pytest.raises(ValueError, match="kernel"):
        lut_gemm(a[:0], wg, LUT_U, kernel="fast")
    with pytest.raises(ValueError, match="expanded-table kernel needs"):
        lut_conv2d(x, w, np.full((256, 256), 2**40), kernel="expanded")


def test_expanded_cache_reuses_only_identical_weights_and_tables(monkeypatch):
    """A repeated call reuses the expanded table; one changed weight or table entry expands anew
    (and the result follows the change); the cache stays within its byte budget."""
    mod = _expanded_module()
    mod.clear_cache()
    rng = np.random.default_rng(14)
    x = rng.integers(0, 256, size=(2, 3, 6, 6))
    w = rng.integers(0, 256, size=(16, 3, 3, 3))
    lut = LUT_U.copy()
    first = lut_conv2d(x, w, lut, padding=1)
    assert np.array_equal(lut_conv2d(x, w, lut, padding=1), first)
    assert mod.cache_info()["hits"] == 1 and mod.cache_info()["misses"] == 1
    w2 = w.copy()
    w2[5, 1, 2, 0] = (w2[5, 1, 2, 0] + 1) % 256
    assert np.array_equal(lut_conv2d(x, w2, lut, padding=1), reference_conv2d(x, w2, lut, padding=1))
    lut[x[0, 0, 0, 0], w[0, 0, 1, 1]] += 1                  # a product the output uses
    assert np.array_equal(lut_conv2d(x, w, lut, padding=1), reference_conv2d(x, w, lut, padding=1))
    assert mod.cache_info()["misses"] == 3 and mod.cache_info()["entries"] == 3
    one = mod.cache_info()["bytes"] // 3
    monkeypatch.setattr(mod, "CACHE_BYTES", 2 * one)
    lut_conv2d(x, (w + 1) % 256, LUT_U, padding=1)           # a fourth layer: the oldest two go
    assert mod.cache_info()["entries"] == 2 and mod.cache_info()["bytes"] <= 2 * one
    mod.clear_cache()
    assert mod.cache_info() == {"entries": 0, "bytes": 0, "hits": 0, "misses": 0}
