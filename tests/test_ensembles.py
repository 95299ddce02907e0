"""ponzina2022: ensembles (axlib.models.ensemble), QAT in the zoo, the search procedures, energy and
area arithmetic (axlib.methods.ensembles)."""

from __future__ import annotations

import math

import pytest
import torch

from axlib.methods import ensembles as E
from axlib.models import ensemble as ens
from axlib.models.cifarquick import CifarQuick
from axlib.models.vggf_cifar import VGGfCifar
from axlib.validate import ParameterError
from tests.conftest import randomised_bn

# --------------------------------------------------------------------------- ensemble module


@pytest.mark.parametrize("base", ens.ENSEMBLE_BASES)
@pytest.mark.parametrize("m", [2, 4, 8])
def test_ensemble_macs_and_memory_within_10_percent_of_single(base, m):
    build = ens._builder(base)
    single = build()
    w = ens.instance_width(base, m)
    inst = build(width=w)
    ratio = m * ens.macs_per_image(inst) / ens.macs_per_image(single)
    assert 0.9 <= ratio <= 1.0
    params = m * sum(p.numel() for p in inst.parameters()) / sum(p.numel() for p in single.parameters())
    assert 0.5 <= params <= 1.0, params  # no memory overhead either (parameters fall by at least M)


def test_width_one_is_the_original_network_and_bad_widths_are_refused():
    assert sum(p.numel() for p in CifarQuick(width=1.0).parameters()) == 145578
    assert sorted(CifarQuick().state_dict()) == sorted(CifarQuick(width=0.5).state_dict())
    for bad in (0, -1, 5, True, "1"):
        with pytest.raises(ParameterError):
            VGGfCifar(width=bad)


def test_ensemble_is_mean_softmax_and_every_instance_layer_is_addressable():
    torch.manual_seed(0)
    members = [CifarQuick(width=0.5) for _ in range(3)]
    e = ens.Ensemble(members).eval()
    x = torch.randn(4, 3, 32, 32)
    expect = sum(torch.softmax(m(x), 1) for m in members) / 3
    torch.testing.assert_close(e(x), expect)
    assert ens.instance_layers(e, "conv2") == ["m0.conv2", "m1.conv2", "m2.conv2"]
    ev = E.ConfigEvaluator(e, [(x, None)], x, torch.zeros(4, dtype=torch.long))
    assert len(ev.layers) == 15 and "m2.ip2" in ev.layers
    approx = ev.build({"m1.conv2": "Mul8VH", "m2.conv3": "Exact8"})
    from axlib.nn import ApproxLayer

    assert approx.m1.conv2.multiplier.name == "Mul8VH" and approx.m0.conv2.multiplier is None
    assert (approx.m2.conv3.w_bits, approx.m2.conv3.bits) == (4, 8)
    assert (approx.m0.conv3.w_bits, approx.m0.conv3.bits) == (8, 16)
    assert all(isinstance(dict(approx.named_modules())[n], ApproxLayer) for n in ev.layers)
    with pytest.raises(ParameterError, match="unknown layer"):
        ev.build({"m3.conv1": "Mul8VH"})


def test_bad_ensemble_sizes_are_refused_before_any_work():
    for bad in (0, -1, 17, 2.0, True):
        with pytest.raises(ParameterError):
            ens.check_m(bad)
    with pytest.raises(ParameterError):
        ens.instance_width("resnet20", 2)
    with pytest.raises(ParameterError):
        ens.get_ensemble("cifarquick", 0)


# --------------------------------------------------------------------------- QAT


def test_qat_rounds_weights_and_inputs_and_leaves_plain_names():
    from axlib.quant import qat

    torch.manual_seed(0)
    net = CifarQuick(width=0.25)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    w_before = net.conv1.weight
    x = torch.randn(2, 3, 32, 32)
    with qat.fake_quantized_training(net, "4/8"):
        assert qat.is_fake_quantized(net)
        w = net.conv1.weight
        step = w.detach().abs().max() / 7
        torch.testing.assert_close(w / step, torch.round(w / step))
        loss = net(x).sum()
        loss.backward()
        assert net.conv1.parametrizations.weight.original is w_before
        assert sorted(qat.plain_state_dict(net)) == sorted(CifarQuick(width=0.25).state_dict())
        opt.step()
    assert not qat.is_fake_quantized(net)
    assert net.conv1.weight is w_before and w_before.grad is not None  # the optimiser's parameter, trained


