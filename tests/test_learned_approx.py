"""akhlaghi2020 ch. 4 CNN side: learnable quantizers, DRAM errors, learned approximation, voltage, FPGA allocation."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from axlib import energy
from axlib.methods import fpga_alloc as A
from axlib.methods import learned_approx as L
from axlib.methods import learned_approx_flow as FL
from axlib.models.resnet_cifar import CifarResNet
from axlib.nn import dram
from axlib.quant import learnable, quantize
from axlib.validate import ParameterError


def _x(n=4096, scale=3.0, seed=0):
    return scale * torch.randn(n, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- learnable quantizers


@pytest.mark.parametrize("q", [0, 1, 3, 6, 10])
@pytest.mark.parametrize("m", [1, 5])
def test_fixed_learnable_equals_fixed_quantizer_at_integer_bits(q, m):
    x = _x()
    got = learnable.learnable_quantize(x, torch.tensor(float(q)), "fixed", m)
    assert torch.equal(got, quantize(x, 1 + m + q, m))


def test_bfloat_learnable_at_7_bits_is_bfloat16_and_at_23_is_identity():
    x = _x(scale=50.0)
    assert torch.equal(learnable.learnable_quantize(x, torch.tensor(7.0), "bfloat"), x.bfloat16().float())
    assert torch.equal(learnable.bfloat_mantissa(x, 23), x)


@pytest.mark.parametrize("q", [0, 2, 5])
def test_bfloat_mantissa_keeps_q_bits_and_rounds_to_nearest(q):
    x = _x(scale=10.0).abs() + 0.01
    y = learnable.bfloat_mantissa(x, q)
    low = torch.bitwise_and(y.view(torch.int32), (1 << (23 - q)) - 1)
    assert int(low.abs().sum()) == 0                            # dropped mantissa bits are zero
    e = torch.floor(torch.log2(x))
    ulp = 2.0 ** (e - q)
    assert bool(((y - x).abs() <= ulp / 2 + 1e-12).all())      # nearest representable value


@pytest.mark.parametrize("fmt,m", [("fixed", 5), ("bfloat", 0)])
def test_continuous_bits_interpolate_and_pass_gradients(fmt, m):
    x = _x(scale=5.0).requires_grad_(True)
    q = torch.tensor(3.3, requires_grad=True)
    y = learnable.learnable_quantize(x, q, fmt, m)
    lo = learnable.learnable_quantize(x.detach(), torch.tensor(3.0), fmt, m)
    hi = learnable.learnable_quantize(x.detach(), torch.tensor(4.0), fmt, m)
    assert torch.allclose(y.detach(), 0.7 * lo + 0.3 * hi, atol=1e-6)
    y.sum().backward()
    assert q.grad is not None and math.isclose(float(q.grad), float((hi - lo).sum()), rel_tol=1e-5)
    assert torch.equal(x.grad, torch.ones_like(x))             # straight-through in x


def test_per_channel_bits_broadcast_along_their_dimension():
    w = torch.randn(4, 3, 3, 3)
    q = torch.tensor([1.0, 2.0, 3.0, 4.0])
    y = learnable.learnable_quantize(w, q, "fixed", 1, dim=0)
    for i in range(4):
        assert torch.equal(y[i], quantize(w[i], 2 + i + 1, 1))
    with pytest.raises(ValueError):
        learnable.learnable_quantize(w, q[:3], "fixed", 1, dim=0)
    yb = learnable.learnable_quantize(w, q, "bfloat", dim=0)      # vector path == scalar fast path
    for i in range(4):
        assert torch.equal(yb[i], learnable.bfloat_mantissa(w[i], int(q[i])))


# --------------------------------------------------------------------------- DRAM errors


def test_word_error_rate_is_eq_4_11():
    assert math.isclose(float(dram.word_error_rate(1e-3, 16)), 1 - (1 - 1e-3) ** 16, rel_tol=1e-12)
    assert float(dram.word_error_rate(0.0, 16)) == 0.0


@pytest.mark.parametrize("alpha", [0.01, 0.2])
def test_bernoulli_mode_replaces_the_expected_share_of_words(alpha):
    x = torch.full((200_000,), 7.0)
    y = dram.corrupt(x, torch.tensor(alpha), -1.0, 1.0, torch.Generator().manual_seed(1), "bernoulli")
    share = float((y != x).double().mean())
    assert abs(share - alpha) <= 4 * math.sqrt(alpha * (1 - alpha) / len(x))


def test_expected_mode_is_eq_4_2_in_the_mean():
    x = torch.full((200_000,), 0.5)
    y = dram.corrupt(x, torch.tensor(0.3), -1.0, 1.0, torch.Generator().manual_seed(2), "expected")
    assert abs(float(y.mean()) - 0.7 * 0.5) < 0.005           # E[αE + (1-α)x] with E ~ U[-1, 1]


@pytest.mark.parametrize("p", [1e-3, 2e-2])
def test_bit_flips_realise_their_ber_within_sampling_error(p):
    n_bits, frac = 12, 6
    x = quantize(_x(50_000, 4.0), n_bits, n_bits - 1 - frac)
    y = dram.flip_bits(x, p, n_bits, frac, torch.Generator().manual_seed(3))
    a = torch.bitwise_and(torch.round(x.double() * 2 ** frac).long(), (1 << n_bits) - 1)
    b = torch.bitwise_and(torch.round(y.double() * 2 ** frac).long(), (1 << n_bits) - 1)
    diff = torch.bitwise_xor(a, b)
    flipped = sum(int(((diff >> k) & 1).sum()) for k in range(n_bits))
    total = n_bits * len(x)
    assert abs(flipped / total - p) <= 4 * math.sqrt(p * (1 - p) / total)
    words = float((a != b).double().mean())
    expect = float(dram.word_error_rate(p, n_bits))
    assert abs(words - expect) <= 4 * math.sqrt(expect * (1 - expect) / len(x))
    assert torch.equal(dram.flip_bits(x, 0.0, n_bits, frac, torch.Generator()), x)


def test_inject_is_seeded_and_removable():
    model = CifarResNet(8).eval()
    x = torch.randn(4, 3, 32, 32)
    clean = model(x)
    w_before = model.conv1.weight.detach().clone()
    errs = {"conv1": dram.OperandErrors(0.05, -1.0, 1.0)}
    outs = []
    for _ in range(2):
        with dram.inject(model, inputs=errs, weights=errs, seed=7, mode="bernoulli"):
            outs.append(model(x))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], clean)
    assert torch.equal(model(x), clean) and torch.equal(model.conv1.weight, w_before)
    with pytest.raises(ParameterError):
        dram.inject(model, inputs={"nope": errs["conv1"]})


# --------------------------------------------------------------------------- Table 4.6 voltages


def test_voltage_thresholds_of_table_4_6():
    t = energy.ber_thresholds()
    assert [round(100 * t[v], 4) for v in (1.25, 1.2, 1.15, 1.1)] == [0.1645, 0.6708, 0.795, 1.0772]
    assert energy.dram_voltage(0.0) == 1.3 and energy.dram_voltage(0.0016) == 1.3
    assert energy.dram_voltage(0.00165) == 1.25 and energy.dram_voltage(0.0068) == 1.2
    assert energy.dram_voltage(0.008) == 1.15 and energy.dram_voltage(0.02) == 1.1


def test_dram_energy_saving_of_quantization_only():
    layers = pd.DataFrame({"w_elems": [100, 200], "ifm_elems": [50, 60], "ofm_elems": [60, 70], "p_w": [0.0, 0.0],
                           "p_f": [0.0, 0.0], "n_w": [8.0, 8.0], "n_f": [8.0, 8.0]})
    e = FL.dram_energy(layers, [2.0]).iloc[0]
    assert math.isclose(e["saving_vs_1.3V_pct"], 50.0) and e["voltage_share_pct"] == 0.0
    assert math.isclose(e["saving_vs_1.5V_pct"], 100 * (1 - 0.5 * (1.3 / 1.5) ** 2))


# --------------------------------------------------------------------------- FPGA allocation (Problem 4.2)


def test_resource_stand_in_reproduces_table_4_8_and_allocation_respects_budget():
    assert round(A.resources({(7, 7): 128})["lut"]) == 48892 and round(A.resources({(7, 7): 128})["ff"]) == 20536
    two = A.resources({(2, 3): 128, (2, 2): 128})
    assert round(two["lut"]) == 51704 and round(two["ff"]) == 13762
    gen = torch.Generator().manual_seed(0)
    for budget in ({"lut": 53_200, "ff": 106_400}, {"lut": 30_000, "ff": 20_000}):
        for k in (1, 2, 3):
            ops = {(int(a), int(b)): float(o) for a, b, o in
                   zip(torch.randint(0, 8, (k,), generator=gen), torch.randint(0, 8, (k,), generator=gen),
                       1e5 * (1 + torch.rand(k, generator=gen)))}
            best = A.allocate(ops, budget)
            if best is not None:
                assert best["lut"] <= budget["lut"] and best["ff"] <= budget["ff"]
                assert best["latency"] == pytest.approx(sum(ops[b] / m for b, m in best["macs"].items()))
    assert A.allocate({(7, 7): 1.0}, {"lut": 100, "ff": 100}) is None
    assert A.allocate({(2, 2): 1e6})["macs"] == {(2, 2): 256}   # one small group takes the most MACs


def test_merging_reduces_groups_one_at_a_time_and_only_raises_bits():
    bits = [(2, 3), (2, 2), (5, 4), (2, 2), (6, 6)]
    ops = [1, 2, 3, 4, 5]
    groupings = A.merge_groups(bits, ops)
    assert [len(set(g)) for g in groupings] == [4, 3, 2, 1]
    for g in groupings:
        assert all(a[0] >= b[0] and a[1] >= b[1] for a, b in zip(g, bits))


def test_lowering_keeps_groups_shared_and_stops_where_accuracy_would_break():
    grouping = [(7, 7), (7, 7), (5, 6)]
    seen = []

    def accurate(g):
        seen.append(g)
        return all(a >= 3 and b >= 2 for a, b in g)

    out = FL.lower_group_bits(grouping, [10.0, 10.0, 1.0], accurate)
    assert out[0] == out[1] and set(out) == {(3, 2)}
    assert all(accurate(g) for g in [out]) and not accurate([(2, 2)] * 3)
    assert FL.lower_group_bits(grouping, [1.0, 1.0, 1.0], lambda g: False) == grouping


@pytest.mark.parametrize("budget", [{"lut": 0, "ff": 1}, {"lut": 5, "ff": -1}, {"lut": 5}, {"lut": 1, "ff": 1, "dsp": 2}])
def test_bad_budget_is_refused(budget):
    with pytest.raises(ParameterError):
        A.check_budget(budget)


# --------------------------------------------------------------------------- the learned approximation


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = CifarResNet(8).eval()
    x = torch.randn(64, 3, 32, 32)
    y = model(x).argmax(1)                                       # labels the float model gets right
    return model, x, y


@pytest.mark.parametrize("setup", list(FL.SETUPS.values()), ids=list(FL.SETUPS))
def test_high_precision_without_dram_matches_the_float_network(tiny, setup):
    model, x, _ = tiny
    net = L.ApproxNet(model, setup, seed=0, q_init=7.0)
    cfg = L.snapshot(net)
    top = {k: L.max_bits(setup.fmt, k) for k in ("w", "f")}
    cfg["layers"] = {n: {**c, "q_w": top["w"], "q_f": top["f"]} for n, c in cfg["layers"].items()}
    L.apply(net, cfg)
    with torch.no_grad(), net.without_dram():
        tol = 1e-2 if setup.fmt == "bfloat" else 5e-3
        assert torch.allclose(net(x), model(x), atol=tol * float(model(x).abs().max()))


def test_learning_moves_hardware_parameters_only_and_is_deterministic(tiny):
    model, x, y = tiny
    runs = []
    for _ in range(2):
        net = L.ApproxNet(model, FL.SETUPS["layer"], seed=5)
        w0 = [p.detach().clone() for p in model.parameters()]
        res = L.learn(net, x, y, x[:32], y[:32], epochs=1, batch_size=16, check_every=2, seed=5, progress=False)
        runs.append(res.trace)
        assert all(torch.equal(a, b) for a, b in zip(w0, model.parameters()))
        assert all(torch.equal(a, b.conv.weight) for a, b in zip(
            [p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() == 4],
            net.approx_layers().values()))
    pd.testing.assert_frame_equal(runs[0], runs[1])
    assert runs[0]["mean_q_f"].iloc[-1] != runs[0]["mean_q_f"].iloc[0]
    for layer in res.final["layers"].values():
        assert L.P_RANGE[0] <= layer["p_w"] <= L.P_RANGE[1] * (1 + 1e-6)
        assert float(layer["q_w"]) == int(layer["q_w"])              # snapped to integers


def test_snapshot_apply_round_trip_and_snapping_up(tiny):
    model, x, _ = tiny
    net = L.ApproxNet(model, FL.SETUPS["filter"], seed=1)
    raw, snapped = L.snapshot(net, snapped=False), L.snapshot(net)
    for n in raw["layers"]:
        assert all(s >= r - 1e-6 and s - r < 1 for s, r in zip(snapped["layers"][n]["q_w"], raw["layers"][n]["q_w"]))
    L.apply(net, snapped)
    assert L.snapshot(net, snapped=False)["layers"] == snapped["layers"]
    a = L.accuracy_pct(net, x, x.new_zeros(64, dtype=torch.long), "bernoulli", seed=3)
    b = L.accuracy_pct(net, x, x.new_zeros(64, dtype=torch.long), "bernoulli", seed=3)
    assert a == b


BAD = [dict(models=["resnet18"]), dict(models=[]), dict(n_train=0), dict(lr=0), dict(reg_share=-1),
       dict(q_init=33), dict(q_init=-0.5), dict(ber_init={"w": 1.5}), dict(ber_init={"w": -0.1}),
       dict(ber_init={"x": 0.1}), dict(n_select=0), dict(seed=-1), dict(n_select=6000, n_report=5000),
       dict(models=["resnet20", "resnet20"])]
GOOD = dict(models=["resnet20"], n_train=10, epochs=1, batch_size=4, lr=0.1, reg_share=0.05, check_every=1,
            ft_iterations=0, n_select=10, n_report=10, seed=0, q_init=7.0, ber_init={"w": 1e-4, "f": 1e-5})


@pytest.mark.parametrize("bad", BAD, ids=[str(b) for b in BAD])
def test_bad_parameters_are_refused_before_any_work(bad):
    FL.validate_params(**GOOD)
    with pytest.raises(ParameterError):
        FL.validate_params(**{**GOOD, **bad})


def test_resnet110_without_weights_names_the_file(monkeypatch, tmp_path):
    from axlib.data.integrity import MissingDataError

    monkeypatch.setenv("AXLIB_DATA", str(tmp_path))
    monkeypatch.setenv("AXLIB_OFFLINE", "1")
    monkeypatch.setenv("AXLIB_DOWNLOADS", str(tmp_path / "dl"))
    with pytest.raises(MissingDataError, match="resnet110-1d1ed7c2.th"):
        L.load_network("resnet110")
