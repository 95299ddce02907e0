"""Operand-pattern reuse in CNN multiplications (akhlaghi2020 §2.5, §2.7.2): keys against a bit-level reference,
pattern counting against a Counter over every multiplication, the tabulated served inference against the
per-multiplication reference, determinism, the energy model and the parameter checks."""

from __future__ import annotations

import struct
from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from axlib.kernels import reuse
from axlib.methods import bloom_cnn as bc
from axlib.methods import bloom_cnn_serve as bs
from axlib.models.lenet import LeNet5Caffe
from axlib.validate import ParameterError


class TinyNet(nn.Module):
    """conv 3x3 -> maxpool -> conv 2x2 -> flatten -> linear -> ReLU -> linear, on (N, 1, 10, 10)."""

    def __init__(self, values=None, seed=0):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(3, 4, 2)
        self.ip1 = nn.Linear(36, 8)
        self.relu1 = nn.ReLU()
        self.ip2 = nn.Linear(8, 3)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                if values is None:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.3)
                else:  # few distinct values: the same weight key at many taps
                    idx = torch.randint(0, len(values), p.shape, generator=g)
                    p.copy_(torch.tensor(values, dtype=torch.float32)[idx])

    def forward(self, x):
        x = self.pool1(self.conv1(x))
        x = self.conv2(x)
        return self.ip2(self.relu1(self.ip1(torch.flatten(x, 1))))


def images(n, seed=0, levels=(0.0, 0.25, 0.5, 0.75, 0.3)):
    """Inputs with many repeated values (like MNIST's zero background)."""
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array(levels, np.float32), size=(n, 1, 10, 10), p=[0.6, 0.1, 0.1, 0.1, 0.1])
    return x.astype(np.float32)


def bits_ref(value: float, apx: int) -> int:
    """Top apx bits of a float32 from its big-endian byte string, bit by bit."""
    s = "".join(f"{byte:08b}" for byte in struct.pack(">f", value))
    return int(s[:apx], 2)


def counter_of(model, x, apx, layer_names=None):
    """Counter of pattern keys over every multiplication (brute force)."""
    _, ins = bc.exact_forward(model, x)
    c = Counter()
    for lay in bc.layers_of(model):
        if layer_names is None or lay.name in layer_names:
            a, w = bc.all_multiplications(ins[lay.name], lay)
            c.update(bc.pattern_keys(bc.operand_keys(a, apx), bc.operand_keys(w, apx), apx).ravel().tolist())
    return c, ins


def top_ref(counter, n):
    return sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


# --------------------------------------------------------------------------- keys


@pytest.mark.parametrize("apx", [1, 8, 9, 10, 11, 12, 16, 23, 32])
def test_operand_keys_match_bit_strings(apx):
    vals = [0.0, -0.0, 1.0, -1.5, 0.45, 0.451, 3.4e38, 1e-40, -2.5e-3, 123.456]
    got = bc.operand_keys(np.array(vals, np.float32), apx)
    assert got.dtype == np.uint32
    assert [int(v) for v in got] == [bits_ref(v, apx) for v in vals]


def test_thesis_example_045_0451():
    """§2.5.3: 0.45 and 0.451 share their first 16 bits but not all 32."""
    a, b = np.float32(0.45), np.float32(0.451)
    assert format(int(np.array(a).view(np.uint32)), "032b") == "00111110111001100110011001100110"
    assert bc.operand_keys(a, 9) == bc.operand_keys(b, 9)
    assert bc.operand_keys(a, 16) == bc.operand_keys(b, 16)
    assert bc.operand_keys(a, 17) != bc.operand_keys(b, 17)
    assert bc.operand_keys(a, 32) != bc.operand_keys(b, 32)


