"""akhlaghi2020 ch. 5: CSG/BSG layers (Eqs. 5.1, 5.5, 5.6), counts (Tables 5.1/5.4/5.5/5.7), the DRAM
model (Table 5.6), the DCT study (§5.4.3) and the cached, resumable training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from axlib.methods import slicegen_counts as C
from axlib.models.mobilenetv2_cifar import MobileNetV2Cifar
from axlib.models.resnet_cifar import CifarResNet
from axlib.nn import slicegen as sg
from axlib.validate import ParameterError
from tests.conftest import needs_cifar10, needs_resnet


def _conv(nf, k, h, w, seed=0, bias=False):
    torch.manual_seed(seed)
    return torch.nn.Conv2d(k, nf, (h, w), padding=(h // 2, w // 2), bias=bias)


# --------------------------------------------------------------------------- geometry and Eq. 5.1


@pytest.mark.parametrize("wshape,sshape,expect", [((16, 16, 3, 3), (16, 16, 3, 3), (1, 1, 1, 1)),
                                                  ((32, 16, 3, 3), (12, 12, 3, 3), (3, 2, 1, 1)),
                                                  ((64, 64, 3, 3), (16, 16, 3, 3), (4, 4, 1, 1)),
                                                  ((96, 16, 1, 1), (16, 16, 1, 1), (6, 1, 1, 1))])
def test_grid_counts_partial_slices_whole(wshape, sshape, expect):
    assert sg.grid(wshape, sshape) == expect


@pytest.mark.parametrize("sshape", [(16, 16, 3, 3), (12, 12, 3, 3), (5, 7, 2, 3), (1, 1, 1, 1)])
def test_cut_then_assemble_is_the_identity(sshape):
    w = torch.randn(32, 16, 3, 3)
    rows = sg.cut(w, sshape)
    assert rows.shape == (sg.n_slices(w.shape, sshape), int(np.prod(sshape)))
    assert torch.equal(sg.assemble(rows, w.shape, sshape), w)


def test_first_slice_is_the_top_left_corner():
    w = torch.randn(32, 16, 3, 3)
    rows = sg.cut(w, (12, 12, 3, 3))
    assert torch.equal(rows[0].reshape(12, 12, 3, 3), w[:12, :12])
    assert torch.equal(rows[1].reshape(12, 12, 3, 3)[:, :4], w[:12, 12:16])  # next along k, cropped
    assert torch.count_nonzero(rows[1].reshape(12, 12, 3, 3)[:, 4:]) == 0


@pytest.mark.parametrize("sshape", [(16, 16, 3, 3), (12, 12, 3, 3)])
def test_csg_with_identity_generator_reproduces_the_conv_exactly(sshape):
    """A = I (n_c = P) and codes = the slices: Eq. 5.1 gives back the conv bit for bit."""
    conv = _conv(32, 16, 3, 3, bias=True)
    gen = sg.SliceGenerator("csg", sshape, int(np.prod(sshape)))
    layer = sg.SlicedConv2d(conv, gen, "c")
    with torch.no_grad():
        gen.A.copy_(torch.eye(gen.P))
        layer.codes.copy_(sg.cut(conv.weight.detach(), sshape))
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(layer.weight(), conv.weight.detach())
    assert torch.equal(layer(x), conv(x))


def test_one_generator_is_shared_and_counted_once():
    net, info = sg.convert(CifarResNet(20), "csg", (16, 16, 3, 3), 128)
    layers = sg.sliced_layers(net)
    assert len(layers) == 18 and all(m.generator is net.slice_generator for m in layers.values())
    assert sg.count_parameters(net) == 312_218
    assert sg.count_parameters(net, pretrained_generator=True) == 312_218 - 16 * 16 * 9 * 128


def test_gradients_reach_codes_and_generator():
    net, _ = sg.convert(CifarResNet(8), "csg", (16, 16, 3, 3), 32)
    net.train()
    F.cross_entropy(net(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3])).backward()
    assert net.slice_generator.A.grad is not None and net.slice_generator.A.grad.abs().sum() > 0
    assert all(m.codes.grad is not None and m.codes.grad.abs().sum() > 0 for m in sg.sliced_layers(net).values())


def test_eval_mode_builds_each_weight_once_and_rebuilds_after_a_change():
    net, _ = sg.convert(CifarResNet(8), "csg", (16, 16, 3, 3), 32)
    layers = list(sg.sliced_layers(net).values())
    x = torch.randn(2, 3, 32, 32)
    net.eval()
    with torch.no_grad():
        a = net(x)
        b = net(x)
    assert torch.equal(a, b)
    assert all(m.builds == 1 for m in layers)
    with torch.no_grad():
        net.slice_generator.A.mul_(2.0)  # an in-place update (what an optimiser step does)
        net(x)
    assert all(m.builds == 2 for m in layers)
    net.train()
    net(x)
    net(x)
    assert all(m.builds == 4 for m in layers)  # training: one build per forward pass, no more


# --------------------------------------------------------------------------- BSG, Eqs. 5.5 / 5.6


@pytest.mark.parametrize("n_c", [16, 40, 256])
def test_eq_5_5_equals_the_xor_popcount_of_eq_5_6(n_c):
    g = torch.Generator().manual_seed(n_c)
    base = torch.where(torch.rand(n_c, generator=g) < 0.5, -1.0, 1.0)
    codes = torch.randn(7, n_c, generator=g)
    rows = 2 * 3 * 3 * 2
    w55 = sg.bsg_weights(base, codes, rows).numpy().astype(np.int64)
    base_w, code_w = sg.pack_bits(base.numpy()), sg.pack_bits(np.sign(codes.numpy()) + (codes.numpy() == 0))
    assert np.array_equal(sg.bsg_weights_xor(base_w, code_w, n_c, rows), w55)
    # as printed (count_ones - count_zeros) the thesis's Eq. 5.6 is the negated weight
    assert np.array_equal(sg.bsg_weights_xor(base_w, code_w, n_c, rows, as_printed=True), -w55)
    assert np.all(np.abs(w55) <= n_c) and np.all((w55 - n_c) % 2 == 0)


def test_bsg_rows_are_circular_shifts_of_one_base_vector():
    base = torch.tensor([1.0, -1.0, -1.0, 1.0, 1.0])
    a = sg.bsg_matrix(base, 7)
    for j in range(7):
        assert torch.equal(a[j], torch.roll(base, j))


def test_bsg_layer_uses_signs_with_straight_through_gradients():
    net, _ = sg.convert(CifarResNet(8), "bsg", (16, 16, 3, 3), 64)
    layer = next(iter(sg.sliced_layers(net).values()))
    w = layer.weight() * math.sqrt(64)
    assert torch.allclose(w, w.round(), atol=1e-4)  # integers in [-n_c, n_c] before the 1/sqrt(n_c) scale
    assert sg.count_parameters(net) == sg.count_parameters(CifarResNet(8)) - sum(
        m.weight.numel() for n, m in CifarResNet(8).named_modules() if isinstance(m, torch.nn.Conv2d))  \
        + 432 + sum(m.codes.numel() for m in sg.sliced_layers(net).values())
    net.train()
    F.cross_entropy(net(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
    assert layer.codes.grad is not None and layer.codes.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in net.slice_generator.parameters())


# --------------------------------------------------------------------------- SVD initialisation


def test_svd_initialisation_error_matches_a_direct_svd():
    torch.manual_seed(3)
    model = CifarResNet(20)
    net, info = sg.convert(model, "csg", (16, 16, 3, 3), 40, init="svd")
    names = info["layers"]
    m = np.concatenate([sg.cut(model.get_submodule(n).weight.detach(), (16, 16, 3, 3)).double().numpy() for n in names])
    s = np.linalg.svd(m, compute_uv=False)
    direct = math.sqrt(float((s[40:] ** 2).sum()))
    assert info["svd"].residual_fro == pytest.approx(direct, rel=1e-9)
    assert info["svd"].energy_kept == pytest.approx(float((s[:40] ** 2).sum() / (s ** 2).sum()), rel=1e-9)
    err = math.sqrt(sum(float(((net.get_submodule(n).weight() - model.get_submodule(n).weight).detach() ** 2).sum())
                        for n in names))
    assert err == pytest.approx(direct, rel=1e-4)  # the generated weights are that rank-40 approximation


def test_full_rank_svd_reproduces_the_network():
    model = CifarResNet(8).eval()
    net, info = sg.convert(model, "csg", (16, 16, 3, 3), 2304, init="svd")
    assert info["svd"].energy_kept == pytest.approx(1.0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), model(x), atol=1e-4)


# --------------------------------------------------------------------------- counts (Tables 5.1, 5.4, 5.5, 5.7)


def test_mobilenetv2_has_the_table_5_1_parameter_count():
    m = MobileNetV2Cifar()
    assert sum(p.numel() for p in m.parameters()) == 2_296_922
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert len(sg.target_convs(m, "first_pointwise")) == 17


def test_counts_equal_tables_5_1_and_5_4():
    t = C.count_table()
    paper = t[t["paper_params"].notna()]
    assert len(paper) == len(C.PAPER_COUNTS)
    assert (paper["params"] == paper["paper_params"]).all(), paper[["network", "kind", "params", "paper_params"]]
    assert paper["ratio_matches"].all()
    assert dict(zip(t["n_c"].fillna(0), t["slices"]))[72] in (861, 273)
    assert set(t.loc[t["network"] == "resnet56", "slices"]) == {0, 368, 861}


def test_bsg_sizes_equal_table_5_5():
    t = C.bsg_table("resnet56", [256, 512, 1024, 2048], (16, 16, 3, 3), C.TABLE_5_5, 1000)
    assert t["inference_words"].tolist() == [11_050, 16_954, 28_762, 52_378]
    assert t["train_words"].tolist() == [99_354, 193_562, 381_978, 758_810]
    assert t[["train_matches", "inference_matches", "ratio_matches"]].all().all()


def test_table_5_7_matches_at_twice_the_printed_code_sizes():
    printed = C.bsg_table("mobilenetv2", [32, 64, 128], (16, 16, 1, 1), C.TABLE_5_7, 1e6, label_factor=1)
    doubled = C.bsg_table("mobilenetv2", [32, 64, 128], (16, 16, 1, 1), C.TABLE_5_7, 1e6, label_factor=2)
    assert (printed["slices"] == 2950).all()
    assert doubled[["train_matches", "inference_matches", "ratio_matches"]].all().all()
    assert not printed["train_matches"].all()


def test_printed_match_allows_one_unit_of_the_last_digit_only():
    assert C.printed_match(2.4571, 2.45) and C.printed_match(1.4398, 1.44)
    assert not C.printed_match(2.47, 2.45) and not C.printed_match(99.354 + 1.1, 99)


# --------------------------------------------------------------------------- DRAM model (Table 5.6)


def test_feature_map_words_at_the_group_boundaries():
    assert sum(C.boundary_feature_words("resnet56").values()) == 56_320
    assert sum(C.boundary_feature_words("resnet20").values()) == 56_320
    with pytest.raises(ParameterError, match="ResNets"):
        C.boundary_feature_words("mobilenetv2")


def test_dram_model_recovers_known_constants():
    sizes = {1: 10_000, 2: 20_000, 3: 40_000, 4: 80_000}
    savings = {n: 2.0e6 / (s + 50_000) for n, s in sizes.items()}
    d = C.dram_model(sizes, savings, 50_000)
    assert d.attrs["x_free"] == pytest.approx(2.0e6) and d.attrs["f_free"] == pytest.approx(50_000)
    assert np.allclose(d["pred_leave_one_out"], d["paper_saving_x"])
    d2 = C.dram_model(sizes, {**savings, 1: savings[1] * 1.2}, 50_000)  # a column off the model is not predicted
    assert abs(d2.loc[0, "err_pct_leave_one_out"]) > 10


def test_free_dram_fit_predicts_a_held_out_column_and_table_5_8_needs_twice_the_labels():
    sizes = {1: 10_000, 2: 20_000, 3: 40_000}
    d = C.dram_free_fit(sizes, {n: 3.0e6 / (s + 60_000) for n, s in sizes.items()})
    assert np.allclose(d["pred_leave_one_out"], d["paper_saving_x"]) and d.attrs["f_free"] == pytest.approx(60_000)
    assert C.saving_pct_to_x(50.0) == pytest.approx(2.0)
    sav = {lab: C.saving_pct_to_x(C.TABLE_5_8["dram_saving_pct"][lab]) for lab in (32, 64, 128)}
    f = {}
    for factor in (1, 2):
        sizes = {lab: C.count("mobilenetv2", "bsg", (16, 16, 1, 1), lab * factor)["inference_words"] for lab in sav}
        f[factor] = C.dram_free_fit(sizes, sav).attrs["f_free"]
    assert f[1] < 0 < f[2]
    with pytest.raises(ParameterError, match="at least 3"):
        C.dram_free_fit({1: 1, 2: 2}, {1: 1.0, 2: 1.0})


# --------------------------------------------------------------------------- DCT (§5.4.3)


def test_dct_keeps_everything_at_threshold_zero_and_psnr_floor_of_zero_reconstruction():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(20, 4, 4, 3, 3))
    sw = C.dct_sweep(s, [0.0, 1e9])
    assert sw.loc[0, "mean_kept"] == 144 and sw.loc[0, "mean_psnr_db"] > 200
    assert sw.loc[1, "mean_kept"] == 0
    assert sw.loc[1, "mean_psnr_db"] == pytest.approx(C.zero_reconstruction_psnr(s))


def test_dct_choice_is_the_largest_threshold_meeting_the_target():
    rng = np.random.default_rng(1)
    s = rng.normal(size=(30, 4, 4, 3, 3)).cumsum(axis=1)  # smooth along one axis: compressible
    sweep, chosen = C.dct_choice(s, target_db=25.0, n_grid=20)
    assert chosen["mean_psnr_db"] >= 25.0
    worse = C.dct_sweep(s, [chosen["threshold"] * 1.01])
    assert worse["mean_psnr_db"].iloc[0] < 25.0 + 0.5
    assert chosen["ratio"] > 1


# --------------------------------------------------------------------------- bad input


def test_bad_slice_shapes_and_code_sizes_fail_before_any_work():
    with pytest.raises(ParameterError, match=r"does not fit layer layers\.0\.conv1.*h = 3 > layer h = 1"):
        C.check_fits("mobilenetv2", (16, 16, 3, 3), 16)
    with pytest.raises(ParameterError, match="n_c"):
        C.check_fits("resnet20", (16, 16, 3, 3), 0)
    with pytest.raises(ParameterError, match="slice_shape"):
        sg.check_slice_shape((16, 16, 3))
    with pytest.raises(ParameterError, match="slice_shape"):
        sg.check_slice_shape((16, 0, 3, 3))
    with pytest.raises(ParameterError, match="network"):
        C.check_network("vgg99")
    with pytest.raises(ParameterError, match="CSG only"):
        sg.convert(CifarResNet(8), "bsg", (16, 16, 3, 3), 64, init="svd")
    with pytest.raises(ParameterError, match="does not fit"):
        sg.convert(CifarResNet(8), "csg", (32, 16, 3, 3), 64)


def test_training_spec_is_checked_before_any_work():
    from axlib.methods import slicegen_train as T

    with pytest.raises(ParameterError, match="pretrained"):
        T.TrainSpec(network="mobilenetv2", kind="csg", slice_shape=(16, 16, 1, 1), n_c=16, init="svd").validate()
    with pytest.raises(ParameterError, match="kind"):
        T.TrainSpec(kind="xyz").validate()
    with pytest.raises(ParameterError, match="steps"):
        T.TrainSpec(steps=-1).validate()


# --------------------------------------------------------------------------- training: cached, resumable, seeded


@needs_cifar10
@needs_resnet
def test_training_resumes_to_the_same_run_and_is_cached(tmp_store, monkeypatch):
    from axlib.methods import slicegen_train as T

    spec = T.TrainSpec(network="resnet20", kind="csg", slice_shape=(16, 16, 3, 3), n_c=16, init="svd", steps=4,
                       n_train=128, batch_size=32, lr=0.002, eval_every=2, n_eval=64, n_test=64, bn_batches=2)
    full = T.train(spec, progress=False)
    final, partial = T._paths(spec)
    assert final.exists() and not partial.exists()
    final.unlink()
    real = T._checkpoint
    calls = []

    def interrupted(*args, **kw):
        real(*args, **kw)
        calls.append(1)
        if len(calls) == 1:
            raise KeyboardInterrupt  # killed right after the first checkpoint (step 2)

    monkeypatch.setattr(T, "_checkpoint", interrupted)
    with pytest.raises(KeyboardInterrupt):
        T.train(spec, progress=False)
    assert partial.exists()
    resumed = T.train(spec, progress=False)
    a, b = full["curve"], resumed["curve"]
    assert np.allclose(a["train_loss"].to_numpy(float), b["train_loss"].to_numpy(float), equal_nan=True)
    assert a["test_err_pct"].tolist() == b["test_err_pct"].tolist()
    assert full["summary"]["final_test_err_pct"].iloc[0] == resumed["summary"]["final_test_err_pct"].iloc[0]
    monkeypatch.setattr(T, "_run", lambda *a, **k: pytest.fail("a finished run must come from the cache"))
    assert T.train(spec, progress=False)["curve"]["test_err_pct"].tolist() == a["test_err_pct"].tolist()


@needs_cifar10
def test_a_damaged_checkpoint_is_discarded_and_the_run_restarts(tmp_store):
    from axlib.cachefiles import CacheWarning
    from axlib.methods import slicegen_train as T

    spec = T.TrainSpec(network="resnet20", kind="bsg", slice_shape=(16, 16, 3, 3), n_c=32, init="scratch", steps=2,
                       n_train=64, batch_size=32, eval_every=1, n_eval=32, n_test=32)
    _, partial = T._paths(spec)
    partial.parent.mkdir(parents=True, exist_ok=True)
    partial.write_bytes(b"not a checkpoint")
    with pytest.warns(CacheWarning, match="unreadable training checkpoint"):
        out = T.train(spec, progress=False)
    assert out["curve"]["step"].tolist() == [0, 1, 2]


# --------------------------------------------------------------------------- page parameters


def _params(nb_id, **over):
    from axlib import repro

    nb = next(n for n in repro.discover() if n.id == nb_id)
    return {**repro.effective_params(nb, "default"), **over}


@pytest.mark.parametrize("nb_id,over,match", [
    ("akhlaghi2020/tab5_1", {"configs": [{"slice_shape": [16, 16, 5, 5], "n_c": 8}]}, "does not fit"),
    ("akhlaghi2020/tab5_1", {"configs": [{"slice_shape": [16, 16, 3, 3], "n_c": 0}]}, "n_c"),
    ("akhlaghi2020/tab5_1", {"configs": [{"slice_shape": [16, 16, 3, 3]}]}, "slice_shape and n_c"),
    ("akhlaghi2020/tab5_1", {"network": "vgg99"}, "network"),
    ("akhlaghi2020/tab5_1", {"network": "mobilenetv2"}, "pretrained"),
    ("akhlaghi2020/tab5_1", {"configs": [{"slice_shape": [16, 16, 3, 3], "n_c": 8}] * 2}, "repeats"),
    ("akhlaghi2020/tab5_5", {"n_cs": [0]}, "n_cs"),
    ("akhlaghi2020/tab5_5", {"n_cs": [64, 64]}, "repeats"),
    ("akhlaghi2020/tab5_5", {"slice_shape": [16, 16, 3, 3], "network": "mobilenetv2"}, "does not fit"),
    ("akhlaghi2020/sec5_4_3", {"networks": ["resnet110"]}, "networks"),
    ("akhlaghi2020/sec5_4_3", {"slice_shape": [128, 16, 3, 3]}, "does not fit"),
])
def test_ch5_pages_refuse_bad_parameters(nb_id, over, match):
    from axlib.methods import nbparams

    with pytest.raises(ParameterError, match=match):
        nbparams.validate_params(nb_id, _params(nb_id, **over))


def test_mobilenetv2_converts_its_first_pointwise_convs_and_trains():
    torch.manual_seed(0)
    m = MobileNetV2Cifar()
    net, info = C.convert(m, "mobilenetv2", "bsg", (16, 16, 1, 1), 32, "scratch", 0)
    assert info["n_slices"] == 2950 and all(n.endswith(".conv1") for n in info["layers"])
    layer = net.get_submodule("layers.1.conv1")  # 16 -> 96 channels: 6 x 1 slices
    assert layer.weight().shape == (96, 16, 1, 1) and layer.codes.shape == (6, 32)
    net.train()
    F.cross_entropy(net(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
    assert layer.codes.grad.abs().sum() > 0
    assert isinstance(net.get_submodule("layers.1.conv2"), torch.nn.Conv2d)  # depthwise convs untouched
