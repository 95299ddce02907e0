import json

import pandas as pd
import pytest

from axlib import runs

NB = "testpaper/figX"


def table(n=3):
    return pd.DataFrame({"bits": list(range(n)), "accuracy": [0.5 + i / 10 for i in range(n)]})


def test_run_key_depends_on_notebook_params_and_profile():
    k = runs.run_key(NB, {"a": 1, "b": [1, 2]}, "default")
    assert k == runs.run_key(NB, {"b": [1, 2], "a": 1}, "default")
    assert k != runs.run_key(NB, {"a": 2, "b": [1, 2]}, "default")
    assert k != runs.run_key(NB, {"a": 1, "b": [1, 2]}, "smoke")
    assert k != runs.run_key("testpaper/figY", {"a": 1, "b": [1, 2]}, "default")


def test_create_writes_tables_and_provenance(tmp_store):
    with runs.create(NB, {"a": 1}, "smoke", seed=5) as w:
        w.save("acc", table())
    run = runs.load(NB, {"a": 1}, "smoke")
    assert run is not None and run.tables == ["acc"]
    pd.testing.assert_frame_equal(run.table("acc"), table())
    meta = json.loads((run.path / "meta.json").read_text())
    for key in ("params", "seed", "git", "versions", "host", "wall_time_s", "tables", "profile", "notebook"):
        assert key in meta
    assert meta["seed"] == 5 and meta["tables"]["acc"]["rows"] == 3
    assert meta["host"]["cpu_model"]


def test_runs_record_the_weights_of_the_networks_they_loaded(tmp_store):
    import torch

    from axlib import provenance
    from axlib.models.lenet import LeNet5Caffe

    torch.manual_seed(0)
    net = LeNet5Caffe()
    provenance.record_model("lenet5-test", net, origin="zoo", test_accuracy=0.5)
    with runs.create(NB, {"a": 2}, "smoke", seed=0) as w:
        w.save("acc", table())
    meta = runs.load(NB, {"a": 2}, "smoke").meta
    digest = meta["models"]["lenet5-test"]["weights_sha256_16"]
    assert len(digest) == 16 and meta["models"]["lenet5-test"]["test_accuracy"] == 0.5
    assert provenance.weights_digest(net.state_dict()) == digest
    with torch.no_grad():
        net.conv1.weight[0, 0, 0, 0] += 1e-6   # one weight, one ulp-scale change: another digest
    assert provenance.weights_digest(net.state_dict()) != digest


def test_crash_during_compute_leaves_nothing(tmp_store):
    with pytest.raises(RuntimeError, match="boom"):
        with runs.create(NB, {"a": 1}, "smoke", seed=0) as w:
            w.save("acc", table())
            raise RuntimeError("boom")
    assert runs.load(NB, {"a": 1}, "smoke") is None
    folder = tmp_store / "runs" / NB
    assert list(folder.iterdir()) == []  # no run folder, no temporary folder


def test_crash_mid_write_leaves_no_file(tmp_store, monkeypatch):
    real = pd.DataFrame.to_csv

    def half_then_die(self, path, **kw):
        real(self.iloc[:1], path, **kw)
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        with runs.create(NB, {"a": 2}, "smoke", seed=0) as w:
            w.save("acc", table())
    assert not any((tmp_store / "runs").rglob("*.csv"))
    assert not any((tmp_store / "runs").rglob("meta.json"))


def test_cache_hits_and_misses(tmp_store, monkeypatch):
    calls = []

    def compute(w):
        calls.append(1)
        w.save("acc", table(len(calls) + 2))

    r1 = runs.cached_or_compute(NB, {"a": 1}, "smoke", 0, compute)
    r2 = runs.cached_or_compute(NB, {"a": 1}, "smoke", 0, compute)
    assert len(calls) == 1 and r1.path == r2.path                     # hit: same notebook, params, profile
    runs.cached_or_compute(NB, {"a": 2}, "smoke", 0, compute)         # other params: miss
    runs.cached_or_compute(NB, {"a": 1}, "default", 0, compute)       # other profile: miss
    runs.cached_or_compute("testpaper/figY", {"a": 1}, "smoke", 0, compute)  # other notebook: miss
    assert len(calls) == 4
    monkeypatch.setenv("AXLIB_FORCE", "1")
    r = runs.cached_or_compute(NB, {"a": 1}, "smoke", 0, compute)     # forced: recomputed and replaced
    assert len(calls) == 5 and len(r.table("acc")) == 7


def test_a_folder_without_meta_is_not_a_run(tmp_store):
    d = runs.run_dir(NB, {"a": 9}, "smoke")
    d.mkdir(parents=True)
    (d / "acc.csv").write_text("bits\n1\n")
    assert runs.load(NB, {"a": 9}, "smoke") is None


def test_bad_profile_is_rejected():
    with pytest.raises(ValueError, match="profile"):
        runs.run_dir(NB, {}, "huge")