@pytest.mark.parametrize("apx", [4, 9, 12, 32])
def test_pattern_key_round_trip_and_floor_value(apx):
    rng = np.random.default_rng(apx)
    x = rng.standard_normal(50).astype(np.float32)
    w = rng.standard_normal(50).astype(np.float32)
    k = bc.pattern_keys(bc.operand_keys(x, apx), bc.operand_keys(w, apx), apx)
    a, b = bc.split_pattern_keys(k, apx)
    assert np.array_equal(a, bc.operand_keys(x, apx)) and np.array_equal(b, bc.operand_keys(w, apx))
    fl = bc.key_floor_value(a, apx)
    assert np.array_equal(bc.operand_keys(fl, apx), a)  # same top bits, low bits cleared
    assert np.all(np.abs(fl) <= np.abs(x))
    if apx == 32:
        assert np.array_equal(fl, x)


# --------------------------------------------------------------------------- network and counting


def test_network_ops_reproduce_the_model():
    torch.manual_seed(0)
    for model, shape in ((LeNet5Caffe().eval(), (3, 1, 28, 28)), (TinyNet().eval(), (3, 1, 10, 10))):
        x = torch.rand(shape)
        logits, ins = bc.exact_forward(model, x.numpy())
        with torch.no_grad():
            ref = model(x).numpy()
        np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
        assert list(ins) == [lay.name for lay in bc.layers_of(model)]
    assert bc.mults_per_image(LeNet5Caffe()) == {"conv1": 288000, "conv2": 1600000, "ip1": 400000, "ip2": 5000}


def test_window_histograms_match_brute_force():
    rng = np.random.default_rng(1)
    x = rng.choice(np.array([0, 1, 2, 3], np.float32), size=(2, 2, 7, 6))
    keys = x.astype(np.uint16)
    counts, sums = reuse.window_histograms(keys, x, 3, 2, (2, 1), 4)
    ho, wo = reuse.out_size(7, 6, 3, 2, 2, 1)
    ref = np.zeros_like(counts)
    for c in range(2):
        for p in range(3):
            for q in range(2):
                win = keys[:, c, p:p + 2 * (ho - 1) + 1:2, q:q + wo]
                ref[(c * 3 + p) * 2 + q] = np.bincount(win.ravel(), minlength=4)
    assert np.array_equal(counts, ref)
    assert np.allclose(sums, ref * np.arange(4)[None, :])


@pytest.mark.parametrize("values", [None, [-0.5, 0.25, 0.125, 0.3, -0.75]])
@pytest.mark.parametrize("apx", [6, 9, 14, 32])
def test_top_patterns_and_counts_equal_counter(values, apx):
    model = TinyNet(values).eval()
    x = images(5)
    layers = bc.layers_of(model)
    for lay in layers:
        c, ins = counter_of(model, x, apx, [lay.name])
        ref = top_ref(c, 25)
        if apx <= bc.DENSE_MAX_BITS:
            count, sums = bc.pair_counts(ins[lay.name], lay, apx, with_sums=True)
            keys = bc.top_keys(count, 25)
            got = count.ravel()[keys.astype(np.int64)]
            assert count.sum() == sum(c.values())
        else:
            keys, got = bc.sparse_top_patterns([lay], [ins[lay.name]], apx, 25)
        assert [int(k) for k in keys] == [k for k, _ in ref]
        assert [int(v) for v in got] == [v for _, v in ref]
        probe = np.array([k for k, _ in ref] + [123456789], dtype=np.uint64)
        cnt = bc.sparse_pattern_counts([lay], [ins[lay.name]], apx, probe)
        assert [int(v) for v in cnt] == [c[int(k)] for k in probe]
    # one table for the whole network
    c, ins = counter_of(model, x, apx)
    keys, got = bc.sparse_top_patterns(layers, [ins[lay.name] for lay in layers], apx, 40)
    ref = top_ref(c, 40)
    assert [int(k) for k in keys] == [k for k, _ in ref] and [int(v) for v in got] == [v for _, v in ref]


