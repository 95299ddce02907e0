"""Raw-run store: tidy tables + ``meta.json`` provenance, written atomically, found by key.

A run lives in ``<runs_root>/<paper>/<notebook>/<profile>-<key>/`` where ``key`` hashes the
notebook id, the profile and the parameters (which include the seed). It holds one CSV per
table and ``meta.json`` (parameters, seed, git commit, package versions, host, wall time,
row counts and hashes of every table).

Atomicity: a run is assembled in a hidden temporary folder next to its destination and renamed
into place only after every table and ``meta.json`` are written, so a crash or an interrupt
leaves either the complete previous state or nothing. A folder without ``meta.json`` is never
treated as a run.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from axlib import paths, provenance, validate

PROFILES = ("smoke", "default", "paper")
META = "meta.json"


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def run_key(notebook: str, params: Mapping, profile: str) -> str:
    """12-hex-digit key of (notebook, profile, parameters)."""
    payload = canonical_json({"notebook": notebook, "profile": profile, "params": dict(params)})
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def run_dir(notebook: str, params: Mapping, profile: str) -> Path:
    validate.choice("profile", profile, PROFILES)
    return paths.runs_root() / notebook / f"{profile}-{run_key(notebook, params, profile)}"


@dataclass(frozen=True)
class Run:
    """A completed run on disk."""

    path: Path
    meta: dict

    def table(self, name: str) -> pd.DataFrame:
        f = self.path / f"{name}.csv"
        if not f.exists():
            raise FileNotFoundError(f"run {self.path} has no table {name!r}; tables: {sorted(self.meta['tables'])}")
        return pd.read_csv(f)

    @property
    def tables(self) -> list[str]:
        return sorted(self.meta["tables"])


def load(notebook: str, params: Mapping, profile: str) -> Run | None:
    """The stored run for exactly these (notebook, params, profile), or None."""
    d = run_dir(notebook, params, profile)
    meta = d / META
    if not meta.exists():
        return None
    return Run(d, json.loads(meta.read_text()))


def force_recompute() -> bool:
    """``AXLIB_FORCE=1`` makes every notebook recompute its runs (``make reproduce``)."""
    return os.environ.get("AXLIB_FORCE", "").lower() not in ("", "0", "false", "no")


class RunWriter:
    """Collects the tables of a run being computed; see :func:`create`."""

    def __init__(self, tmp: Path):
        self._tmp = tmp
        self.tables: dict[str, dict] = {}
        self.extra_meta: dict = {}

    def save(self, name: str, df: pd.DataFrame) -> None:
        """Write table ``name`` (long form, one row per measurement) as CSV."""
        if not name.isidentifier():
            raise ValueError(f"table name {name!r} must be an identifier")
        f = self._tmp / f"{name}.csv"
        df.to_csv(f, index=False, float_format="%.10g", lineterminator="\n")
        self.tables[name] = {"rows": len(df), "columns": list(df.columns),
                             "sha256": hashlib.sha256(f.read_bytes()).hexdigest()}


@contextlib.contextmanager
def create(notebook: str, params: Mapping, profile: str, seed: int):
    """Context manager yielding a :class:`RunWriter`; the run appears atomically on success."""
    final = run_dir(notebook, params, profile)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    writer = RunWriter(tmp)
    t0 = time.perf_counter()
    try:
        yield writer
        if not writer.tables:
            raise RuntimeError(f"run {notebook} saved no table")
        used = provenance.models_used()
        meta = {
            "notebook": notebook, "profile": profile, "key": final.name.split("-", 1)[1],
            "params": dict(params), "seed": seed, "tables": writer.tables,
            "wall_time_s": round(time.perf_counter() - t0, 3),
            "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
            "git": git_state(), "versions": package_versions(), "host": host_info(),
            **({"models": used} if used else {}),
            **writer.extra_meta,
        }
        (tmp / META).write_text(json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")
        if final.exists():
            old = final.parent / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def cached_or_compute(notebook: str, params: Mapping, profile: str, seed: int,
                      compute: Callable[[RunWriter], None]) -> Run:
    """Load the run for these parameters, or compute and store it (always when ``AXLIB_FORCE``)."""
    run = None if force_recompute() else load(notebook, params, profile)
    if run is not None:
        print(f"[runs] cache hit: {run.path}")
        return run
    with create(notebook, params, profile, seed) as writer:
        compute(writer)
    run = load(notebook, params, profile)
    print(f"[runs] computed and saved: {run.path}")
    return run


def git_state() -> dict:
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=paths.PROJECT_ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD") or "unknown", "dirty": bool(git("status", "--porcelain"))}


def package_versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in ("axlib", "torch", "torchvision", "numpy", "numba", "pandas", "scikit-image"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``; elsewhere ``platform.processor()``)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def host_info() -> dict:
    return {"node": platform.node(), "machine": platform.machine(), "system": platform.system(),
            "cpus": os.cpu_count(), "cpu_model": cpu_model(), "device": os.environ.get("DEVICE", "auto")}
