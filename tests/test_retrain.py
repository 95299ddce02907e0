"""Approximate retraining (delaparra2021 §4.3, §5): every method runs, leaves no hook behind, is seeded,
and bad parameters fail before any work."""

import json

import pytest
import torch
from torch import nn

from axlib import multipliers
from axlib.methods import retrain
from axlib.nn import ApproxLayer, approximate, errmodel, with_multiplier
from axlib.validate import ParameterError
from tests.conftest import TINY_RESNET8_ZOO, needs_cifar10


def _toy(seed=0, n=256):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 8 * 8, 4)).eval()
    x = torch.randn(n, 3, 8, 8)
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()
    return net, x, y


def test_with_multiplier_keeps_the_grid_and_swaps_the_products():
    net, x, _ = _toy()
    mult = multipliers.get("trunc6")
    b = approximate(net, mult, [(x[:64], None)])
    e = with_multiplier(b, None)
    for mb, me in zip((m for m in b.modules() if isinstance(m, ApproxLayer)),
                      (m for m in e.modules() if isinstance(m, ApproxLayer))):
        assert me.multiplier is None and (me.a_step, me.w_step, me.a_lo, me.a_hi) == (mb.a_step, mb.w_step,
                                                                                          mb.a_lo, mb.a_hi)
    with torch.no_grad():
        exact_direct = torch.stack([m.exact_products(x[:8]) for m in [b[0]]])[0]
        torch.testing.assert_close(e[0](x[:8]) - e[0].layer.bias.view(1, -1, 1, 1), exact_direct)
        back = with_multiplier(e, mult)
        torch.testing.assert_close(back(x[:32]), b(x[:32]), rtol=0, atol=0)
    with pytest.raises(ParameterError, match="unknown approximated layer"):
        with_multiplier(b, None, layers=["7"])


@pytest.mark.parametrize("method", ["behavioral", "errmodel", "baseline", "awgn"])
def test_every_method_trains_and_removes_its_model(method):
    net, x, y = _toy()
    mult = multipliers.get("trunc5")
    behavioural = approximate(net, mult, [(x[:64], None)])
    model = behavioural if method == "behavioral" else with_multiplier(behavioural, None)
    stats = errmodel.collect(behavioural, [(x[:128], None)]) if method in ("errmodel", "awgn") else None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    handle = retrain.attach(method, model, stats, mult, seed=0)
    assert (handle is None) == (method == "behavioral")
    loss0 = torch.nn.functional.cross_entropy(model(x), y).item()
    log = retrain.train(model, x, y, epochs=3, lr=0.05, batch_size=32, seed=0, progress=False)
    if handle is not None:
        handle.remove()
    assert log["steps"] == 3 * 8 and log["train_s"] > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.nn.functional.cross_entropy(model(x), y).item() < loss0
    assert all(not m._forward_hooks and m.weight_error is None for m in model.modules() if isinstance(m, ApproxLayer))


def test_training_is_seeded():
    outs = []
    for _ in range(2):
        net, x, y = _toy()
        mult = multipliers.get("trunc5")
        b = approximate(net, mult, [(x[:64], None)])
        e = with_multiplier(b, None)
        stats = errmodel.collect(b, [(x, None)])
        with retrain.attach("errmodel", e, stats, mult, seed=4):
            retrain.train(e, x, y, epochs=1, lr=0.05, batch_size=32, seed=1, progress=False)
        outs.append(e.state_dict())
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


@pytest.mark.parametrize("kw, match", [
    (dict(method="ste"), "method"), (dict(multiplier="smapprox:9999"), "multiplier"), (dict(p=0), "p"),
    (dict(net="vgg99"), "net"), (dict(evaluate_with=["nope"]), "evaluate_with"), (dict(n_train=0), "n_train"),
])
def test_bad_parameters_fail_before_any_work(kw, match, monkeypatch):
    monkeypatch.setattr(retrain, "_data", lambda *a, **k: pytest.fail("work started"))
    args = dict(net="resnet8", multiplier="smapprox:3330", method="errmodel", n_train=64, epochs=1, lr=1e-3,
                batch_size=64, p=10, n_test=10, n_calib=10, seed=0)
    args.update(kw)
    with pytest.raises(ParameterError, match=match):
        retrain.point(**args)
    with pytest.raises(ParameterError, match="methods"):
        retrain.check_methods("methods", [])