def test_pattern_means_equal_brute_force():
    model = TinyNet().eval()
    x = images(4)
    _, ins = bc.exact_forward(model, x)
    lay = bc.layers_of(model)[1]
    count, sums = bc.pair_counts(ins[lay.name], lay, 9, with_sums=True)
    a, w = bc.all_multiplications(ins[lay.name], lay)
    k = bc.pattern_keys(bc.operand_keys(a, 9), bc.operand_keys(w, 9), 9).ravel().astype(np.int64)
    ref = np.bincount(k, weights=(a.astype(np.float64) * w).ravel(), minlength=count.size)
    np.testing.assert_allclose(sums.ravel(), ref, rtol=1e-12, atol=1e-12)


def test_hit_rate_tables_are_consistent():
    model = TinyNet().eval()
    curves, pats = bc.hit_rate_tables(model, images(6, seed=1), images(4, seed=2), [9, 32], n_max=5)
    assert set(curves["scope"]) == {"layer", "global"}
    assert (np.diff(curves.query("apx_bit == 9 and scope == 'layer' and layer == 'all'")["hits_test"]) >= 0).all()
    allrows = curves[curves["layer"] == "all"]
    assert (allrows["hit_rate_test"] <= 1).all() and (allrows["hit_rate_test"] >= 0).all()
    # the layer rows add up to the network row
    for _, g in curves.groupby(["apx_bit", "scope", "n_patterns"]):
        parts = g[g["layer"] != "all"]
        assert parts["hits_test"].sum() == g[g["layer"] == "all"]["hits_test"].iloc[0]
    # test hits of the stored patterns equal a Counter on the test images
    c, _ = counter_of(model, images(4, seed=2), 9, ["conv2"])
    p = pats.query("apx_bit == 9 and scope == 'layer' and table == 'conv2'")
    assert [int(v) for v in p["count_test"]] == [c[int(k)] for k in p["key"]]


# --------------------------------------------------------------------------- served inference


def test_served_kernel_with_nothing_stored_is_exact():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 4, 9, 8)).astype(np.float32)
    w = rng.standard_normal((5, 4, 3, 2)).astype(np.float32)
    apx = 9
    table = np.full((1 << apx, 1 << apx), np.nan, np.float32)
    out, served = reuse.served_conv2d(x, bc.operand_keys(x, apx), w, bc.operand_keys(w, apx), table, (2, 1))
    ref = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), stride=(2, 1)).numpy()
    assert served == 0
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    # a table that serves everything returns the sum of its values
    full = np.ones_like(table)
    out, served = reuse.served_conv2d(x, bc.operand_keys(x, apx), w, bc.operand_keys(w, apx), full, (2, 1))
    assert served == out.size * 4 * 3 * 2 and np.all(out == 24.0)


def test_kernels_equal_their_python_versions():
    rng = np.random.default_rng(4)
    keys = rng.integers(0, 8, size=(2, 2, 5, 5)).astype(np.uint16)
    vals = rng.standard_normal(keys.shape).astype(np.float32)
    c1, s1 = np.zeros((8, 8), np.int64), np.zeros((8, 8))
    c2, s2 = np.zeros((8, 8), np.int64), np.zeros((8, 8))
    reuse._window_hist(keys, vals, 2, 1, 1, 1, 4, 5, c1, s1)
    getattr(reuse._window_hist, "py_func", reuse._window_hist)(keys, vals, 2, 1, 1, 1, 4, 5, c2, s2)
    assert np.array_equal(c1, c2) and np.allclose(s1, s2)
    a_key = rng.integers(0, 4, size=(6, 5)).astype(np.uint16)
    a_val = rng.standard_normal((6, 5)).astype(np.float32)
    w_key = rng.integers(0, 4, size=(5, 3)).astype(np.uint16)
    w_val = rng.standard_normal((5, 3)).astype(np.float32)
    table = np.where(rng.random((4, 4)) < 0.5, np.nan, rng.standard_normal((4, 4))).astype(np.float32)
    pairs = reuse.pair_table(table)
    o1, o2 = np.zeros((6, 3)), np.zeros((6, 3))
    n1, n2 = np.zeros(6, np.int64), np.zeros(6, np.int64)
    reuse._served_gemm(a_key, a_val, w_key, w_val, pairs, o1, n1)
    getattr(reuse._served_gemm, "py_func", reuse._served_gemm)(a_key, a_val, w_key, w_val, pairs, o2, n2)
    ref = np.zeros((6, 3))
    for m in range(6):
        for k in range(5):
            for n in range(3):
                t = table[a_key[m, k], w_key[k, n]]
                ref[m, n] += float(a_val[m, k]) * float(w_val[k, n]) if np.isnan(t) else float(t)
    np.testing.assert_allclose(o1, ref, rtol=1e-12)
    np.testing.assert_allclose(o2, ref, rtol=1e-12)
    assert np.array_equal(n1, n2) and n1.sum() == (~np.isnan(table[a_key[:, :, None], w_key[None]])).sum()


