"""The whole-book cost tables read the runs' own records (meta.json wall times, zoo training times)."""

from __future__ import annotations

import json

import numpy as np

from axlib.methods import book_cost


def _meta(root, nb, key, wall, cpu="CPU X"):
    d = root / nb / f"default-{key}"
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"notebook": nb, "wall_time_s": wall, "created_utc": "2026-12-04T01:02:03",
                                             "host": {"cpu_model": cpu, "cpus": 2}, "git": {"commit": "abcdef123"}}))


def test_run_and_training_times(tmp_path):
    runs, zoo = tmp_path / "runs", tmp_path / "zoo"
    _meta(runs, "paperA/fig1", "aaa", 120.0)
    _meta(runs, "paperA/fig2", "bbb", 60.0)
    _meta(runs, "paperB/tab1", "ccc", 30.0, cpu="CPU Y")
    (runs / "paperB" / "tab1" / "smoke-ddd").mkdir()
    zoo.mkdir()
    (zoo / "net-1.json").write_text(json.dumps({"dataset": "cifar10", "train_time_s": 600.0, "test_accuracy": 0.8}))
    r = book_cost.run_times("default", runs)
    assert list(r["notebook"]) == ["paperA/fig1", "paperA/fig2", "paperB/tab1"]
    assert list(r["cpu"]) == ["CPU X", "CPU X", "CPU Y"] and set(r["commit"]) == {"abcdef1"}
    t = book_cost.training_times(zoo)
    s = book_cost.summary(r, t).set_index("paper")
    assert s.loc["paperA", "runs"] == 2 and np.isclose(s.loc["paperA", "total_min"], 3.0)
    assert np.isclose(s.loc["zoo training", "total_min"], 10.0)
    assert np.isclose(s.loc["all", "total_min"], 3.0 + 0.5 + 10.0) and s.loc["all", "runs"] == 4
    assert book_cost.run_times("paper", runs).empty


def test_committed_store_has_every_page():
    """Every committed default run records its wall time (the table on the benchmark page)."""
    r = book_cost.run_times()
    assert len(r) >= 40 and r["wall_time_s"].notna().all() and (r["wall_time_s"] >= 0).all()
