"""Grid runner with per-point caching: local (in-process or a process pool) or a Dask cluster.

``run_grid(fn, points, name=...)`` calls ``fn(**point)`` for every point dict and returns the
results in point order. Each result (JSON-serialisable) is stored under
``<cache>/sweep/<name>/<hash>.json`` as soon as it is computed, so an interrupted sweep resumes
where it stopped. Points are written atomically (per-process temporary + rename); a damaged point
file (truncated JSON, no ``result``) is discarded with a ``CacheWarning`` and computed again.
Executors:

- ``DASK_SCHEDULER_ADDRESS`` set: the points go to that Dask scheduler (``client.map``);
- else ``AXLIB_WORKERS`` > 1: a local ``ProcessPoolExecutor`` (spawned workers);
- else: in the calling process (the default on 2 cores, where torch already uses both).

``fn`` must be importable (module-level) for the process and Dask executors.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm import tqdm

from axlib import cachefiles, config, paths
from axlib.runs import canonical_json, force_recompute


def point_key(name: str, point: dict) -> str:
    return hashlib.sha256(canonical_json({"name": name, "point": point}).encode()).hexdigest()[:16]


def executor_kind() -> str:
    if os.environ.get("DASK_SCHEDULER_ADDRESS"):
        return "dask"
    return "processes" if config.sweep_workers() > 1 else "local"


def run_grid(fn: Callable, points: Sequence[dict], name: str, cache: bool = True,
             progress: bool = True, cache_dir: Path | None = None) -> list:
    """Evaluate ``fn(**p)`` for each ``p`` in ``points``; cached results are reused per point.

    ``name`` namespaces the cache (include a version when ``fn``'s meaning changes).
    """
    points = [dict(p) for p in points]
    folder = (cache_dir or paths.sweep_cache_dir()) / name
    results: list = [None] * len(points)
    todo = []
    reuse = cache and not force_recompute()  # AXLIB_FORCE recomputes every point (results still stored)
    for i, p in enumerate(points):
        stored = _load(folder / f"{point_key(name, p)}.json") if reuse else None
        if stored is not None:
            results[i] = stored["result"]
        else:
            todo.append(i)
    bar = tqdm(total=len(points), initial=len(points) - len(todo), desc=name, disable=not progress, unit="pt",
               mininterval=config.PROGRESS_INTERVAL_S)

    def done(i: int, result) -> None:
        results[i] = result
        if cache:
            _store(folder / f"{point_key(name, points[i])}.json", points[i], result)
        bar.update(1)

    kind = executor_kind()
    try:
        if todo and kind == "dask":
            _run_dask(fn, points, todo, done)
        elif todo and kind == "processes":
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(config.sweep_workers(), mp_context=ctx) as pool:
                futures = {pool.submit(_call, fn, points[i]): i for i in todo}
                for fut in as_completed(futures):
                    done(futures[fut], fut.result())
        else:
            for i in todo:
                done(i, fn(**points[i]))
    finally:
        bar.close()
    return results


def _call(fn: Callable, point: dict):
    return fn(**point)


def _run_dask(fn: Callable, points: list[dict], todo: list[int], done: Callable) -> None:
    from distributed import Client
    from distributed import as_completed as dask_completed

    with Client(os.environ["DASK_SCHEDULER_ADDRESS"]) as client:
        futures = [client.submit(_call, fn, points[i], pure=False) for i in todo]
        index = {f.key: i for f, i in zip(futures, todo)}
        for fut in dask_completed(futures):
            done(index[fut.key], fut.result())


def _load(path: Path) -> dict | None:
    """The stored ``{"point", "result"}`` of one point; None when absent or damaged (then discarded)."""
    stored = cachefiles.read_json(path, "sweep point")
    if stored is not None and not (isinstance(stored, dict) and "result" in stored):
        cachefiles.discard_corrupt(path, "sweep point has no 'result' entry")
        return None
    return stored


def _store(path: Path, point: dict, result) -> None:
    cachefiles.write_text(path, json.dumps({"point": point, "result": result}, default=float))