def test_missing_imagenet_fails_before_any_work_and_stores_nothing(tmp_path, monkeypatch):
    """delaparra2021 Figs. 8-9 need the local ImageNet folder: a clear error naming net and the folder."""
    from axlib import data

    monkeypatch.setenv("AXLIB_DATA", str(tmp_path))
    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(retrain, "_data", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(data.MissingDataError, match=r"net='resnet18'.*imagenet"):
        retrain.study(["resnet18"], ["smapprox:3330"], ["errmodel"], n_train=8, epochs=1, lr=1e-4, batch_size=4, p=8,
                      n_test=4, n_calib=4, seed=0, progress=False)
    with pytest.raises(data.MissingDataError, match="net='resnet18'"):
        retrain.point("resnet18", "smapprox:3330", "none", n_train=8, epochs=1, lr=1e-4, batch_size=4, p=8, n_test=4,
                      n_calib=4, seed=0)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.json"))


@needs_cifar10
def test_point_on_a_tiny_resnet8(tiny_resnet8_cache):
    zoo = json.dumps(TINY_RESNET8_ZOO, sort_keys=True)
    res = {}
    for method in ("none", "errmodel", "behavioral"):
        res[method] = retrain.point("resnet8", "smapprox:3330", method, n_train=64, epochs=1, lr=1e-3, batch_size=32,
                                    p=32, n_test=40, n_calib=32, seed=0, zoo_json=zoo,
                                    evaluate_with=["8bit", "smapprox:1100"], progress=False)
    none = res["none"]
    assert none["steps"] == 0 and none["n_test"] == 40
    assert none["accuracy_with:8bit"] == none["accuracy_8bit"]
    assert res["errmodel"]["steps"] == 2 and res["errmodel"]["model_s"] > 0
    for r in res.values():
        assert 0 <= r["accuracy"] <= 1 and "accuracy_with:smapprox:1100" in r
        assert r["mre_pct"] > 0 and r["accuracy_float"] == none["accuracy_float"]


@needs_cifar10
def test_retrained_weights_are_reused_and_a_damaged_file_retrains(tiny_resnet8_cache, monkeypatch):
    from axlib import cachefiles

    tmp_path = tiny_resnet8_cache
    zoo = json.dumps(TINY_RESNET8_ZOO, sort_keys=True)
    kw = dict(n_train=32, epochs=1, lr=1e-3, batch_size=32, p=16, n_test=20, n_calib=16, seed=0, zoo_json=zoo,
              progress=False)
    a = retrain.point("resnet8", "smapprox:3330", "errmodel", **kw)
    files = list((tmp_path / "retrained").glob("*.pt"))
    assert len(files) == 1
    calls = []
    monkeypatch.setattr(retrain, "train", lambda *args, **k: calls.append(1) or pytest.fail("retrained"))
    b = retrain.point("resnet8", "smapprox:3330", "errmodel", evaluate_with=["smapprox:1100"], **kw)
    assert b["accuracy"] == a["accuracy"] and b["train_s"] == a["train_s"] and "accuracy_with:smapprox:1100" in b
    files[0].write_bytes(b"damaged")
    monkeypatch.undo()
    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path))
    with pytest.warns(cachefiles.CacheWarning, match="retrained"):
        c = retrain.point("resnet8", "smapprox:3330", "errmodel", **kw)
    assert c["accuracy"] == a["accuracy"]                     # retrained with the same seed: same network


def test_time_epoch_times_both_methods_side_by_side():
    rows = retrain.time_epoch("resnet8", "smapprox:3330", batch_size=4, n_batches=2, warmup=1, p=8)
    assert [r["method"] for r in rows] == ["behavioral", "errmodel"]
    for r in rows:
        assert r["s_per_batch"] > 0 and r["s_per_epoch"] == pytest.approx(r["s_per_batch"] * 782)
        assert r["model_s"] > 0 and r["p"] == 8
    with pytest.raises(ParameterError, match="methods"):
        retrain.time_epoch("resnet8", "smapprox:3330", methods=["none"])
