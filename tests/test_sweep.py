import pytest

from axlib import sweep

POINTS = [{"x": i, "y": 2 * i} for i in range(5)]


def test_local_grid_caches_per_point_and_resumes(tmp_store):
    calls, fail_at = [], {3}

    def fn(x, y):
        calls.append(x)
        if x in fail_at:
            raise RuntimeError("interrupted at point 3")
        return {"x": x, "sum": x + y}

    with pytest.raises(RuntimeError):
        sweep.run_grid(fn, POINTS, name="t-resume", progress=False)
    assert calls == [0, 1, 2, 3]
    fail_at.clear()
    res = sweep.run_grid(fn, POINTS, name="t-resume", progress=False)
    assert [r["sum"] for r in res] == [0, 3, 6, 9, 12]
    assert calls == [0, 1, 2, 3, 3, 4]  # only the missing points ran again
    assert sweep.run_grid(fn, POINTS, name="t-resume", progress=False) == res
    assert len(calls) == 6  # everything cached now


def test_force_recomputes_points(tmp_store, monkeypatch):
    calls = []
    fn = lambda x, y: calls.append(x) or x
    sweep.run_grid(fn, POINTS, name="t-force", progress=False)
    monkeypatch.setenv("AXLIB_FORCE", "1")
    sweep.run_grid(fn, POINTS, name="t-force", progress=False)
    assert len(calls) == 10


def test_process_pool(tmp_store, monkeypatch):
    monkeypatch.setenv("AXLIB_WORKERS", "2")
    assert sweep.executor_kind() == "processes"
    assert sweep.run_grid(dict, POINTS, name="t-proc", progress=False) == POINTS


def test_dask_cluster(tmp_store, monkeypatch):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
        assert sweep.executor_kind() == "dask"
        res = sweep.run_grid(lambda x, y: {"x": x, "prod": x * y}, POINTS, name="t-dask", progress=False)
    assert [r["prod"] for r in res] == [0, 2, 8, 18, 32]