def test_recipe_extra_is_checked():
    from axlib.models.zoo import Recipe

    Recipe(epochs=3, extra={"qat_epochs": 2}).validate()
    for extra in ({"qat_epochs": 4}, {"qat_epochs": -1}, {"qat_scheme": "8/x"}, {"warm": 1}):
        with pytest.raises(ParameterError):
            Recipe(epochs=3, extra=extra).validate()


# --------------------------------------------------------------------------- energy and area


def test_energy_arithmetic_gives_the_papers_numbers():
    assert E.uniform_reduction_pct("MulF6B") == pytest.approx(14.5, abs=0.05)  # §5.1 / Table 1
    assert E.uniform_reduction_pct("Exact8") == pytest.approx(85.6, abs=0.05)
    macs = {"a": 100.0, "b": 300.0}
    assert E.energy_reduction_pct(macs, {}, 400) == pytest.approx(0.0)
    assert E.energy_reduction_pct(macs, {"b": "Exact8"}, 400) == pytest.approx(0.75 * 85.6216, abs=1e-3)
    # an ensemble with 90 % of the MACs, all Exact16, saves 10 % against the single instance
    assert E.energy_reduction_pct({"m0.a": 180.0, "m1.a": 180.0}, {}, 400) == pytest.approx(10.0)
    with pytest.raises(ParameterError):
        E.multiply_energy(macs, {"c": "Exact8"})
    with pytest.raises(ParameterError):
        E.multiply_energy(macs, {"a": "Mul9XX"})


def test_area_arithmetic_gives_fig6():
    a = E.area_combinations().set_index("combination")
    assert a.loc["Exact16 + Exact8 + MulF6B", "area_um2"] == pytest.approx(1159.0, abs=0.05)
    assert a.loc["Exact16 + Exact8 + MulF6B", "overhead_pct"] == pytest.approx(86, abs=0.5)
    assert a.loc["Exact16 + Exact8", "area_um2"] == pytest.approx(717.3, abs=0.05)
    assert a.loc["Exact16 + Exact8 + Mul8VH", "area_um2"] == pytest.approx(910.2, abs=0.05)
    assert a.loc["proposal + Mul8VH", "inexact_over_exact16_pct"] == pytest.approx(31, abs=0.5)
    assert a.loc["proposal + MulF6B", "inexact_over_exact16_pct"] == pytest.approx(71, abs=0.5)
    assert a.loc["proposal + MulF6B", "area_um2"] == pytest.approx(622.5 * 1.06 + 441.7)


# --------------------------------------------------------------------------- search procedures, known answers


def _additive(penalties: dict, base: float = 90.0):
    """A network whose accuracy loses penalties[(layer, unit)] pp per layer on that unit."""
    calls = []

    def evaluate(units):
        calls.append(dict(units))
        return base - sum(penalties.get((n, u), 0.0) for n, u in units.items())
    return evaluate, calls


def test_greedy_quantization_known_answer():
    pen = {("m0.c1", "Exact8"): 3.0, ("m0.c2", "Exact8"): 1.0, ("m1.c1", "Exact8"): 1.5, ("m1.c2", "Exact8"): 0.5}
    evaluate, calls = _additive(pen)
    units, trace = E.greedy_quantization([["m0.c1", "m0.c2"], ["m1.c1", "m1.c2"]], evaluate, threshold_pct=87.0)
    # m0.c1 (-3 -> 87 ok), m0.c2 (-4 -> 86 no), m1.c1 (-4.5 no), m1.c2 (-3.5 -> 86.5 no)
    assert units == {"m0.c1": "Exact8", "m0.c2": "Exact16", "m1.c1": "Exact16", "m1.c2": "Exact16"}
    assert len(calls) == 4 and list(trace["accepted"]) == [True, False, False, False]
    units, _ = E.greedy_quantization([["m0.c1", "m0.c2"], ["m1.c1", "m1.c2"]], evaluate, threshold_pct=86.0)
    assert units == {"m0.c1": "Exact8", "m0.c2": "Exact8", "m1.c1": "Exact16", "m1.c2": "Exact16"}
    with pytest.raises(ParameterError):
        E.greedy_quantization([[]], evaluate, 80.0)
    with pytest.raises(ParameterError):
        E.greedy_quantization([], evaluate, 80.0)


