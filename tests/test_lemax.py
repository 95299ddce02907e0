"""LEMAX on LR/SVM weight updates (akhlaghi2020 §4.5.1): counts, Table 4.1, exactness, learning, validation."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from axlib import energy
from axlib.methods import lemax as L
from axlib.validate import ParameterError

#: Table 4.2 (params, adders, multipliers); LR-512 corrected from the garbled 1024 / 1536 / 2269.
TABLE_4_2 = {("lr", 32): (161, 64, 96), ("lr", 64): (321, 128, 192), ("lr", 256): (1281, 512, 768),
             ("lr", 512): (2561, 1024, 1536), ("svm", 32): (226, 95, 130), ("svm", 64): (450, 191, 258),
             ("svm", 256): (1794, 767, 1026), ("svm", 512): (3586, 1535, 2050)}

TINY = dict(data="synthetic", n_train=240, n_val=120, batch=80, eta=0.01, svm_lambda=1e-4, seed=3)


@pytest.fixture(scope="module")
def problems():
    return {app: L.make_problem(app, 8, **TINY) for app in L.APPS}


@pytest.mark.parametrize("key", sorted(TABLE_4_2))
def test_counts_equal_table_4_2(key):
    c = L.counts(*key)
    assert (c["params"], c["adders"], c["multipliers"]) == TABLE_4_2[key]
    assert c["dram"] == 1


def test_inventory_execution_counts():
    inv = L.inventory("lr", 4, batch=10).set_index("op")
    assert inv.loc["M1_wx", "exec_per_iter"] == 40 and inv.loc["M3_eta", "exec_per_iter"] == 4
    assert inv.loc["A1_dot", "static"] == 3 and inv["static"].sum() == 5 * 4 + 1


@pytest.mark.parametrize("unit", energy.LEMAX_UNITS)
def test_interpolation_at_integer_levels_is_table_4_1(unit):
    errs, ens = energy.LEMAX_TABLE_4_1[unit]
    s = torch.arange(len(errs), dtype=torch.float64)
    e, en = L.interp(unit, s)
    assert torch.allclose(e, torch.tensor(errs, dtype=torch.float64), rtol=0, atol=0)
    assert torch.allclose(en, torch.tensor(ens, dtype=torch.float64), rtol=1e-15, atol=0)
    mid_e, _ = L.interp(unit, torch.tensor([0.5], dtype=torch.float64))
    assert mid_e.item() == pytest.approx((errs[0] + errs[1]) / 2)


def test_table_4_1_values_and_unknown_unit():
    assert energy.LEMAX_TABLE_4_1["multiplier"][1][0] == pytest.approx(4920e-6)   # fJ in nJ
    assert energy.LEMAX_TABLE_4_1["adder"][1][3] == pytest.approx(1145e-9)        # aJ in nJ
    assert energy.LEMAX_TABLE_4_1["dram"][1] == (132.84, 120.8, 110.2, 102.6, 99.6)
    with pytest.raises(ParameterError, match="unit"):
        energy.lemax_unit("fpu")


@pytest.mark.parametrize("app", L.APPS)
def test_exact_configuration_has_no_loss_and_ratio_one(problems, app):
    prob = problems[app]
    cfg = L.Config(app, 8, "APX-DMA")
    for t in cfg.theta.values():
        with torch.no_grad():
            t.fill_(-50.0)                       # h(θ) clipped to 0: every level exact
    q, en = L.evaluate(prob, cfg, snapped=False, validation=False, gen=torch.Generator().manual_seed(0))
    assert q == 0.0
    assert sum(en.values()) == pytest.approx(sum(L.exact_energy(app, 8, TINY["batch"]).values()), rel=1e-12)


@pytest.mark.parametrize("app", L.APPS)
def test_gradients_reach_theta(problems, app):
    prob = problems[app]
    cfg = L.Config(app, 8, "APX-DMA")
    omega, en = L.errors_and_energy(cfg.ops, cfg.levels(), TINY["batch"], 8)
    dw = L.update(app, prob.X, prob.y, prob.W, omega, prob.eta, prob.svm_lambda, prob.x_range,
                  torch.Generator().manual_seed(0))
    dw0 = L.update(app, prob.X, prob.y, prob.W, L._exact_config(app, 8), prob.eta, prob.svm_lambda)
    (sum(en.values()) + 100 * L.quality(dw, dw0)).backward()
    for name, t in cfg.theta.items():
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0, name


def test_snapping_is_conservative(problems):
    cfg, _ = L.learn(problems["lr"], "APX-DMA", 5.0, steps=60, seed=1)
    cont, snapped = cfg.levels(), cfg.levels(snapped=True)
    for name in cont:
        assert (snapped[name] <= cont[name] + 1e-12).all() and (snapped[name] > cont[name] - 1).all()
        assert (snapped[name] == snapped[name].round()).all()


@pytest.mark.parametrize("app", L.APPS)
def test_learned_run_meets_target_and_saves_energy(problems, app):
    prob = problems[app]
    cfg, trace = L.learn(prob, "APX-DMA", 2.0, steps=150, seed=2)
    q, en = L.evaluate(prob, cfg, snapped=False, validation=False, gen=torch.Generator().manual_seed(5))
    assert q <= 0.02 * 1.15, f"{app}: learned training loss {100 * q:.2f} % misses the 2 % target"
    qs, ens = L.evaluate(prob, cfg, snapped=True, validation=False, gen=torch.Generator().manual_seed(5))
    assert qs <= 0.02 * 1.15
    ratio = sum(L.exact_energy(app, 8, TINY["batch"]).values()) / sum(ens.values())
    assert ratio > 1.05 and trace[-1] < trace[0]


def test_grid_is_deterministic():
    kw = dict(apps=["lr", "svm"], features=[4], targets_pct=[5.0], systems=["APX-DMA", "APX-ADD"], steps=15,
              progress=False, **TINY)
    a, la = L.run_grid(**kw)
    b, lb = L.run_grid(**kw)
    cols = [c for c in a.columns if c != "seconds"]
    pd.testing.assert_frame_equal(a[cols], b[cols])
    pd.testing.assert_frame_equal(la, lb)
    assert len(a) == 4 and set(a["system"]) == {"APX-DMA", "APX-ADD"}


GOOD = dict(apps=["lr"], features=[8], targets_pct=[5.0], systems=["APX-DMA"], data="synthetic", n_train=80,
            n_val=40, batch=40, steps=2, lr=0.05, lambda_q=100.0, eta=0.01, svm_lambda=1e-4, seed=0)


@pytest.mark.parametrize("name,value", [
    ("targets_pct", [0.0]), ("targets_pct", [100.0]), ("targets_pct", [-1.0]), ("targets_pct", [150]),
    ("apps", ["ridge"]), ("systems", ["APX-FPU"]), ("features", [0]), ("features", [8.5]), ("features", [-3]),
    ("batch", 0), ("batch", 30), ("steps", 0), ("steps", 1.5), ("lr", 0.0), ("lr", -0.1), ("data", "uci"),
    ("seed", -1), ("eta", 0.0), ("n_train", 0), ("apps", []), ("features", [8, 8]),
])
def test_bad_input_refused_before_work(monkeypatch, name, value):
    def no_work(*a, **k):
        raise AssertionError("work started before validation")
    monkeypatch.setattr(L, "make_problem", no_work)
    with pytest.raises(ParameterError, match=name):
        L.run_grid(**{**GOOD, name: value, "progress": False})


def test_mnist_limits_refused():
    with pytest.raises(ParameterError, match="features"):
        L.validate_params(**{**GOOD, "data": "mnist", "features": [785]})
    with pytest.raises(ParameterError, match="n_train"):
        L.validate_params(**{**GOOD, "data": "mnist", "n_train": 12000, "batch": 400})
    with pytest.raises(ParameterError, match="system"):
        L.Config("lr", 4, "APX-FPU")
