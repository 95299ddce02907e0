"""Image kernels on explicit FUs (akhlaghi2020 §2.4): exact kernels vs scipy/scikit-image, the FU hook (error
injection at the requested rate, Bloom-filter serving, profiling), determinism, parameter checks, and the
fu_approx methods (three-step rate search, pattern selection, BF sizing, energy bookkeeping)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import skimage.filters
from scipy import ndimage

from axlib import imaging
from axlib.imaging import KERNELS, MASKS, SCALE, Datapath
from axlib.kernels import bloom
from axlib.methods import fu_approx as fa
from axlib.validate import ParameterError


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    smooth = ndimage.uniform_filter(rng.integers(0, 256, (3, 40, 44)).astype(float), size=(1, 5, 5))
    return np.concatenate([rng.integers(0, 256, (2, 40, 44), dtype=np.uint8), smooth.astype(np.uint8)])


@pytest.fixture(scope="module")
def dataset():
    return imaging.make_dataset(tile=64, max_tiles=4, seed=3)


def _interior(name, a):
    return a[..., :-1, :-1] if name == "Roberts" else a[..., 1:-1, 1:-1]


# --------------------------------------------------------------------------- exact kernels


@pytest.mark.parametrize("name", ["Sobel", "Prewitt", "Scharr", "Roberts"])
def test_gradient_kernels_match_scipy_and_skimage(images, name):
    gx_mask, gy_mask = MASKS[name]
    x = images.astype(np.float64)
    gx = np.stack([ndimage.correlate(i, gx_mask.astype(float), mode="constant", origin=0) for i in x])
    gy = np.stack([ndimage.correlate(i, gy_mask.astype(float), mode="constant", origin=0) for i in x])
    if name == "Roberts":  # a 2x2 mask is anchored at its (1, 1) element by scipy: shift to our top-left anchor
        gx = np.stack([ndimage.correlate(i, gx_mask.astype(float), mode="constant", origin=-1) for i in x])
        gy = np.stack([ndimage.correlate(i, gy_mask.astype(float), mode="constant", origin=-1) for i in x])
    want = np.hypot(_interior(name, gx), _interior(name, gy)) * SCALE[name]
    got = imaging.kernel_float(name, images)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)
    # scikit-image normalises the masks and divides by sqrt(2): the ratio is a constant
    sk = np.stack([getattr(skimage.filters, name.lower())(i) for i in x])
    norm = {"Sobel": 4, "Prewitt": 3, "Scharr": 16, "Roberts": 1}[name] * math.sqrt(2) * SCALE[name]
    np.testing.assert_allclose(got, _interior(name, sk) * norm, rtol=1e-5, atol=1e-3)
    # uint8 output: truncation + saturation of the float result
    u8 = imaging.run_kernel(name, images)
    assert u8.dtype == np.uint8 and u8.shape == got.shape
    assert np.abs(u8.astype(int) - np.clip(np.trunc(want), 0, 255)).max() <= 1


def test_sharpen_matches_scipy_exactly(images):
    want = np.stack([ndimage.correlate(i.astype(np.int64), MASKS["Sharpen"][0], mode="constant") for i in images])
    got = imaging.kernel_float("Sharpen", images)
    np.testing.assert_array_equal(got, _interior("Sharpen", want).astype(np.float32))
    np.testing.assert_array_equal(imaging.run_kernel("Sharpen", images), np.clip(_interior("Sharpen", want), 0, 255))


def test_plain_loop_reference_sobel():
    """The AMD SDK Sobel written pixel by pixel in float32, same operation order."""
    x = np.random.default_rng(1).integers(0, 256, (9, 11), dtype=np.uint8).astype(np.float32)
    out = np.zeros((7, 9), np.float32)
    for r in range(7):
        for c in range(9):
            p = x[r:r + 3, c:c + 3]
            gx = np.float32(p[0, 2] - p[0, 0]) + np.float32(2) * p[1, 2] - np.float32(2) * p[1, 0] + p[2, 2] - p[2, 0]
            gy = np.float32(p[2, 0] - p[0, 0]) + np.float32(2) * p[2, 1] - np.float32(2) * p[0, 1] + p[2, 2] - p[0, 2]
            out[r, c] = np.sqrt(np.float32(gx * gx + gy * gy)) * np.float32(0.5)
    np.testing.assert_allclose(imaging.kernel_float("Sobel", x.astype(np.uint8))[0], out, rtol=1e-6)


def test_op_counts_follow_the_kernel_structure():
    assert imaging.op_counts("Sobel") == {"ADD": 6, "MUL": 2, "MAC": 5, "SQRT": 1}
    assert imaging.op_counts("Roberts") == {"MUL": 4, "MAC": 3, "SQRT": 1}
    assert imaging.op_counts("Prewitt") == imaging.op_counts("Scharr") == {"MUL": 4, "MAC": 11, "SQRT": 1}
    assert imaging.op_counts("Sharpen") == {"MUL": 1, "MAC": 4}
    for k in KERNELS:
        assert tuple(imaging.op_counts(k)) == tuple(op for op in imaging.FU_OPS if op in imaging.KERNEL_UNITS[k])


def test_two_dimensional_input_and_psnr():
    img = np.random.default_rng(2).integers(0, 256, (10, 12), dtype=np.uint8)
    assert imaging.run_kernel("Prewitt", img).shape == (1, 8, 10)
    a = np.zeros((2, 4, 4), np.uint8)
    b = a.copy()
    b[1, 0, 0] = 16  # MSE = 256 / 16 = 16
    np.testing.assert_allclose(imaging.psnr(a, b), [100.0, 10 * np.log10(255**2 / 16)])
    assert imaging.pooled_psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 8))


# --------------------------------------------------------------------------- the FU hook


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("mode", imaging.ERROR_MODES)
def test_zero_error_rate_is_exact(images, name, mode):
    ranges = imaging.output_ranges(name, images)
    dp = Datapath({op: 0.0 for op in imaging.KERNEL_UNITS[name]}, mode, ranges, seed=5)
    np.testing.assert_array_equal(imaging.run_kernel(name, images, dp), imaging.run_kernel(name, images))
    assert all(s.injected == 0 for s in dp.stats.values())


@pytest.mark.parametrize("mode", imaging.ERROR_MODES)
@pytest.mark.parametrize("rate", [0.003, 0.05])
def test_injected_rate_matches_request(images, mode, rate):
    ranges = imaging.output_ranges("Prewitt", images)
    dp = Datapath({"MAC": rate, "MUL": rate / 2}, mode, ranges, seed=11)
    out = imaging.run_kernel("Prewitt", images, dp)
    for op, r in (("MAC", rate), ("MUL", rate / 2)):
        n, k = dp.stats[op].calls, dp.stats[op].injected
        assert abs(k - n * r) <= 5 * math.sqrt(n * r * (1 - r)), (op, k, n * r)
    assert dp.stats["SQRT"].injected == 0
    assert (out != imaging.run_kernel("Prewitt", images)).any()


def test_max_mode_hits_the_far_end_of_the_range():
    dp = Datapath({"ADD": 1.0}, "max", {"ADD": (-10.0, 100.0)})
    out = dp.add(np.array([0.0, 50.0, 60.0, -5.0], np.float32), np.float32(0))
    np.testing.assert_array_equal(out, [100.0, -10.0, -10.0, 100.0])
    dp = Datapath({"ADD": 1.0}, "uniform", {"ADD": (-10.0, 100.0)})
    out = dp.add(np.zeros(1000, np.float32), np.float32(0))
    assert out.min() >= -10 and out.max() <= 100 and out.std() > 20
    dp = Datapath({"MUL": 1.0}, "bitflip")
    x = np.full(64, 3.0, np.float32)
    flipped = dp.mul(x, np.float32(1)).view(np.uint32) ^ x.view(np.uint32)
    assert (np.bitwise_count(flipped) == 1).all()


def test_injection_is_deterministic_with_seed(images):
    ranges = imaging.output_ranges("Sobel", images)
    rates = {"ADD": 0.01, "MUL": 0.01, "MAC": 0.01, "SQRT": 0.01}
    a = imaging.run_kernel("Sobel", images, Datapath(rates, "uniform", ranges, seed=7))
    b = imaging.run_kernel("Sobel", images, Datapath(rates, "uniform", ranges, seed=7))
    c = imaging.run_kernel("Sobel", images, Datapath(rates, "uniform", ranges, seed=8))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_profile_records_every_execution(images):
    dp = Datapath(profile=True)
    y = imaging.kernel_float("Roberts", images, dp)
    for op, per_pixel in imaging.op_counts("Roberts").items():
        keys, outs = dp.profile_arrays(op)
        assert keys.dtype == np.uint64 and keys.size == outs.size == per_pixel * y.size
    _, outs = dp.profile_arrays("SQRT")  # the magnitudes, which the final MUL scales into the output
    np.testing.assert_allclose(np.sort(outs * np.float32(SCALE["Roberts"])), np.sort(y.ravel()), rtol=1e-6)


def test_fu_keys_distinguish_patterns():
    a = np.arange(-300, 300, dtype=np.float32)
    pairs = imaging.fu_keys(a[:, None], a[None, :]).ravel()
    assert np.unique(pairs).size == a.size**2
    assert imaging.fu_keys(np.float32(1), np.float32(2)) != imaging.fu_keys(np.float32(2), np.float32(1))
    assert imaging.fu_keys(np.float32(0.0)) != imaging.fu_keys(np.float32(-0.0))
    assert imaging.fu_keys(np.float32(0), np.float32(0)) != 0  # H3 sends key 0 to address 0 in every hash
    triples = imaging.fu_keys(a[:, None, None], a[None, :40, None], a[None, None, :40]).ravel()
    assert np.unique(triples).size == triples.size


def test_bloom_unit_without_false_positives_is_exact_on_profiled_inputs(images):
    prof = fa.profile_kernel("Sobel", images)
    units = {}
    for op, p in prof.items():
        stored = fa.select_patterns(p, 8, 32)
        units[op] = fa.build_unit(stored, 2**16, 4, seed=1)  # fp ~ 1e-11 per key: no false positives
    dp = Datapath(units=units)
    np.testing.assert_array_equal(imaging.kernel_float("Sobel", images, dp), imaging.kernel_float("Sobel", images))
    assert all(dp.stats[op].hits > 0 for op in units) and all(dp.stats[op].wrong == 0 for op in units)
    # a unit holding every profiled pattern of a FU serves all its executions
    p = prof["SQRT"]
    full = fa.build_unit(p.assign(bf=np.arange(len(p))), 2**12, 4, seed=2)
    dp = Datapath(units={"SQRT": full})
    np.testing.assert_array_equal(imaging.kernel_float("Sobel", images, dp), imaging.kernel_float("Sobel", images))
    assert dp.stats["SQRT"].hits == dp.stats["SQRT"].calls


def test_bloom_unit_false_hits_are_counted_as_wrong(images):
    p = fa.profile_kernel("Sharpen", images)["MAC"]
    stored = fa.select_patterns(p, 4, 8)
    tiny = fa.build_unit(stored, 8, 1, seed=0)  # 8-bit vectors: many false hits
    dp = Datapath(units={"MAC": tiny})
    imaging.run_kernel("Sharpen", images, dp)
    st = dp.stats["MAC"]
    assert st.hits > 0 and 0 < st.wrong <= st.hits
    m = fa.measure_unit(tiny, stored, p)
    assert m["hit_rate"] >= m["true_hit_rate"] and m["false_hit_rate"] > 0 and m["error_rate"] > 0


# --------------------------------------------------------------------------- dataset


def test_dataset_split_is_seeded_and_in_proportion(dataset):
    again = imaging.make_dataset(tile=64, max_tiles=4, seed=3)
    np.testing.assert_array_equal(dataset.tiles, again.tiles)
    pd.testing.assert_frame_equal(dataset.table, again.table)
    other = imaging.make_dataset(tile=64, max_tiles=4, seed=4)
    assert not dataset.table["split"].equals(other.table["split"])
    n = len(dataset.table)
    c = dataset.counts().set_index("split")["tiles"]
    assert c["profile"] == round(0.1 * n) and c["tune"] == round(0.3 * n) and c.sum() == n
    assert dataset.tiles.dtype == np.uint8 and dataset.tiles.shape[1:] == (64, 64)
    by_image = imaging.make_dataset(tile=64, max_tiles=4, seed=3, split_by="image")
    assert (by_image.table.groupby("image")["split"].nunique() == 1).all()


def test_images_are_grayscale_uint8():
    imgs = imaging.load_images(["astronaut", "camera", "stereo_motorcycle"])
    assert all(i.dtype == np.uint8 and i.ndim == 2 for i in imgs.values())


# --------------------------------------------------------------------------- parameter errors


def test_parameter_errors(images):
    with pytest.raises(ParameterError, match="kernel"):
        imaging.run_kernel("Canny", images)
    with pytest.raises(ParameterError, match="error_rates"):
        Datapath({"MAC": 1.5})
    with pytest.raises(ParameterError, match="FU"):
        Datapath({"DIV": 0.1})
    with pytest.raises(ParameterError, match="error_mode"):
        Datapath(error_mode="stuck")
    with pytest.raises(ParameterError, match="range"):
        Datapath({"MAC": 0.1}, "max")
    with pytest.raises(ParameterError, match="images"):
        imaging.run_kernel("Sobel", images.astype(np.float32))
    with pytest.raises(ParameterError, match="fractions"):
        imaging.make_dataset(fractions=(0.6, 0.5))
    with pytest.raises(ParameterError, match="split_by"):
        imaging.make_dataset(split_by="pixel")
    with pytest.raises(ParameterError, match="images"):
        imaging.load_images(["lena"])
    with pytest.raises(ParameterError, match="tile"):
        imaging.make_dataset(tile=4)
    with pytest.raises(ParameterError, match="psnr_min"):
        fa.tolerable_rates("Sobel", images, {}, psnr_min=-1)
    with pytest.raises(ParameterError, match="n_in"):
        fa.select_patterns(fa.profile_kernel("Sharpen", images)["MUL"], 4, 2)
    with pytest.raises(ParameterError, match="limits"):
        fa.bf_profile(["Sobel"], fa.dataset_params(), {"Sobel": {"ADD": 1e-3}})
    with pytest.raises(ParameterError, match="kernels"):
        fa.table_2_1(["Laplace"], fa.dataset_params())
    with pytest.raises(ParameterError, match="m="):
        fa.lookup_energy_pj("Sobel", "MUL", 2, 4096, "rbv")


# --------------------------------------------------------------------------- fu_approx methods


def test_three_step_search(images):
    ranges = imaging.output_ranges("Sobel", images)
    res = fa.tolerable_rates("Sobel", images, ranges, psnr_min=25.0, max_exponent=6, seed=1)
    tr = pd.DataFrame(res["trace"])
    assert res["order"] == fa.fu_frequency("Sobel") == ["ADD", "MAC", "MUL", "SQRT"]
    for op in res["order"]:  # step 1 tries 0.1, 0.01, ... and stops at the first acceptable rate
        s = tr[(tr.step == 1) & (tr.fu == op)]
        np.testing.assert_allclose(s[f"rate_{op}"], 10.0 ** -np.arange(1, len(s) + 1))
        assert not s["ok"].iloc[:-1].any()
    assert (tr.step == 2).sum() == 1
    assert res["met"] == bool(tr["ok"].iloc[-1])
    if res["met"]:
        assert tr["psnr_mean"].iloc[-1] >= 25.0
    again = fa.tolerable_rates("Sobel", images, ranges, psnr_min=25.0, max_exponent=6, seed=1)
    assert again["rates"] == res["rates"]


def test_select_patterns_rules(images):
    p = fa.profile_kernel("Sobel", images)["MAC"]
    s = fa.select_patterns(p, 3, 10)
    of = fa.output_frequencies(p)
    assert list(s.groupby("bf")["output"].first()) == list(of["output"][:3])
    assert len(s) == min(10, int(of["inputs"][:3].sum())) and s["bf"].nunique() == 3
    for _, g in s.groupby("bf"):  # each output keeps its most frequent input
        out = g["output"].iloc[0]
        assert g["count"].max() == p.loc[p["output"] == out, "count"].max()
    rest = s.drop(s.groupby("bf").head(1).index)  # the slots filled by frequency across the chosen outputs
    others = p[p["output"].isin(of["output"][:3]) & ~p["key"].isin(s["key"])]
    if len(rest) and len(others):
        assert others["count"].max() <= rest["count"].min()


def test_size_unit_is_minimal():
    per_bf = [4, 3, 2]
    for limit in (1e-2, 1e-4):
        m, k = fa.size_unit(per_bf, limit)
        assert fa.union_fp(m, per_bf, k) <= limit
        assert all(fa.union_fp(m // 2, per_bf, kk) > limit for kk in fa.K_DESIGN)
        assert all(fa.union_fp(m, per_bf, kk) > limit for kk in range(1, k))
    assert fa.size_unit([1000], 1e-9, m_max=1024) == (0, 0)
    assert fa.memory_bits(3, 256) == 3 * (256 + 32)


def test_energy_bookkeeping():
    fu_pj = fa.fu_energy_pj(sqrt_mul_ratio=4.0, vdd_v=0.9)
    assert fu_pj["MAC"] == pytest.approx(0.9 + 3.7) and fu_pj["SQRT"] == pytest.approx(4 * 3.7)
    ops = {"Roberts": imaging.op_counts("Roberts")}
    hr = pd.DataFrame({"app": "Roberts", "source": "x", "fu": ["MUL", "MAC", "SQRT"], "hit_rate": [0.5, 0.2, 0.0]})
    e = fa.energy_table(ops, hr, fu_pj)
    rebf = e[e.vector == "rbv"].set_index("fu")
    look = fa.lookup_energy_pj("Roberts", "MUL", 6, 512, "rbv")
    assert look == pytest.approx((6 * 8.04 + 1302.74) / 1000)
    assert rebf.loc["MUL", "e_unit_pj"] == pytest.approx(4 * (look + 0.5 * fu_pj["MUL"]))
    s = fa.savings(e).set_index("vector")
    row = s.loc["rbv"]
    assert row["saving_pct"] == pytest.approx(100 * (1 - row["e_unit_pj"] / row["e_fu_pj"]))
    assert row["saving_best_pct"] >= row["saving_pct"]
    # scaling every FU energy by the break-even scale gives zero saving
    scaled = fa.savings(fa.energy_table(ops, hr, {k: v * row["breakeven_scale"] for k, v in fu_pj.items()}))
    assert scaled.set_index("vector").loc["rbv", "saving_pct"] == pytest.approx(0.0, abs=1e-9)
    assert fa.scale_for_saving(row, 0.0) == pytest.approx(row["breakeven_scale"])
    assert s.loc["cmos_bv", "saving_pct"] < row["saving_pct"]


def test_thesis_constants_are_labelled():
    assert set(fa.THESIS_TABLE_2_4) == set(fa.THESIS_REBF_SAVING_PCT) == set(KERNELS)
    assert sorted(fa.THESIS_TABLE_2_2["m"]) == [64, 128, 256, 512, 1024, 2048]
    for k in KERNELS:
        assert set(imaging.KERNEL_UNITS[k]) == set(fa.THESIS_TABLE_2_4[k])
    assert bloom.fp_rate(256, 12, 4) < 1e-2