def test_mapping_follows_the_order_stops_at_the_first_violation_and_is_linear():
    members = lambda n: [f"m0.{n}", f"m1.{n}"]  # noqa: E731
    pen = {(f"m{k}.{n}", "Mul8VH"): p for k in (0, 1) for n, p in (("a", 0.5), ("b", 3.0), ("c", 0.25), ("d", 0.25))}
    evaluate, calls = _additive(pen)
    start = {"m0.d": "Exact8", "m1.d": "Exact8"}
    order = ["c", "a", "b", "d"]
    units, trace = E.map_inexact(start, order, members, evaluate, threshold_pct=87.0)
    assert units == {**start, "m0.c": "Mul8VH", "m1.c": "Mul8VH", "m0.a": "Mul8VH", "m1.a": "Mul8VH"}
    assert list(trace["layer"]) == ["c", "a", "b"] and len(calls) <= len(order)  # stops at b, O(L)
    assert trace["evaluated"].all()
    units, trace = E.map_inexact(start, ["b", "c", "a", "d"], members, evaluate, 87.0, skip_violations=True)
    assert units.get("m0.b", "Exact16") == "Exact16" and units["m0.a"] == "Mul8VH"  # b reverted, the rest tried
    assert list(trace[~trace["evaluated"]]["layer"]) == ["d"]  # 4/8 everywhere: recorded, never evaluated
    assert len(calls) == 3 + 3  # the first call's three and this call's three (b, c, a)
    for bad in ("Exact16", "Mul9", None):
        with pytest.raises(ParameterError):
            E.map_inexact(start, order, members, evaluate, 87.0, unit=bad)
    with pytest.raises(ParameterError):
        E.map_inexact(start, [], members, evaluate, 87.0)


def test_sensitivity_order_and_first_n():
    import pandas as pd

    drops = pd.DataFrame({"layer_index": [0, 1, 2, 3], "layer": ["a", "b", "c", "d"], "drop_pp": [9.0, 0.5, 0.5, 2]})
    assert E.sensitivity_order(drops) == ["b", "c", "d", "a"]
    assert E.first_n(["b", "c"], 1, lambda n: [n]) == {"b": "Mul8VH"}


@pytest.mark.parametrize("bad", [0, -5, 100.5, float("nan"), "5", True])
def test_bad_limits_are_refused(bad):
    with pytest.raises(ParameterError):
        E.check_limit("max_drop_pp", bad)


# --------------------------------------------------------------------------- sensitivity on a real (random) net


def _resnet8():
    from axlib.models.resnet_cifar import CifarResNet

    return CifarResNet(8)


@pytest.mark.parametrize("build", [lambda: CifarQuick(width=0.25), lambda: VGGfCifar(width=0.25), _resnet8],
                         ids=["cifarquick", "vggf", "resnet8"])
def test_sensitivity_with_reused_stage_inputs_equals_the_full_network(build):
    torch.manual_seed(0)
    net = build()
    randomised_bn(net)
    net.eval()
    x = torch.randn(24, 3, 32, 32)
    with torch.no_grad():
        y = net(x).argmax(1)
    y[::3] = (y[::3] + 1) % 10
    ev = E.ConfigEvaluator(net, [(x, None)], x, y, batch_size=10)
    fast = E.sensitivity(ev, "Mul8VH", reuse_inputs=True, progress=False)
    slow = E.sensitivity(ev, "Mul8VH", reuse_inputs=False, progress=False)
    assert list(fast["layer"]) == ev.layers
    assert list(fast["accuracy_pct"]) == list(slow["accuracy_pct"])
    assert math.isclose(fast["mac_share_pct"].sum(), 100.0)
    direct = E.accuracy_pct(ev.build({ev.layers[1]: "Mul8VH"}), x, y)
    assert fast["accuracy_pct"].iloc[1] == direct


# --------------------------------------------------------------------------- the CIFAR-100 path


