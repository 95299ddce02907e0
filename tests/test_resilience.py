"""hanif2018 analyses: staged evaluation equals a full forward pass, noise/bias/pruning points, summaries."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from axlib import quant
from axlib.methods import resilience as res
from axlib.methods import significance as sig
from axlib.models import stages
from axlib.models.resnet_cifar import CifarResNet
from axlib.models.vggf_cifar import VGGfCifar
from axlib.nn import noise
from axlib.validate import ParameterError
from tests.conftest import randomised_bn


@pytest.fixture(scope="module")
def vgg_setup():
    torch.manual_seed(0)
    net = quant.fold_batchnorm(randomised_bn(VGGfCifar()).eval())
    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (40,), generator=g)
    calib = [(x[:16], y[:16])]
    test = [(x[16:28], y[16:28]), (x[28:], y[28:])]
    return res.Setup("vggf_cifar", net, {}, calib, test)


@pytest.fixture
def patched(monkeypatch, vgg_setup):
    monkeypatch.setattr(res, "setup", lambda *a, **k: vgg_setup)
    return vgg_setup


def test_vggf_stages_compose_to_forward_folded_and_not():
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    for net in (randomised_bn(VGGfCifar()).eval(), quant.fold_batchnorm(randomised_bn(VGGfCifar()).eval())):
        st = stages.model_stages(net)
        assert [n for names, _ in st for n in names] == [n for n, m in net.named_modules()
                                                         if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        with torch.no_grad():
            assert torch.equal(stages.run_stages(st, 0, x), net(x))
    assert stages.stage_of(st, "conv4") == 3
    with pytest.raises(KeyError):
        stages.stage_of(st, "nope")


def test_prunable_pairs():
    assert res.prunable_pairs(VGGfCifar()) == [("conv1", "conv2"), ("conv2", "conv3"), ("conv3", "conv4"),
                                                ("conv4", "conv5"), ("conv5", "fc6")]
    pairs = res.prunable_pairs(CifarResNet(20))
    assert len(pairs) == 9 and pairs[0] == ("layer1.0.conv1", "layer1.0.conv2")
    assert len(res.noise_layers(CifarResNet(20))) == 19


def test_topk_accuracy_against_a_loop():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(50, 10, generator=g)
    labels = torch.randint(0, 10, (50,), generator=g)
    top1 = np.mean([int(logits[i].argmax()) == int(labels[i]) for i in range(50)])
    top5 = np.mean([int(labels[i]) in set(np.argsort(-logits[i].numpy())[:5].tolist()) for i in range(50)])
    acc = res.topk_accuracy(logits, labels)
    assert acc["top1"] == pytest.approx(top1) and acc["top5"] == pytest.approx(top5)


def test_clean_point_equals_the_clean_model(patched):
    p = res.noise_point("vggf_cifar", "conv3", None, "snr_db", 0.0, 0, 16, 24, 0)
    with torch.no_grad():
        logits = torch.cat([patched.net(x) for x, _ in patched.test])
    assert p["top1"] == res.topk_accuracy(logits, patched.labels)["top1"]
    assert p["agreement_with_clean"] == 1.0 and p["noise_std"] == 0.0


@pytest.mark.parametrize("layer", ["conv1", "conv4", "conv5"])
def test_staged_noisy_logits_equal_a_full_forward(patched, layer):
    """Starting at the layer's stage on cached inputs gives the same logits as net(x) with the same noise."""
    s = patched
    with noise.inject(s.net, layer, snr_db=5.0, signal_power=s.signal_power, bias=0.3, seed=4):
        staged = s.logits_from(layer)
    with noise.inject(s.net, layer, snr_db=5.0, signal_power=s.signal_power, bias=0.3, seed=4), torch.no_grad():
        full = torch.cat([s.net(x) for x, _ in s.test])
    assert torch.equal(staged, full)
    assert not torch.equal(staged, s.clean_logits)


