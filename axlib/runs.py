"""Raw-run store: tidy tables + ``meta.json`` provenance, written atomically, found by key.

A run lives in ``<runs_root>/<paper>/<notebook>/<profile>-<key>/`` where ``key`` hashes the
notebook id, the profile and the parameters (which include the seed). It holds one CSV per
table and ``meta.json`` (parameters, seed, git commit, package versions, host, wall time,
row counts and hashes of every table).

Atomicity: a run is assembled in a hidden temporary folder next to its destination and renamed
into place only after every table and ``meta.json`` are written, so a crash or an interrupt
leaves either the complete previous state or nothing. A folder without ``meta.json`` is never
treated as a run. The temporary folder's name is unique per process and call, so two processes
computing the same run never share a path; the publish is one ``rename`` (a reader sees the whole
run or none), and a process that finds the run already published by another keeps that one.

Verification: loading checks ``meta.json`` and every table against the row count and sha256 that
``meta.json`` recorded. A run that does not match raises :class:`CorruptRunError` naming the file
(and how to recompute it), never a silently truncated table.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
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


class CorruptRunError(RuntimeError):
    """A stored run does not match its ``meta.json`` (truncated, edited or missing table, bad JSON)."""


def _recompute_hint(notebook: str) -> str:
    return (f"recompute it with AXLIB_FORCE=1 (e.g. `AXLIB_FORCE=1 make notebook NB={notebook}`), "
            f"or restore it with `git checkout -- data/runs` if it is a committed run")


@dataclass(frozen=True)
class Run:
    """A completed, verified run on disk.

    ``data`` holds the bytes of every table as they were verified at load time, so the tables a
    notebook reads are exactly the ones whose sha256 matched ``meta.json``.
    """

    path: Path
    meta: dict
    data: Mapping[str, bytes]

    def table(self, name: str) -> pd.DataFrame:
        if name not in self.data:
            raise FileNotFoundError(f"run {self.path} has no table {name!r}; tables: {self.tables}")
        return pd.read_csv(io.BytesIO(self.data[name]))

    @property
    def tables(self) -> list[str]:
        return sorted(self.meta["tables"])


def _read_verified(d: Path, notebook: str) -> Run:
    """Read ``meta.json`` and every table of run folder ``d``; raise CorruptRunError on any mismatch."""
    meta_file = d / META
    try:
        meta = json.loads(meta_file.read_text())
        tables = meta["tables"]
        if not isinstance(tables, dict) or not tables:
            raise KeyError("tables")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptRunError(f"{meta_file} is not valid JSON ({exc}); {_recompute_hint(notebook)}") from None
    except (KeyError, TypeError):
        raise CorruptRunError(f"{meta_file} lists no tables; {_recompute_hint(notebook)}") from None
    data = {}
    for name, info in tables.items():
        f = d / f"{name}.csv"
        try:
            raw = f.read_bytes()
        except FileNotFoundError:
            raise CorruptRunError(f"{f} is missing (listed in {meta_file}); {_recompute_hint(notebook)}") from None
        digest = hashlib.sha256(raw).hexdigest()
        if digest != info.get("sha256"):
            rows = max(raw.count(b"\n") - 1, 0)
            raise CorruptRunError(
                f"{f} is damaged: its sha256 is {digest[:12]}..., {META} recorded {str(info.get('sha256'))[:12]}... "
                f"({rows} data lines found, {info.get('rows')} rows recorded); {_recompute_hint(notebook)}")
        data[name] = raw
    return Run(d, meta, data)


def load(notebook: str, params: Mapping, profile: str) -> Run | None:
    """The stored, verified run for exactly these (notebook, params, profile), or None.

    Raises :class:`CorruptRunError` when the run exists but its files do not match ``meta.json``.
    A mismatch caused by another process replacing the run while we read it is retried.
    """
    d = run_dir(notebook, params, profile)
    for attempt in range(3):
        if not (d / META).exists():
            if attempt < 2 and any(d.parent.glob(f".old-{d.name}-*")):
                time.sleep(0.05)  # another process is swapping this run in right now
                continue
            return None
        try:
            return _read_verified(d, notebook)
        except CorruptRunError:
            if attempt == 2:
                raise
            time.sleep(0.05)  # a concurrent publish swaps the folder in one rename: read again
    return None


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
    remove_stale_temporaries(final.parent)
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
        _publish(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, final: Path, attempts: int = 50) -> None:
    """Move the complete run ``tmp`` to ``final`` in one ``rename``; an existing run there is replaced.

    ``rename`` of a folder onto a non-empty folder fails, so an existing run is first renamed
    aside under a name unique to this process and call (two processes never collide), then ours
    is renamed in; when another process publishes in between, we try again. A reader never sees
    a partial run: either the old one, none (for the instant of the swap; :func:`load` waits for
    it), or the new one.
    """
    for _ in range(attempts):
        try:
            os.rename(tmp, final)
            return
        except OSError:
            if not final.exists():
                continue  # the other process moved its run aside in the meantime: try again
        old = final.parent / f".old-{final.name}-{os.getpid()}-{time.monotonic_ns()}"
        try:
            os.rename(final, old)
        except FileNotFoundError:
            continue
        try:
            os.rename(tmp, final)
            return
        except OSError:
            continue
        finally:
            shutil.rmtree(old, ignore_errors=True)
    raise RuntimeError(f"could not publish run {final} after {attempts} attempts (other processes keep replacing it)")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete ``.tmp-*``/``.old-*`` run folders in ``folder`` left by processes that no longer exist.

    A process killed with SIGKILL cannot clean up after itself; its half-written folder is never
    loaded (hidden name, and usually no ``meta.json``) but would pile up. Folders of live
    processes are left alone.
    """
    removed = []
    if not folder.is_dir():
        return removed
    for d in folder.iterdir():
        if not (d.name.startswith(".tmp-") or d.name.startswith(".old-")):
            continue
        try:
            pid = int(d.name.rsplit("-", 2)[-2])
        except (ValueError, IndexError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def cached_or_compute(notebook: str, params: Mapping, profile: str, seed: int,
                      compute: Callable[[RunWriter], None]) -> Run:
    """Load the run for these parameters, or compute and store it (always when ``AXLIB_FORCE``)."""
    run = None if force_recompute() else load(notebook, params, profile)
    if run is not None:
        print(f"[runs] cache hit: {notebook}/{run.path.name}", file=sys.stderr)
        return run
    with create(notebook, params, profile, seed) as writer:
        compute(writer)
    run = load(notebook, params, profile)
    print(f"[runs] computed and saved: {notebook}/{run.path.name}", file=sys.stderr)
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