def test_served_inference_with_empty_stores_equals_exact_inference():
    model = TinyNet().eval()
    x = images(6)
    exact, _ = bc.exact_forward(model, x)
    for apx in (9, 32):
        stores = bs.build_stores(model, bc.exact_forward(model, x)[1], apx, 0)
        for direct in (False, True) if apx <= 12 else (True,):
            logits, served = bs.served_forward(model, x, stores, direct=direct)
            assert np.array_equal(logits, exact) and sum(served.values()) == 0


@pytest.mark.parametrize("apx,n,bf,value", [(8, 6, None, "truncated"), (9, 10, None, "mean"), (9, 10, (64, 2), "truncated"),
                                            (9, 30, (32, 3), "mean"), (10, 4, (16, 1), "mean")])
def test_tabulated_served_inference_equals_per_multiplication_reference(apx, n, bf, value):
    model = TinyNet().eval()
    _, prof = bc.exact_forward(model, images(8, seed=5))
    stores = bs.build_stores(model, prof, apx, n, value, bf, seed=3)
    x = images(5, seed=6)
    lt, st = bs.served_forward(model, x, stores, direct=False)
    ld, sd = bs.served_forward(model, x, stores, direct=True)
    assert st == sd and sum(st.values()) > 0
    np.testing.assert_allclose(lt, ld, rtol=1e-6, atol=1e-6)
    if bf is not None:  # the tabulated answer equals the unit's per-key answer
        s = stores["conv2"]
        keys = np.arange(1 << (2 * apx), dtype=np.uint64)
        vals, hit = s.lookup(keys)
        t = s.table().ravel()
        assert np.array_equal(~np.isnan(t), hit) and np.array_equal(t[hit], vals[hit])


def test_exact_matching_store_serves_exact_products():
    """apx_bit = 32 without filters: served values are the exact products, so the output is the exact one."""
    model = TinyNet([-0.5, 0.25, 0.125]).eval()
    x = images(4)
    _, prof = bc.exact_forward(model, x)
    stores = bs.build_stores(model, prof, 32, 10)
    logits, served = bs.served_forward(model, x, stores)
    exact, _ = bc.exact_forward(model, x)
    assert sum(served.values()) > 0
    np.testing.assert_allclose(logits, exact, rtol=1e-6, atol=1e-6)


def test_exact_matching_with_filters_runs_per_multiplication():
    """apx_bit = 32 with filters (on-the-fly hashing of 64-bit keys): no stored pattern is ever missed."""
    model = TinyNet([-0.5, 0.25, 0.125]).eval()
    x = images(4)
    _, prof = bc.exact_forward(model, x)
    ideal = bs.build_stores(model, prof, 32, 10)
    bf = bs.build_stores(model, prof, 32, 10, bf=(32, 2))
    assert all(s.unit.key_bytes == 8 for s in bf.values())
    _, s_ideal = bs.served_forward(model, x, ideal)
    _, s_bf = bs.served_forward(model, x, bf)
    assert s_bf["conv1"] >= s_ideal["conv1"] > 0  # same input to the first layer: every true hit is still served