def test_noise_point_levels_and_bias(patched):
    s = patched
    p = res.noise_point("vggf_cifar", "conv2", 10.0, "snr_db", 0.0, 1, 16, 24, 0)
    assert p["noise_std"] == pytest.approx(math.sqrt(s.signal_power["conv2"] / 10.0))
    assert p["snr_db"] == pytest.approx(10.0)
    assert abs(p["realised_snr_db"] - 10.0) < 0.5
    q = res.noise_point("vggf_cifar", "conv2", 0.0, "dbw", 2.0, 1, 16, 24, 0)
    assert q["noise_std"] == pytest.approx(1.0) and q["bias"] == pytest.approx(2.0)
    assert q["noise_dbw"] == pytest.approx(0.0)
    again = res.noise_point("vggf_cifar", "conv2", 0.0, "dbw", 2.0, 1, 16, 24, 0)
    assert again == q  # seeded
    with pytest.raises(ParameterError, match="level_unit"):
        res.noise_point("vggf_cifar", "conv2", 0.0, "watts", 0.0, 1, 16, 24, 0)


def test_pruning_point_matches_a_direct_removal(patched):
    s = patched
    p0 = res.pruning_point("vggf_cifar", "conv2", "conv3", "data_aware", 0, 16, 24, 0)
    assert p0["top1"] == s.accuracy(s.clean_logits)["top1"] and p0["macs_saved"] == 0
    p = res.pruning_point("vggf_cifar", "conv2", "conv3", "data_aware", 10, 16, 24, 0)
    table = sig.data_aware_significance(s.net, "conv2", "conv3", s.calib)
    expected = sorted(table.sort_values(["significance", "filter"])["filter"].head(10).tolist())
    assert sorted(p["pruned_filters"]) == expected
    with sig.pruned(s.net, "conv2", "conv3", expected), torch.no_grad():
        full = torch.cat([s.net(x) for x, _ in s.test])
    assert p["top1"] == s.accuracy(full)["top1"] and p["top5"] == s.accuracy(full)["top5"]
    m = sig.macs_saved(s.net, "conv2", "conv3", s.test[0][0])
    assert p["macs_saved"] == 10 * m["per_filter_total"]
    assert p["macs_saved"] == 10 * (16 * 16 * 25 * 32 + 8 * 8 * 9 * 128)
    l1 = res.pruning_point("vggf_cifar", "conv2", "conv3", "l1", 10, 16, 24, 0)
    assert sorted(l1["pruned_filters"]) == sorted(np.argsort(sig.l1_significance(s.net.conv2), kind="stable")[:10])
    r1 = res.pruning_point("vggf_cifar", "conv2", "conv3", "random", 10, 16, 24, 0)
    r2 = res.pruning_point("vggf_cifar", "conv2", "conv3", "random", 10, 16, 24, 0)
    assert r1["pruned_filters"] == r2["pruned_filters"]
    with pytest.raises(ParameterError):
        res.pruning_point("vggf_cifar", "conv2", "conv3", "l1", 65, 16, 24, 0)


def test_channel_distributions_against_numpy(patched):
    s = patched
    hist, stats = res.channel_distributions("vggf_cifar", "conv2", "conv3", [0, 5], 20, 16, 24, 0)
    acts = []
    h = s.net.conv3.register_forward_pre_hook(lambda _m, a: acts.append(a[0].detach().clone()))
    with torch.no_grad():
        for x, _ in s.calib:
            s.net(x)
    h.remove()
    a = torch.cat(acts)[:, 5].double().numpy().ravel()
    row = stats[(stats["kind"] == "activation") & (stats["channel"] == 5)].iloc[0]
    assert row["mean"] == pytest.approx(a.mean(), rel=1e-5) and row["std"] == pytest.approx(a.std(), rel=1e-5)
    w = s.net.conv3.weight.detach().double()[:, 0].numpy().ravel()
    wrow = stats[(stats["kind"] == "weight") & (stats["channel"] == 0)].iloc[0]
    assert wrow["mean"] == pytest.approx(w.mean()) and wrow["count"] == w.size
    dens = hist[(hist["kind"] == "weight") & (hist["channel"] == 0)]
    assert ((dens["right"] - dens["left"]) * dens["density"]).sum() == pytest.approx(1.0)
    with pytest.raises(ParameterError, match="channels"):
        res.channel_distributions("vggf_cifar", "conv2", "conv3", [64], 20, 16, 24, 0)


