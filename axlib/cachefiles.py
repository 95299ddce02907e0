"""Disposable cache files: atomic writes, and what happens to a damaged one.

Everything under ``AXLIB_CACHE`` (trained models, decoded dataset arrays, sweep points, the
verified-input stamps of :mod:`axlib.data.integrity`) can be recomputed, so a damaged cache file
is not an error. Whoever reads one checks it (parses, sizes, digests) and on damage calls
:func:`discard_corrupt`: a :class:`CacheWarning` naming the file and the reason, the file is
deleted, and the caller recomputes it. One way everywhere, so a warnings filter
(``warnings.simplefilter("error", CacheWarning)``) turns every such event into an error where wanted.

Writes go through :func:`atomic_path`: the content is written to a temporary file with a
per-process unique name in the same folder and moved into place with one ``os.replace``, so a
kill mid-write leaves the old file or none, never a half file that looks valid; two processes
writing the same cache never share a temporary.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class CacheWarning(UserWarning):
    """A cache file was damaged (truncated, empty, unparsable, digest mismatch); it was deleted and
    is recomputed."""


def discard_corrupt(path: str | Path, reason: str) -> None:
    """Warn that the cache file ``path`` is damaged (``reason``), delete it; the caller recomputes."""
    path = Path(path)
    warnings.warn(f"discarding damaged cache file {path} ({reason}); it is deleted and recomputed",
                  CacheWarning, stacklevel=2)
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:  # read-only cache: the recomputed file cannot replace it either, say so once
        warnings.warn(f"could not delete damaged cache file {path}: {exc}", CacheWarning, stacklevel=2)


def describe(exc: BaseException) -> str:
    """``Type: message`` of a load error (first line, at most 200 characters; ``EOFError`` has no
    message: say what it means)."""
    text = (str(exc).strip().splitlines() or [""])[0][:200]
    if not text and isinstance(exc, EOFError):
        text = "file empty or truncated"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def temp_name(path: Path) -> Path:
    """A temporary sibling of ``path`` unique to this process and call (pid + random suffix)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` atomically, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_json(path: str | Path, what: str = "cache file"):
    """The parsed JSON of the cache file ``path``; ``None`` when it is absent or was damaged (then it
    is discarded with a warning). ``what`` describes the file in the warning."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        discard_corrupt(path, f"{what} is not valid JSON: {describe(exc)}")
        return None


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
