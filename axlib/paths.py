"""Every filesystem location axlib uses, in one place.

Environment knobs:
- ``AXLIB_DATA``: root of datasets, pretrained weights and multiplier tables (read-only input).
  Default: ``<project>/data/datasets``.
- ``AXLIB_RUNS``: root of the raw-run store. Default: ``<project>/data/runs`` (committed).
- ``AXLIB_CACHE``: root of re-creatable caches (trained models, decoded datasets, sweep points).
  Default: ``<project>/data``  (models in ``data/models``, the rest in ``data/cache``).
- ``AXLIB_BUILD``: build directory for executed notebooks and the book. Default: ``<project>/_build``.

The zoo's trained weights behind the committed raw runs are shipped (committed) in
``<project>/data/zoo`` (:func:`shipped_models_dir`); they are copied into the model cache on first use.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def data_root() -> Path:
    """Where datasets, pretrained weights and multiplier tables are read from (``AXLIB_DATA``)."""
    return _env_path("AXLIB_DATA", PROJECT_ROOT / "data" / "datasets")


def download_root() -> Path:
    """Writable folder for files downloaded from upstream when ``AXLIB_DATA`` lacks them."""
    return _env_path("AXLIB_DOWNLOADS", PROJECT_ROOT / "data" / "datasets")


def runs_root() -> Path:
    """Root of the raw-run store (tidy tables + ``meta.json``)."""
    return _env_path("AXLIB_RUNS", PROJECT_ROOT / "data" / "runs")


def cache_root() -> Path:
    """Root of re-creatable caches (git-ignored)."""
    return _env_path("AXLIB_CACHE", PROJECT_ROOT / "data")


def models_dir() -> Path:
    """Trained-model cache, keyed by config hash."""
    return cache_root() / "models"


def shipped_models_dir() -> Path:
    """Committed zoo weights (``<name>-<hash12>.pt`` + ``.json``, the same files the cache holds): read-only input."""
    return PROJECT_ROOT / "data" / "zoo"


def array_cache_dir() -> Path:
    """Decoded dataset arrays (uncompressed ``.npy``, memory-mapped on load)."""
    return cache_root() / "cache" / "arrays"


def sweep_cache_dir() -> Path:
    """Per-point results of ``axlib.sweep`` grids."""
    return cache_root() / "cache" / "sweep"


def integrity_dir() -> Path:
    """Stamps of input files whose sha256 was verified (path, size, mtime), see ``axlib.data.integrity``."""
    return cache_root() / "cache" / "verified"


def pages_root() -> Path:
    """Committed executed notebooks of the default profile (``<paper>/<file>.ipynb`` + ``.claims.json``): the
    book is rendered from them when they match the notebook source, its parameters and its stored run."""
    return _env_path("AXLIB_PAGES", PROJECT_ROOT / "data" / "pages")


def build_root() -> Path:
    """Executed notebooks, claim records, the staged book source and ``html/``."""
    return _env_path("AXLIB_BUILD", PROJECT_ROOT / "_build")


def notebooks_dir() -> Path:
    return PROJECT_ROOT / "notebooks"


def profiles_file() -> Path:
    return notebooks_dir() / "profiles.yml"
