"""EvoApprox8b truth tables from ``AXLIB_DATA/multipliers`` (generated from the library's C models).

Conventions (data README): ``mul8u_*`` tables are ``T[x, y]`` with ``x`` the first argument of the
C function; ``mul8s_*`` tables use offset indexing ``T[x + 128, y + 128]``. Here the first
argument is the activation ``a``. Power/area/delay and the library's error figures are stored in
``published`` with their source (45 nm PDK, EvoApproxLib). Every table file is checked by size
and sha256 before use (``axlib.data.integrity``; a damaged one is a ``CorruptDataError``).
"""

from __future__ import annotations

import csv
import functools

import numpy as np

from axlib import paths
from axlib.data.integrity import MissingDataError, check
from axlib.multipliers.core import Multiplier

FILES = {"mul8u": "evoapprox_mul8u_luts.npz", "mul8s": "evoapprox_mul8s_luts.npz"}
UPSTREAM = "https://github.com/ehw-fit/evoapproxlib (C models; tabulate them exhaustively)"


def _path(filename: str):
    """The table file, checked by size and sha256 (a damaged table would give wrong products silently)."""
    p = paths.data_root() / "multipliers" / filename
    if not p.exists():
        raise MissingDataError(f"EvoApprox tables {filename} not found. Looked for: {p}\n"
                               f"How to get it: set AXLIB_DATA to a folder with multipliers/{filename}, or build the "
                               f"tables from {UPSTREAM}.")
    return check(p, f"multipliers/{filename}",
                 f"restore an intact multipliers/{filename} (e.g. from the shared data folder) into {p.parent}, "
                 f"or rebuild the tables from {UPSTREAM}")


@functools.cache
def _tables(kind: str) -> dict:
    with np.load(_path(FILES[kind])) as z:
        return {k: z[k] for k in z.files}


@functools.lru_cache(maxsize=1)
def published_evoapprox() -> dict[str, dict]:
    """Rows of ``evoapprox_multipliers.csv`` keyed by circuit name."""
    with open(_path("evoapprox_multipliers.csv"), newline="") as f:
        return {row["name"]: row for row in csv.DictReader(f)}


def evoapprox_names(kind: str | None = None) -> list[str]:
    kinds = [kind] if kind else list(FILES)
    return sorted(n for k in kinds for n in _tables(k))


def evoapprox(name: str) -> Multiplier:
    """An 8x8 EvoApprox circuit by name, e.g. ``mul8u_KEM`` or ``mul8s_1KV8``."""
    kind = name[:5]
    if kind not in FILES or name not in _tables(kind):
        raise MissingDataError(f"no EvoApprox table {name!r}; available: {evoapprox_names()}")
    row = published_evoapprox().get(name, {})
    published = {k: row[k] for k in ("lib_pwr_mW", "lib_area_um2", "lib_delay_ns", "lib_mae_pct", "lib_wce_pct",
                                     "lib_ep_pct", "lib_mre_pct") if k in row}
    published["source"] = f"EvoApproxLib ({row.get('source', 'ehw-fit/evoapproxlib')}), 45 nm PDK"
    signed = kind == "mul8s"
    table = _tables(kind)[name].astype(np.int64)
    return Multiplier(name, table, signed,
                      "two's complement, offset table (EvoApprox mul8s)" if signed else "unsigned",
                      "EvoApprox8b", f"AXLIB_DATA/multipliers/{FILES[kind]}; first C argument = activation",
                      published)