def _fake_cifar100(root, n_train=200, n_test=120, seed=0):
    """A small folder in torchvision's CIFAR-100 layout (pickled ``train``, ``test``, ``meta``)."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(seed)
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    for name, n in (("train", n_train), ("test", n_test)):
        labels = rng.integers(0, 100, n)
        # class-dependent mean colour so that a network can learn something
        data = (rng.integers(0, 64, (n, 3072)) + (labels[:, None] * 2)).astype(np.uint8)
        with open(d / name, "wb") as f:
            pickle.dump({"data": data, "fine_labels": labels.tolist(), "coarse_labels": [0] * n}, f)
    with open(d / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, f)


def test_cifar100_path_trains_and_evaluates_an_ensemble_on_a_fake_folder(tmp_path, monkeypatch):
    """The cifar100 option end to end on a fake torchvision folder. Its files cannot match torchvision's
    md5 sums, so the integrity check is bypassed for this folder only."""
    import torchvision.datasets.cifar as tv_cifar

    from axlib.methods import ensembles_flow as flow

    _fake_cifar100(tmp_path / "data")
    monkeypatch.setenv("AXLIB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda path, md5=None: True)
    zoo = {"cifarquick": {"epochs": 1, "n_train": 200, "batch_size": 50}}
    f = flow.NetFlow("cifarquick", [2], zoo, 40, 60, 32, 0, dataset="cifar100", progress=False)
    assert f.models[2].m0.ip2.out_features == 100
    assert sorted(p.name for p in (tmp_path / "cache" / "models").glob("*.pt")) and all(
        "cifar100" in p.name for p in (tmp_path / "cache" / "models").glob("*.pt"))
    het, trace = f.heterogeneous(2, 5.0)
    assert len(trace) == 10 and set(het.values()) <= {"Exact16", "Exact8"}
    p = f.point(2, het, "heterogeneous")
    assert 0 <= p["accuracy_pct"] <= 100 and p["M"] == 2
    with pytest.raises(ParameterError, match="resnet20"):
        flow.check_common(["resnet20"], 40, 60, 32, 0, "cifar100")


@pytest.mark.parametrize("kwargs, match", [
    (dict(nets=[]), "nets"), (dict(nets=["alexnet"]), "nets"), (dict(max_drop_pp=0), "max_drop_pp"),
    (dict(max_drop_pp=101), "max_drop_pp"), (dict(unit="Mul9XX"), "unit"), (dict(unit="Exact8"), "unit"),
    (dict(ensembles={"cifarquick": [0]}), "M"), (dict(ensembles={"cifarquick": []}), "ensembles"),
    (dict(ensembles={"cifarquick": [1]}), "M"), (dict(ensembles={"vggf_cifar": [2]}), "not in nets"),
    (dict(dataset="svhn"), "dataset"), (dict(zoo={"cifarquick": {"epochz": 1}}), "epochz"),
])
def test_fig04_parameters_are_refused_before_any_work(kwargs, match, tmp_path, monkeypatch):
    from axlib.methods import nbparams

    monkeypatch.setenv("AXLIB_RUNS", str(tmp_path / "runs"))
    base = dict(nets=["cifarquick"], ensembles={"cifarquick": [2]}, zoo={}, unit="Mul8VH", max_drop_pp=5.0,
                skip_violations=False, n_select=10, n_report=10, n_calib=10, dataset="cifar10", seed=0, profile="smoke")
    with pytest.raises(ParameterError, match=match):
        nbparams.check("ponzina2022/fig04", **{**base, **kwargs})
    assert not (tmp_path / "runs").exists()


def test_greedy_quantization_on_a_tiny_network_with_a_known_answer():
    """Layer 0 has one outlier weight (10) beside the informative 0.1s: at 4 bits its step is 10/7, the
    0.1s round to zero and the prediction collapses; layer 1 holds ones (exact at 4 bits). The greedy
    step must therefore put layer 1 (only) on 4/8."""
    torch.manual_seed(0)
    x = torch.randn(400, 8)
    x[:, 7] = 0  # the outlier weight sees no signal, so layer 1's inputs keep their small range
    y = x[:, :4].argmax(1)
    l0, l1 = torch.nn.Linear(8, 8, bias=False), torch.nn.Linear(8, 4, bias=False)
    with torch.no_grad():
        l0.weight.copy_(torch.diag(torch.tensor([0.1] * 4 + [0.0] * 3 + [10.0])))
        l1.weight.copy_(torch.eye(4, 8))
    net = torch.nn.Sequential(l0, l1).eval()
    ev = E.ConfigEvaluator(net, [(x, y)], x, y)
    assert ev({}) > 95
    assert ev({"0": "Exact8"}) < 50 and ev({"1": "Exact8"}) > 95
    units, trace = E.greedy_quantization([ev.layers], ev, threshold_pct=ev({}) - 5)
    assert units == {"0": "Exact16", "1": "Exact8"}
    assert list(trace["accepted"]) == [False, True]
    mapped, _ = E.map_inexact(units, ["1", "0"], lambda n: [n], ev, ev({}) - 5)
    assert mapped["1"] == "Exact8"  # a 4/8 layer never gets the inexact 8x16 multiplier
