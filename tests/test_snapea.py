"""SnaPEA on whole networks: hooks vs the kernel's torch path, numba forward, Algorithm 1, accelerator model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from axlib import energy, quant
from axlib.kernels.early_term import early_term_conv2d, snapea_torch
from axlib.methods import snapea as sp
from axlib.models.cifarquick import CifarQuick
from axlib.models.resnet_cifar import CifarResNet
from axlib.models.vggf_cifar import VGGfCifar
from axlib.validate import ParameterError
from tests.conftest import randomised_bn


@pytest.fixture(scope="module")
def resnet_setup():
    torch.manual_seed(0)
    net = quant.fold_batchnorm(randomised_bn(CifarResNet(8)).eval())
    g = torch.Generator().manual_seed(2)
    x = torch.randn(24, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (24,), generator=g)
    return sp.Setup("resnet8", net, [(x[:8], y[:8]), (x[8:12], y[8:12])], [(x[12:], y[12:])])


def test_layer_maps():
    assert [s.name for s in sp.snapea_layers(VGGfCifar())] == ["conv2", "conv3", "conv4", "conv5"]
    assert [s.name for s in sp.snapea_layers(CifarQuick())] == ["conv2", "conv3"]
    layers = sp.snapea_layers(CifarResNet(20))
    assert len(layers) == 18 and layers[1].name == "layer1.0.conv2" and layers[1].block is not None
    assert layers[0].block is None
    with pytest.raises(ParameterError):
        sp.snapea_layers(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)))


@pytest.mark.parametrize("layer", ["layer1.0.conv1", "layer2.0.conv2"])
def test_hook_equals_the_kernel_torch_path(resnet_setup, layer):
    """Inside the network, the hook gives ReLU outputs equal to snapea_torch on the captured inputs
    (with the shortcut as residual for a block's second conv)."""
    s = resnet_setup
    sl = next(x for x in s.layers if x.name == layer)
    cfg = s.config(layer, 0.1, 4)
    cap = s.capture(s.opt)[layer]
    ref = snapea_torch(cap["x"], sl.conv.weight, sl.conv.bias, sl.conv.stride, sl.conv.padding, th=cfg.th, n=cfg.n,
                       residual=cap["res"])
    block = dict(s.net.named_modules())[layer.rsplit(".", 1)[0]]
    relu = block.relu1 if layer.endswith("conv1") else block.relu2
    got = []
    h = relu.register_forward_hook(lambda _m, _a, o: got.append(o))
    with torch.no_grad(), sp.Speculator(s.net, s.layers, {layer: cfg}):
        for x, _ in s.opt:
            s.net(x)
    h.remove()
    got = torch.cat(got)
    assert torch.equal(got == 0, ref == 0)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    assert (got == 0).float().mean() > (torch.relu(cap["out"] + (cap["res"] if cap["res"] is not None else 0)) == 0
                                         ).float().mean()


def test_exact_mode_numba_forward_matches_the_dense_network(resnet_setup):
    s = resnet_setup
    logits, ops = sp.numba_forward(s, None, 12)
    with torch.no_grad():
        dense = s.net(s.test[0][0])
    torch.testing.assert_close(logits, dense, rtol=1e-4, atol=1e-4)
    for sl in s.layers:
        assert ops[sl.name].shape[0] == 12 and ops[sl.name].max() <= sl.k and ops[sl.name].min() >= 1


def test_numba_forward_ops_equal_the_kernel_on_captured_inputs(resnet_setup):
    s = resnet_setup
    sl = s.layers[1]   # a block's second conv: residual in the accumulator
    cfgs = {sl.name: s.config(sl.name, 0.0, 8)}
    _, ops = sp.numba_forward(s, cfgs, 12)
    c = s.capture(s.test, cfgs, limit=12)[sl.name]
    with torch.no_grad():
        _, direct = early_term_conv2d(c["x"].double().numpy(), sl.conv.weight.double().numpy(),
                                      sl.conv.bias.double().numpy(), 1, 1, th=cfgs[sl.name].th, n=cfgs[sl.name].n,
                                      residual=c["res"].double().numpy())
    # the numba forward feeds this layer the float64 outputs of the (exact) numba layer before it, the
    # capture the float32 torch outputs: counts may only differ where a partial sum ties within rounding
    assert (ops[sl.name] == direct).mean() > 0.999
    assert ops[sl.name].sum() < direct.size * sl.k


def test_opt_err_on_touched_images_equals_a_full_run(resnet_setup):
    s = resnet_setup
    layer = s.layers[2].name
    cfg = s.config(layer, 0.5, 4)
    full = s.opt_err({layer: cfg})
    staged = s.opt_err({layer: cfg}, start_layer=layer)
    assert full == staged
    assert s.opt_err({}) == 0.0


def test_opt_err_cap_is_exact_up_to_the_cap_and_a_lower_bound_above(resnet_setup):
    s = resnet_setup
    n = len(s.opt_labels)
    layer = s.layers[1].name
    for tm in (0.0, 0.5, 2.0):
        cfg = s.config(layer, tm, 2)
        full = s.opt_err({layer: cfg}, start_layer=layer)
        images = torch.arange(n)
        # a cap at or above the true loss changes nothing, whatever the batch size
        assert s.opt_err({layer: cfg}, start_layer=layer, images=images, cap=full, batch=1) == pytest.approx(full)
        assert s.opt_err({layer: cfg}, start_layer=layer, images=images, cap=1.0, batch=5) == pytest.approx(full)
        if full > 0:
            # a lower cap: the run may stop early, but what it returns is above the cap and never above the truth
            low = s.opt_err({layer: cfg}, start_layer=layer, images=images, cap=full / 2, batch=1)
            assert full / 2 < low <= full + 1e-12
    # decisions are reordered with the images: precomputed outcomes give the same loss as computed ones
    sl = s.layers[1]
    cfg = s.config(sl.name, 0.5, 2)
    mask = sp.speculation_weights_mask(sl.conv.weight, cfg.n)
    cap_all = s.capture(s.opt)[sl.name]
    pre = cap_all["out"] + (cap_all["res"] if cap_all["res"] is not None else 0)
    _, pred = sp._false_negatives(sl, cap_all, pre, cfg, mask)
    idx = torch.arange(n)
    direct = s.opt_err({sl.name: cfg}, start_layer=sl.name, masks={sl.name: mask})
    assert s.opt_err({sl.name: cfg}, start_layer=sl.name, masks={sl.name: mask}, images=idx,
                     decisions={sl.name: pred}, cap=1.0, batch=3) == pytest.approx(direct)


def test_opt_err_cap_stops_early_when_every_image_can_only_be_lost():
    torch.manual_seed(0)
    net = quant.fold_batchnorm(randomised_bn(CifarResNet(8)).eval())
    x = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = net(x).argmax(1)   # labels = exact predictions: every image starts right
    s = sp.Setup("resnet8", net, [(x[:8], y[:8]), (x[8:], y[8:])], [(x, y)])
    layer = s.layers[0].name
    cfg = s.config(layer, 1.0, 2)
    full = s.opt_err({layer: cfg}, start_layer=layer)
    assert full >= 0.5   # aggressive speculation flips most images
    low = s.opt_err({layer: cfg}, start_layer=layer, images=torch.arange(12), cap=0.2, batch=1)
    assert 0.2 < low < full   # stopped as soon as the loss passed the cap
    assert s.opt_err({layer: cfg}, start_layer=layer, images=torch.arange(12), cap=0.2, batch=12) == pytest.approx(full)


def test_kernel_profile_with_a_cap_keeps_param_k(resnet_setup):
    s = resnet_setup
    full = sp.kernel_profile(s, [0.0, 1.0], [4], 4, progress=False)
    cap = float(np.quantile(full.loc[full["simulated"], "err"], 0.5)) if full["simulated"].any() else 0.0
    capped = sp.kernel_profile(s, [0.0, 1.0], [4], 4, progress=False, err_cap=cap)
    assert (capped["capped"] == (capped["err"] > cap + 1e-12)).all()
    assert (capped["err"] <= full["err"] + 1e-12).all()
    for eps in (0.0, cap):
        assert sp.param_k(capped, eps) == sp.param_k(full, eps)


def test_kernel_profile_rows_and_shortcut(resnet_setup):
    s = resnet_setup
    prof = sp.kernel_profile(s, [0.0, 1.0], [4], 4, progress=False)
    n_kernels = sum(sl.kernels for sl in s.layers)
    assert len(prof) == n_kernels * 3
    exact = prof[prof["n"] == 0]
    assert (exact["err"] == 0).all() and not exact["simulated"].any()
    # an aggressive threshold stops many windows after 4 MACs: far fewer MACs than the exact mode in total
    assert prof[prof["th_mult"] == 1.0]["op"].sum() < 0.8 * exact["op"].sum()
    # a simulated single-kernel candidate: its loss equals a full run of that configuration
    row = prof[prof["simulated"]].iloc[0]
    sl = next(x for x in s.layers if x.name == row["layer"])
    cfg = s.config(sl.name, row["th_mult"], row["n"])
    one = sp.LayerConfig(np.where(np.arange(sl.kernels) == row["kernel"], cfg.th, 0.0),
                         np.where(np.arange(sl.kernels) == row["kernel"], cfg.n, 0))
    assert s.opt_err({sl.name: one}) == pytest.approx(row["err"])


def test_param_k_filters_and_sorts():
    prof = pd.DataFrame([
        {"layer": "a", "kernel": 0, "th_mult": 0.0, "n": 0, "op": 10, "err": 0.0},
        {"layer": "a", "kernel": 0, "th_mult": 0.5, "n": 4, "op": 4, "err": 0.02},
        {"layer": "a", "kernel": 0, "th_mult": 0.0, "n": 4, "op": 6, "err": 0.0},
        {"layer": "a", "kernel": 1, "th_mult": 0.0, "n": 0, "op": 9, "err": 0.0},
    ])
    pk = sp.param_k(prof, 0.01)
    assert pk["a"][0] == [(0.0, 4, 6), (0.0, 0, 10)] and pk["a"][1] == [(0.0, 0, 9)]
    assert sp.param_k(prof, 0.05)["a"][0][0] == (0.5, 4, 4)


class _FakeSetup:
    """Layers a, b; the network error is the sum of the chosen entries' errors (so merit decides)."""

    scale = {"a": np.ones(1), "b": np.ones(1)}

    def __init__(self):
        self.calls = 0

    def opt_err(self, configs, **_):
        self.calls += 1
        return sum(float(c.th[0]) for c in configs.values())   # th carries the entry's error here


def _entry(err, op, n=1):
    return {"th_mult": np.array([err]), "n": np.array([n]), "op": op, "err": err}


def test_global_pass_follows_the_merit_and_stops_within_eps():
    pl = {"a": [_entry(0.03, 10), _entry(0.01, 12), _entry(0.0, 20, n=0)],
          "b": [_entry(0.02, 10), _entry(0.0, 30, n=0)]}
    chosen, trace = sp.global_pass(_FakeSetup(), pl, 0.02)
    # start: err 0.05 > 0.02; merits: a->(0.01, 12): 0.02/2 = 0.01, a->exact 0.03/10, b->exact 0.02/20: take a.
    # then err 0.03 > 0.02; merits: a->exact 0.01/8 = 0.00125, b->exact 0.02/20 = 0.001: take a again.
    assert [t["layer"] for t in trace] == [None, "a", "a"]
    assert chosen["a"]["op"] == 20 and chosen["b"]["op"] == 10 and trace[-1]["err"] == pytest.approx(0.02)


def test_accelerator_model():
    ops = np.array([[[[5, 1, 1, 1, 2, 2, 2, 2]]]])   # one kernel, 8 windows
    assert energy.snapea_cycles(ops, lanes=4, pes=1) == 5 + 2
    assert energy.snapea_cycles(ops, lanes=1, pes=1) == ops.sum()
    assert energy.snapea_cycles(ops, lanes=8, pes=1) == 5
    assert energy.snapea_cycles(ops[..., :6], lanes=4, pes=1) == 5 + 2   # padded last group
    assert energy.dense_cycles(512) == 2.0
    # Table 3.3: baseline 16 x (0.2 + 2 x 0.2); SnaPEA 16 x (0.3 + (1 + 2/4) x 0.2): equal at 4 lanes
    assert energy.mac_energy_pj(False) == pytest.approx(9.6)
    assert energy.mac_energy_pj(True, 4) == pytest.approx(9.6)
    assert energy.mac_energy_pj(True, 1) > energy.mac_energy_pj(True, 16)
    with pytest.raises(ParameterError):
        energy.validate_lanes(3)


def test_validate_sweep_names_parameters():
    with pytest.raises(ParameterError, match="models"):
        sp.validate_sweep(["lenet5"], [0.0], [4], 8, 8, 2, 0)
    with pytest.raises(ParameterError, match="th_mults"):
        sp.validate_sweep(["cifarquick"], [], [4], 8, 8, 2, 0)
    assert sp.validate_sweep(["cifarquick"], [0], [4], 8, None, 2, 0) == (["cifarquick"], [0.0], [4])


def test_speculation_partial_matches_a_masked_conv():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 3, 3, padding=1)
    x = torch.rand(2, 4, 6, 6)
    mask = sp.speculation_weights_mask(conv.weight, np.array([2, 0, 5]))
    assert mask.sum(dim=(1, 2, 3)).tolist() == [2.0, 0.0, 5.0]
    with torch.no_grad():
        full = F.conv2d(x, conv.weight * mask, conv.bias, 1, 1)
        part = sp.speculation_partial(conv, x, (conv.weight * mask)[[0, 2]], torch.tensor([0, 2]), None)
    torch.testing.assert_close(part, full[:, [0, 2]])