def test_stores_and_inference_are_deterministic():
    model = TinyNet().eval()
    _, prof = bc.exact_forward(model, images(8))
    a = bs.build_stores(model, prof, 9, 12, "truncated", (64, 2), seed=7)
    b = bs.build_stores(model, prof, 9, 12, "truncated", (64, 2), seed=7)
    for nm in a:
        assert np.array_equal(a[nm].keys, b[nm].keys) and np.array_equal(a[nm].values, b[nm].values)
        assert np.array_equal(a[nm].unit.words, b[nm].unit.words)
    x = images(3, seed=9)
    l1, s1 = bs.served_forward(model, x, a)
    l2, s2 = bs.served_forward(model, x, b)
    assert np.array_equal(l1, l2) and s1 == s2


def test_store_grouping_and_values():
    keys = np.array([5, 9, 2, 7], np.uint64)
    values = np.array([0.0, 1.5, 0.0, 2.0], np.float32)
    counts = np.array([40, 30, 20, 10])
    s = bs.LayerStore("l", 4, keys, values, counts, (64, 2))
    assert s.patterns_per_bf == [1, 1, 1, 1]
    s = bs.LayerStore("l", 4, keys, values, counts, (64, 2), bf_grouping="value")
    assert s.patterns_per_bf == [2, 1, 1] and s.unit.outputs[0] == 0.0
    v, hit = s.lookup(keys)
    assert hit.all()  # no false negatives
    tv = bs.stored_values(np.array([bc.pattern_keys(bc.operand_keys(np.float32(3.0), 9),
                                                    bc.operand_keys(np.float32(-1.75), 9), 9)]), 9, "truncated")
    assert tv[0] == np.float32(2.0 * -1.0)


def test_bf_stats_accounting():
    model = TinyNet().eval()
    _, prof = bc.exact_forward(model, images(8))
    lay = bc.layers_of(model)[1]
    count, _ = bc.pair_counts(prof[lay.name], lay, 9)
    ideal = bs.build_stores(model, prof, 9, 10)[lay.name]
    st = bs.bf_stats(ideal, count)
    assert st["false_hits"] == 0 and st["stored_wrong"] == 0
    assert st["stored_right"] == int(ideal.counts.sum()) and st["stored_right"] + st["not_stored"] == count.sum()
    bf = bs.build_stores(model, prof, 9, 10, bf=(16, 1))[lay.name]
    st = bs.bf_stats(bf, count)
    assert st["stored_right"] + st["stored_wrong"] == int(bf.counts.sum()) and st["key_fp_rate"] > 0


# --------------------------------------------------------------------------- energy


def test_energy_model():
    assert bs.rbv_energy_fj(64) == 1.62 and bs.rbv_energy_fj(32) == 1.62
    assert bs.rbv_energy_fj(512) == 8.04 and bs.rbv_energy_fj(4096) == 19.3
    per = sorted([882.63 / 6, 1302.74 / 24, 796.95 / 12, 1179.72 / 16, 996.76 / 16])
    assert bs.hash_energy_fj() == pytest.approx(per[2])
    assert bs.bf_energy_fj(64, 2) == pytest.approx(2 * per[2] + 1.62)
    # the thesis-calibrated overhead reproduces Table 2.5's savings from its own hit rates within 1.5 points
    t = bs.THESIS_TABLE_2_5
    for r in t.itertuples():
        e = bs.energy_saving(r.hit_rate_pct / 100, r.n_patterns, r.m, r.k, "thesis")
        assert abs(100 * e - r.e_save_pct) < 1.5
    assert bs.energy_saving(0.5, 10, 64, 2, "horowitz", 3.7) == pytest.approx(0.5 - 10 * bs.bf_energy_fj(64, 2) / 3700)
    with pytest.raises(ParameterError):
        bs.overhead_per_bf(128, 2, "thesis")