def test_tolerance_interpolates_the_crossing():
    df = pd.DataFrame([
        {"model": "m", "layer": "a", "level": None, "bias_sigma": 0.0, "snr_db": None, "noise_dbw": None, "top1": 0.8},
        {"model": "m", "layer": "a", "level": 20.0, "bias_sigma": 0.0, "snr_db": 20.0, "noise_dbw": -10.0, "top1": 0.8},
        {"model": "m", "layer": "a", "level": 10.0, "bias_sigma": 0.0, "snr_db": 10.0, "noise_dbw": 0.0, "top1": 0.6},
        {"model": "m", "layer": "a", "level": 0.0, "bias_sigma": 0.0, "snr_db": 0.0, "noise_dbw": 10.0, "top1": 0.2},
    ])
    t = res.tolerance(df, "top1", 0.5, "snr_db")
    assert t.iloc[0, 2] == pytest.approx(10 - 10 * (0.6 - 0.4) / (0.6 - 0.2))
    t = res.tolerance(df, "top1", 0.5, "noise_dbw")
    assert t.iloc[0, 2] == pytest.approx(5.0)
    assert math.isnan(res.tolerance(df, "top1", 0.1, "snr_db").iloc[0, 2])


def test_area_under_curve_is_the_mean_accuracy_along_the_curve():
    df = pd.DataFrame({"model": "m", "producer": "c", "ranking": "l1", "fraction_pruned": [0.0, 0.5, 1.0],
                       "top1": [1.0, 0.5, 0.0]})
    assert res.area_under_curve(df)["auc_top1"].iloc[0] == pytest.approx(0.5)


def test_check_layers_names_the_allowed_ones(patched):
    assert res.check_layers("vggf_cifar", "all", 16, 24, 0) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert res.check_layers("vggf_cifar", ["conv3", "conv1"], 16, 24, 0) == ["conv1", "conv3"]
    with pytest.raises(ParameterError, match="conv9"):
        res.check_layers("vggf_cifar", ["conv9"], 16, 24, 0)


def test_ks_normal_accepts_normal_and_rejects_shifted_or_heavy_tails():
    r = np.random.default_rng(0)
    d, p = res.ks_normal(r.normal(0, 2, 5000), 2.0)
    assert p > 0.01 and d < 0.03
    assert res.ks_normal(r.normal(0.2, 2, 5000), 2.0)[1] < 1e-3
    assert res.ks_normal(r.standard_t(3, 5000), 1.0)[1] < 1e-3


def test_noise_sample_is_the_added_noise(patched):
    sample, hist, st = res.noise_sample("vggf_cifar", "conv3", 6.0, 3, 16, 2000, 40, 16, 24, 0)
    assert st["count"] == 16 * 128 * 8 * 8
    assert abs(st["realised_dbw"] - 6.0) < 0.1 and abs(st["mean"]) < 0.05
    assert st["hook_noise_power"] == pytest.approx(st["variance"], rel=1e-3)
    assert len(sample) == 1000 and len(hist) == 40
    assert ((hist["right"] - hist["left"]) * hist["density"]).sum() == pytest.approx(1.0, abs=1e-3)
    again = res.noise_sample("vggf_cifar", "conv3", 6.0, 3, 16, 2000, 40, 16, 24, 0)
    pd.testing.assert_frame_equal(sample, again[0])


def test_imagenet_path_says_what_is_missing(monkeypatch):
    """The dataset="imagenet" path (AlexNet) needs local weights and a validation folder; offline and
    without them it stops with a MissingDataError that says where it looked and how to get the files."""
    from axlib.data.arrays import MissingDataError

    monkeypatch.setenv("AXLIB_OFFLINE", "1")
    res.setup.cache_clear()
    with pytest.raises(MissingDataError, match="How to get it"):
        res.setup("alexnet", 10, 10, 0)


def test_check_pairs_selects_and_rejects():
    net = CifarResNet(20)
    assert res.check_pairs(net, ["layer2.0.conv1"]) == [("layer2.0.conv1", "layer2.0.conv2")]
    assert len(res.check_pairs(net, "all")) == 9
    with pytest.raises(ParameterError, match="layer2.0.conv2"):
        res.check_pairs(net, ["layer2.0.conv2"])
