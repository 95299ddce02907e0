"""A real Dask cluster for tests: ``dask scheduler`` and ``dask worker`` started from their command
lines on 127.0.0.1 (what a user runs on a cluster, see README), torn down afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def cluster(tmp_path: Path, n_workers: int = 2, timeout_s: float = 90.0):
    """Yield ``(address, worker processes)``; every process is killed on exit."""
    distributed = pytest.importorskip("distributed")
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    if dask is None:
        pytest.skip("the dask command line is not installed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "AXLIB_THREADS": "1", "OMP_NUM_THREADS": "1"}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    logs = tmp_path / "dask-logs"
    logs.mkdir(parents=True, exist_ok=True)
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=open(logs / "scheduler.log", "w"))]
    workers = []
    try:
        for i in range(n_workers):
            workers.append(subprocess.Popen(
                [dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}",
                 "--local-directory", str(tmp_path / f"w{i}")], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                stderr=open(logs / f"w{i}.log", "w")))
        procs += workers
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with distributed.Client(address, timeout=10) as client:
                    client.wait_for_workers(n_workers, timeout=max(1.0, deadline - time.monotonic()))
                break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address, workers
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait(timeout=30)
