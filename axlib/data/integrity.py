"""Input files (datasets, multiplier tables, pretrained weights): missing or damaged ones.

A truncated or altered input otherwise surfaces deep inside a reader as an error that names no
file (``BadZipFile`` from ``np.load``, a reshape error from torchvision's idx reader) or, worse,
as silently wrong numbers. :func:`check` compares a file with its entry in :data:`KNOWN` (size in
bytes and sha256 of the canonical copy, the values of the shared data README) and raises
:class:`CorruptDataError` naming the file, the expected and the found size or digest, and how to
get the file again.

Cost: the size is compared on every call (one ``stat``); the sha256 (0.2 s for the 140 MB CIFAR-10
npz on the 2-core machine) is computed once per (path, size, mtime) and remembered as a stamp
under ``paths.integrity_dir()`` (a disposable cache), so a later check of an unchanged file reads
a few bytes. Files not listed in
:data:`KNOWN` and given no ``expected`` are not checked (torchvision checks its own CIFAR batches).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from axlib import cachefiles, paths


class MissingDataError(FileNotFoundError):
    """A dataset or weight file is missing: the message says which, where we looked, how to get it."""


class CorruptDataError(MissingDataError):
    """An input file exists but is damaged (wrong size or sha256): no intact copy is available.

    The message names the file, the expected and the found size or digest, and how to get it again.
    """


@dataclass(frozen=True)
class Expected:
    """What an intact file looks like: ``size`` in bytes (None: not known) and its sha256 (hex; a
    prefix is allowed, as in torch.hub file names)."""

    size: int | None
    sha256: str


#: Known input files by path relative to a data root (``AXLIB_DATA`` or the download folder).
#: MNIST: the original decompressed idx files; CIFAR-10: the shared npz; EvoApprox tables.
KNOWN: dict[str, Expected] = {
    "MNIST/raw/train-images-idx3-ubyte": Expected(
        47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "MNIST/raw/train-labels-idx1-ubyte": Expected(
        60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "MNIST/raw/t10k-images-idx3-ubyte": Expected(
        7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "MNIST/raw/t10k-labels-idx1-ubyte": Expected(
        10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    "cifar10/cifar10-uint8.npz": Expected(
        139688645, "3ba81fc61c050fefa5ffb8bbec6b3c14e97e1d34f925a6180d8c18ba15520d68"),
    "multipliers/evoapprox_mul8u_luts.npz": Expected(
        2712519, "fc0aa4c9fc4eca7546fb3266096162cca1385fa59503078d48e7db68734d59de"),
    "multipliers/evoapprox_mul8s_luts.npz": Expected(
        535267, "9e1625f3d91c66f983dc1d3d5e0476f916e489a8b90aec135596224a4a97121b"),
    "multipliers/evoapprox_mul16u_F6B_8VH_parts.npz": Expected(
        392528, "5f598392081a8908a3fb879d3e0d72df42ab0e405aeaf9573a89e0657eb8aed3"),
    "multipliers/evoapprox_multipliers.csv": Expected(
        37084, "26999c164f3af1501bc680470d2ff11758db11de23586712047e768b2843aa99"),
}


def check(path: str | Path, key: str | None = None, how_to_get: str = "",
          expected: Expected | None = None) -> Path:
    """Return ``path`` if it matches ``expected`` (default: ``KNOWN[key]``); else raise
    :class:`CorruptDataError`. ``how_to_get`` ends the message (where to get an intact copy)."""
    path = Path(path)
    expected = expected or (KNOWN.get(key) if key else None)
    if expected is None:
        return path
    st = path.stat()
    if expected.size is not None and st.st_size != expected.size:
        kind = "truncated" if st.st_size < expected.size else "too long"
        _fail(path, f"expected {expected.size} bytes, found {st.st_size} ({kind} copy)", how_to_get)
    stamp_file = paths.integrity_dir() / (hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:20] + ".json")
    stamp = {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    old = cachefiles.read_json(stamp_file, "verified-input stamp")
    if old is not None and not isinstance(old, dict):
        cachefiles.discard_corrupt(stamp_file, "verified-input stamp is not a JSON object")
        old = None
    if old and {k: old.get(k) for k in stamp} == stamp and str(old.get("sha256", "")).startswith(expected.sha256):
        return path
    digest = cachefiles.sha256_file(path)
    if not digest.startswith(expected.sha256):
        _fail(path, f"expected sha256 {expected.sha256}, found {digest} (same size: altered bytes)"
              if expected.size is not None else f"expected sha256 {expected.sha256}..., found {digest}", how_to_get)
    try:
        cachefiles.write_text(stamp_file, json.dumps({**stamp, "sha256": digest}))
    except OSError:  # read-only cache: verify again next time
        pass
    return path


def _fail(path: Path, what: str, how_to_get: str) -> None:
    raise CorruptDataError(f"{path} is damaged: {what}. How to get it again: "
                           f"{how_to_get or 'delete it and restore an intact copy'}")