# --------------------------------------------------------------------------- parameter checks


def test_bad_parameters_raise():
    model = TinyNet().eval()
    _, prof = bc.exact_forward(model, images(2))
    with pytest.raises(ParameterError, match="apx_bit"):
        bc.operand_keys(np.ones(2, np.float32), 0)
    with pytest.raises(ParameterError, match="apx_bit"):
        bc.operand_keys(np.ones(2, np.float32), 33)
    with pytest.raises(ParameterError, match="apx_bit"):
        bs.build_stores(model, prof, 20, 5)
    with pytest.raises(ParameterError, match="dense"):
        bc.pair_counts(prof["conv1"], bc.layers_of(model)[0], 13)
    with pytest.raises(ParameterError, match="stored_value"):
        bs.build_stores(model, prof, 9, 5, "median")
    with pytest.raises(ParameterError, match="power of two"):
        bs.build_stores(model, prof, 9, 5, bf=(60, 2))
    with pytest.raises(ParameterError, match="k"):
        bs.build_stores(model, prof, 9, 5, bf=(64, 0))
    with pytest.raises(ParameterError, match="bf_grouping"):
        bs.build_stores(model, prof, 9, 5, bf=(64, 2), bf_grouping="layer")
    with pytest.raises(ParameterError, match="scopes"):
        bc.check_profile_params([9], 5, 10, 10, 0, ["layer", "net"])
    with pytest.raises(ParameterError, match="n_profile"):
        bc.check_profile_params([9], 5, 0, 10, 0, ["layer"])
    with pytest.raises(ParameterError, match="apx_bits"):
        bc.check_profile_params([9, 40], 5, 10, 10, 0, ["layer"])
    with pytest.raises(ParameterError, match="modes"):
        bs.plan_runs([[9]], [64, 2], [])
    with pytest.raises(ParameterError, match="modes: apx_bit"):
        bs.plan_runs([[13, 5]], [64, 2], [])
    with pytest.raises(ParameterError, match="bf_extra"):
        bs.plan_runs([[9, 5]], [64, 2], [[9, 30, 32]])
    with pytest.raises(ParameterError, match="ablation_values"):
        bs.plan_runs([[9, 5]], [64, 2], [], "truncated", ["middle"])
    with pytest.raises(ParameterError, match="n_test"):
        bs.check_inference_params(10, 0, 0, 3.7)
    with pytest.raises(ParameterError, match="padded"):
        bc.layers_of(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1)))
    assert bs.plan_runs([[9, 5], [8, 10]], [64, 2], [[9, 5, 32, 3]], "truncated", ["mean"]) == [
        (9, 5, 0, 0, "truncated"), (8, 10, 0, 0, "truncated"), (9, 5, 64, 2, "truncated"), (8, 10, 64, 2, "truncated"),
        (9, 5, 32, 3, "truncated"), (9, 5, 0, 0, "mean"), (8, 10, 0, 0, "mean")]


def test_check_models_accepts_the_mnist_networks_and_rejects_others():
    assert bc.check_models(["lenet_tinydnn", "lenet5"]) == ["lenet_tinydnn", "lenet5"]
    for bad in (["cifarquick"], [], ["lenet5", "lenet5"], "lenet5"):
        with pytest.raises(ParameterError, match="models"):
            bc.check_models(bad)


def test_tinydnn_network_runs_through_the_profiling_forward():
    from axlib.models.lenet_tinydnn import LeNetTinyDnn

    torch.manual_seed(0)
    m = LeNetTinyDnn().eval()
    x = torch.rand(4, 1, 28, 28) * 255.0 / 256.0
    logits, inputs = bc.exact_forward(m, x)
    with torch.no_grad():
        ref = m(x).numpy()
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)
    assert inputs["conv1"].shape == (4, 1, 32, 32)
    assert inputs["conv1"].min() >= -1.0 and inputs["conv1"].max() <= 1.0
