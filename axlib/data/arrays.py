"""Raw uint8 arrays of MNIST, CIFAR-10 and CIFAR-100 with clear errors when files are missing.

Lookup order per dataset (first hit wins), then the decoded arrays are cached as ``.npy``:
- MNIST: torchvision layout ``AXLIB_DATA/MNIST/raw/*-ubyte``.
- CIFAR-10: torchvision's official ``cifar-10-batches-py`` (md5-checked); else
  ``AXLIB_DATA/cifar10/cifar10-uint8.npz`` (same arrays, same order).
- CIFAR-100: torchvision's ``cifar-100-python``.
When nothing is found and downloads are allowed (``AXLIB_OFFLINE`` unset), torchvision downloads
from the canonical URL into ``paths.download_root()``.

Checks: every raw file read here is compared with its size and sha256
(:mod:`axlib.data.integrity`) when the decoded cache is built, so a truncated or altered download
is a :class:`CorruptDataError` naming the file instead of a ``BadZipFile`` or reshape error. The
decoded ``.npy`` cache is written atomically; a damaged one (unreadable header, shorter than its
header says, images and labels of different lengths or dtypes) is discarded with a
``CacheWarning`` and decoded again. A flipped pixel byte inside an intact-looking ``.npy`` is not
detected (hashing on every memory-mapped load would cost more than decoding).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from axlib import cachefiles, paths, validate
from axlib.data.integrity import CorruptDataError, MissingDataError, check

DATASETS = ("mnist", "cifar10", "cifar100", "imagenet")
ARRAY_DATASETS = ("mnist", "cifar10", "cifar100")
SPLITS = ("train", "test")

UPSTREAM_FILES = {"mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/"}
UPSTREAM = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision MNIST mirrors)",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}


@dataclass(frozen=True)
class ArrayDataset:
    """Images as uint8 ``(N, H, W)`` (grey) or ``(N, H, W, C)`` (colour), labels int64 ``(N,)``."""

    name: str
    split: str
    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


def offline() -> bool:
    return os.environ.get("AXLIB_OFFLINE", "").lower() not in ("", "0", "false", "no")


def load_arrays(name: str, split: str) -> ArrayDataset:
    """Load ``split`` ('train' | 'test') of ``name`` ('mnist' | 'cifar10' | 'cifar100')."""
    validate.choice("dataset", name, ARRAY_DATASETS)
    validate.choice("split", split, SPLITS)
    cached = _read_cache(name, split)
    if cached is not None:
        return ArrayDataset(name, split, *cached)
    images, labels = _LOADERS[name](split)
    images = np.ascontiguousarray(images, dtype=np.uint8)
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    _write_cache(name, split, images, labels)
    return ArrayDataset(name, split, images, labels)


# --------------------------------------------------------------------------- cache

def _cache_files(name: str, split: str) -> tuple[Path, Path]:
    d = paths.array_cache_dir()
    return d / f"{name}-{split}-images.npy", d / f"{name}-{split}-labels.npy"


def _read_cache(name: str, split: str):
    """``(images, labels)`` from the decoded cache, or None (absent, or damaged and discarded)."""
    xi, yi = _cache_files(name, split)
    if not (xi.exists() and yi.exists()):
        return None
    bad = xi
    try:
        images = np.load(xi, mmap_mode="r")
        bad = yi
        labels = np.load(yi)
    except (ValueError, OSError, EOFError) as exc:  # bad header, "mmap length is greater than file size", empty
        reason = f"unreadable decoded array: {cachefiles.describe(exc)}"
    else:
        if images.dtype == np.uint8 and labels.dtype == np.int64 and labels.ndim == 1 and len(images) == len(labels):
            return images, labels
        bad, reason = yi, (f"labels {labels.dtype}{labels.shape} do not match images {images.dtype}{images.shape} "
                           f"of {xi.name} (expected uint8 images and as many int64 labels)")
        del images  # release the memory map before its file is deleted
    other = xi if bad == yi else yi
    cachefiles.discard_corrupt(bad, f"{reason}; {other.name} is deleted with it")
    other.unlink(missing_ok=True)
    return None


def _write_cache(name: str, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write both arrays atomically (labels last: a reader needs both, so a kill between them is a miss)."""
    for path, arr in zip(_cache_files(name, split), (images, labels)):
        with cachefiles.atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, arr)