def _acc_rows(model, eps, macs, dense=100):
    """Accelerator rows of two SnaPEA layers and one dense layer, cycles proportional to MACs."""
    rows = [{"model": model, "eps": eps, "mode": "exact" if eps < 0 else "predictive", "layer": name,
             "snapea_layer": True, "dense_macs": dense, "baseline_cycles": float(dense), "baseline_energy_pj": float(dense),
             "snapea_macs": m, "cycles_lanes4": float(m), "snapea_energy_pj": float(m)}
            for name, m in zip(("a", "b"), macs)]
    rows.append({"model": model, "eps": eps, "mode": rows[0]["mode"], "layer": "first", "snapea_layer": False,
                 "dense_macs": dense, "baseline_cycles": float(dense), "baseline_energy_pj": float(dense),
                 "snapea_macs": dense, "cycles_lanes4": float(dense), "snapea_energy_pj": float(dense)})
    return rows


def _layer_rows(model, eps, predictive):
    return [{"model": model, "eps": eps, "layer": name, "predictive": p, "negatives": 10, "positives": 10,
             "true_negatives": 4, "false_negatives": 1} for name, p in zip(("a", "b"), predictive)]


def test_summarize_counts_only_layers_with_a_real_mac_cut():
    # exact mode: a = 80, b = 50 MACs; at eps = 0.03 both layers speculate, but only a loses >= 5 % (80 -> 40),
    # b loses 2 % (50 -> 49): one layer of two counts, and its speedup over dense is 100 / 40 = 2.5x.
    acc = pd.DataFrame(_acc_rows("m", -1.0, (80, 50)) + _acc_rows("m", 0.03, (40, 49)))
    layers = pd.DataFrame(_layer_rows("m", -1.0, (False, False)) + _layer_rows("m", 0.03, (True, True)))
    cut = sp.predictive_mac_cut(acc, "m", 0.03)
    assert cut["a"] == pytest.approx(0.5) and cut["b"] == pytest.approx(0.02)
    s = sp.summarize(acc, layers).set_index("eps")
    assert s.loc[0.03, "share_layers_predictive"] == 1.0
    assert s.loc[0.03, "share_layers_mac_cut"] == 0.5
    assert s.loc[0.03, "mac_cut_layers_speedup"] == pytest.approx(2.5)
    assert s.loc[0.03, "mac_cut_layers_energy_reduction"] == pytest.approx(2.5)
    assert s.loc[0.03, "max_layer_mac_cut"] == pytest.approx(0.5)
    assert s.loc[0.03, "true_negative_rate"] == pytest.approx(0.4)
    assert s.loc[-1.0, "share_layers_mac_cut"] == 0.0 and np.isnan(s.loc[-1.0, "mac_cut_layers_speedup"])
    # a stricter criterion drops layer a too; a looser one (1 %) counts b
    assert sp.summarize(acc, layers, min_cut=0.6).set_index("eps").loc[0.03, "share_layers_mac_cut"] == 0.0
    assert sp.summarize(acc, layers, min_cut=0.01).set_index("eps").loc[0.03, "share_layers_mac_cut"] == 1.0
    # a layer with a MAC cut but no speculating kernel (noise between runs) does not count
    layers2 = pd.DataFrame(_layer_rows("m", -1.0, (False, False)) + _layer_rows("m", 0.03, (False, True)))
    assert sp.summarize(acc, layers2).set_index("eps").loc[0.03, "share_layers_mac_cut"] == 0.0
    with pytest.raises(ValueError, match="exact-mode"):
        sp.predictive_mac_cut(acc[acc["eps"] > 0], "m", 0.03)


def test_split_overlap_is_disjoint_and_sized():
    d = sp.split_overlap("resnet20", 1000, 2000, 0)
    assert d == {"n_opt": 1000, "n_test": 2000, "shared": 0}
    assert sp.split_overlap("cifarquick", 256, None, 3) == {"n_opt": 256, "n_test": 10000 - 256, "shared": 0}
