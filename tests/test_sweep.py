import time

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


@pytest.mark.slow
def test_a_worker_killed_mid_sweep_loses_and_duplicates_no_point(tmp_store, monkeypatch):
    """Two ``dask worker`` processes; one is killed (SIGKILL) once points are coming back: Dask
    reschedules its work on the other, every point is stored exactly once, in point order."""
    import threading

    from tests import dask_cli
    from tests.sweep_points import slow_square

    points = [{"x": x, "delay": 0.4} for x in range(16)]
    folder = tmp_store / "cache" / "cache" / "sweep" / "t-kill"
    with dask_cli.cluster(tmp_store) as (address, workers):
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
        out: dict = {}
        thread = threading.Thread(target=lambda: out.setdefault(
            "res", sweep.run_grid(slow_square, points, name="t-kill", progress=False)))
        thread.start()
        deadline = time.monotonic() + 60
        while len(list(folder.glob("*.json"))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(list(folder.glob("*.json"))) < len(points), "the sweep finished before a worker could be killed"
        workers[0].kill()
        thread.join(timeout=120)
        assert not thread.is_alive()
    res = out["res"]
    assert [r["square"] for r in res] == [x * x for x in range(16)]
    assert len(list(folder.glob("*.json"))) == len(points)
    assert len({r["pid"] for r in res}) == 2  # both workers computed points before one was lost
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:9")  # nothing listens: all from the cache
    assert sweep.run_grid(slow_square, points, name="t-kill", progress=False) == res