# --------------------------------------------------------------------------- loaders

def _missing(name: str, looked: list[Path], reason: str) -> MissingDataError:
    listing = "\n".join(f"  - {p}" for p in looked)
    return MissingDataError(
        f"{name} ({reason}). Looked for:\n{listing}\n"
        f"How to get it: set AXLIB_DATA to a folder that holds these files, or allow network "
        f"access (unset AXLIB_OFFLINE) so torchvision downloads {UPSTREAM[name]} into "
        f"{paths.download_root()}."
    )


def _roots() -> list[Path]:
    roots = [paths.data_root()]
    if paths.download_root() != roots[0]:
        roots.append(paths.download_root())
    return roots


def _download_failed(exc: Exception) -> str:
    return f"download failed: {type(exc).__name__}: {exc}"


def _mnist(split: str):
    from torchvision.datasets import MNIST

    train = split == "train"
    stem = "train" if train else "t10k"
    files = [f"{stem}-images-idx3-ubyte", f"{stem}-labels-idx1-ubyte"]
    for root in _roots():
        if all((root / "MNIST" / "raw" / f).exists() for f in files):
            _check_mnist(root, files)
            ds = MNIST(root=str(root), train=train, download=False)
            return ds.data.numpy(), ds.targets.numpy()
    looked = [r / "MNIST" / "raw" / f for r in _roots() for f in files]
    reason = "not found, downloads disabled (AXLIB_OFFLINE)"
    if not offline():
        try:
            ds = MNIST(root=str(paths.download_root()), train=train, download=True)
        except Exception as exc:  # network errors come in many types
            reason = _download_failed(exc)
        else:
            _check_mnist(paths.download_root(), files)
            return ds.data.numpy(), ds.targets.numpy()
    raise _missing("mnist", looked, reason)


def _check_mnist(root: Path, files: list[str]) -> None:
    for f in files:
        check(root / "MNIST" / "raw" / f, f"MNIST/raw/{f}",
              f"delete it and let torchvision download {UPSTREAM_FILES['mnist']}{f}.gz again (unset AXLIB_OFFLINE; "
              f"it unpacks into {paths.download_root() / 'MNIST' / 'raw'}), or copy an intact {f} there")


def _cifar(name: str, split: str):
    from torchvision.datasets import CIFAR10, CIFAR100

    cls, folder = (CIFAR10, "cifar-10-batches-py") if name == "cifar10" else (CIFAR100, "cifar-100-python")
    train = split == "train"
    looked: list[Path] = []
    incomplete: list[Path] = []
    for root in _roots():
        looked.append(root / folder)
        if (root / folder).is_dir():
            try:
                ds = cls(root=str(root), train=train, download=False)
                return ds.data, np.asarray(ds.targets)
            except RuntimeError:  # incomplete or corrupt copy (torchvision's md5 check): try the next source
                incomplete.append(root / folder)
        if name == "cifar10":
            npz = root / "cifar10" / "cifar10-uint8.npz"
            looked.append(npz)
            if npz.exists():
                check(npz, "cifar10/cifar10-uint8.npz",
                      f"delete it and either copy an intact cifar10-uint8.npz there or, with network access "
                      f"(unset AXLIB_OFFLINE), let torchvision download the official {UPSTREAM['cifar10']} "
                      f"into {paths.download_root()}")
                with np.load(npz) as z:
                    return z[f"x_{split}"], z[f"y_{split}"]
    reason = "not found, downloads disabled (AXLIB_OFFLINE)"
    if incomplete:
        reason += "; incomplete or corrupt (torchvision md5 check failed): " + ", ".join(map(str, incomplete))
    if not offline():
        try:
            ds = cls(root=str(paths.download_root()), train=train, download=True)
            return ds.data, np.asarray(ds.targets)
        except Exception as exc:
            reason = _download_failed(exc)
    raise _missing(name, looked, reason)


_LOADERS = {
    "mnist": _mnist,
    "cifar10": lambda split: _cifar("cifar10", split),
    "cifar100": lambda split: _cifar("cifar100", split),
}
