"""Datasets rooted at ``AXLIB_DATA``, deterministic subsets and calibration/test splits.

MNIST, CIFAR-10 and CIFAR-100 are held in memory as uint8 arrays (decoded once, cached as
``.npy`` under ``paths.array_cache_dir()`` and memory-mapped afterwards); ImageNet is read
from a class-per-folder validation directory through ``torchvision.datasets.ImageFolder``.
Raw files are checked by size and sha256 (``axlib.data.integrity``): a missing file is a
``MissingDataError``, a damaged one a ``CorruptDataError`` (a subclass), both naming the file.
"""

from axlib.data.arrays import (
    DATASETS,
    ArrayDataset,
    CorruptDataError,
    MissingDataError,
    load_arrays,
)
from axlib.data.splits import calibration_test_split, subset_indices
from axlib.data.tensors import (
    NORMALIZATIONS,
    batches,
    evaluation_split,
    imagenet_available,
    imagenet_tensors,
    imagenet_val,
    imagenet_val_root,
    tensors,
)

__all__ = [
    "DATASETS",
    "NORMALIZATIONS",
    "ArrayDataset",
    "CorruptDataError",
    "MissingDataError",
    "batches",
    "calibration_test_split",
    "evaluation_split",
    "imagenet_available",
    "imagenet_tensors",
    "imagenet_val",
    "imagenet_val_root",
    "load_arrays",
    "subset_indices",
    "tensors",
]
