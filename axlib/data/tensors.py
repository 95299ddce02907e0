"""Normalised torch tensors and batch iterators over deterministic subsets."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from axlib import paths, validate
from axlib.data.arrays import DATASETS, MissingDataError, load_arrays
from axlib.data.splits import calibration_test_split, subset_indices

#: ImageNet validation images loaded for the second subset of :func:`evaluation_split` when its
#: size is left open (``None``); the other datasets then use the rest of their test split.
IMAGENET_DEFAULT_SECOND = 5000

#: Input normalisations, named so a model can declare the one it was trained with.
#: ``scale``: x / 256 (Caffe LeNet, ``scale: 0.00390625``). ``cifar_meanstd``: per-channel CIFAR-10
#: train mean/std. ``imagenet_meanstd``: the constants akamaster's CIFAR ResNets and torchvision use.
NORMALIZATIONS = {
    "scale": None,
    "cifar_meanstd": ((0.49139968, 0.48215841, 0.44653091), (0.24703223, 0.24348513, 0.26158784)),
    "imagenet_meanstd": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def tensors(name: str, split: str, normalization: str, n: int | None = None, seed: int = 0,
            indices: np.ndarray | None = None):
    """Float32 images ``(N, C, H, W)`` and int64 labels ``(N,)`` as torch tensors.

    Either ``indices`` (explicit) or a deterministic subset of ``n`` images drawn with ``seed``
    (``n=None``: the whole split, in canonical order).
    """
    import torch

    validate.choice("normalization", normalization, list(NORMALIZATIONS))
    ds = load_arrays(name, split)
    if indices is None:
        indices = subset_indices(len(ds), n, seed)
    x = torch.from_numpy(np.asarray(ds.images[indices])).float()
    y = torch.from_numpy(np.asarray(ds.labels[indices]))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()
    if normalization == "scale":
        x = x / 256.0
    else:
        mean, std = NORMALIZATIONS[normalization]
        x = x / 255.0
        x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return x, y


def batches(x, y, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator:
    """Yield ``(x_batch, y_batch)``; shuffled with a private seeded generator when asked."""
    import torch

    n = len(y)
    if shuffle:
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(n, generator=g)
    else:
        order = torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def imagenet_val_root():
    """Where the ImageNet validation folder is looked for: ``AXLIB_DATA/imagenet/val``."""
    return paths.data_root() / "imagenet" / "val"


def imagenet_available() -> bool:
    """True when the local ImageNet validation folder exists and is not empty (it cannot be downloaded)."""
    root = imagenet_val_root()
    return root.is_dir() and any(root.iterdir())


def imagenet_val(n: int | None = None, seed: int = 0, batch_size: int = 64):
    """A DataLoader over ``AXLIB_DATA/imagenet/val/<wnid>/*.JPEG`` with the standard 224 crop.

    ImageNet cannot be downloaded automatically (licence); the error says how to lay it out.
    """
    import torch
    from torchvision import datasets, transforms

    root = imagenet_val_root()
    if not imagenet_available():
        raise MissingDataError(
            f"imagenet validation folder not found. Looked for: {root}\n"
            "How to get it: download ILSVRC2012 validation images from https://image-net.org "
            "(registration required) and sort them into one sub-folder per class (wnid), e.g. "
            f"{root}/n01440764/ILSVRC2012_val_00000293.JPEG; then set AXLIB_DATA."
        )
    mean, std = NORMALIZATIONS["imagenet_meanstd"]
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                             transforms.Normalize(mean, std)])
    ds = datasets.ImageFolder(str(root), transform=tf)
    idx = subset_indices(len(ds), n, seed)
    return torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx.tolist()), batch_size=batch_size)


def imagenet_tensors(n: int | None, seed: int):
    """``n`` seeded ImageNet validation images (224 crop, ``imagenet_meanstd``) and labels as tensors."""
    import torch

    xs, ys = zip(*imagenet_val(n=n, seed=seed, batch_size=100))
    return torch.cat(xs), torch.cat(ys)


def evaluation_split(name: str, normalization: str, n_first: int, n_second: int | None, seed: int):
    """Two disjoint, seeded subsets of a dataset's evaluation images: ``((x1, y1), (x2, y2))``.

    The evaluation images are the test split (MNIST, CIFAR) or the local ImageNet validation folder.
    The subsets are the first ``n_first`` and the next ``n_second`` images of one seeded permutation
    (:func:`calibration_test_split`; ``n_second=None``: the rest, for ImageNet the next
    :data:`IMAGENET_DEFAULT_SECOND`), e.g. calibration / test (hanif2018) or optimisation / test
    (SnaPEA's Algorithm 1). ImageNet images always use the ``imagenet_meanstd`` normalisation.
    """
    if name != "imagenet":
        a, b = calibration_test_split(len(load_arrays(name, "test")), n_first, n_second, seed)
        return tensors(name, "test", normalization, indices=a), tensors(name, "test", normalization, indices=b)
    if normalization != "imagenet_meanstd":
        raise validate.ParameterError(f"imagenet images use normalization 'imagenet_meanstd', not {normalization!r}")
    validate.integer("n_first", n_first, lo=0)
    second = IMAGENET_DEFAULT_SECOND if n_second is None else validate.integer("n_second", n_second, lo=1)
    x, y = imagenet_tensors(n_first + second, seed)
    a, b = calibration_test_split(len(y), n_first, None, seed)
    return (x[a], y[a]), (x[b], y[b])


assert set(DATASETS) >= {"mnist", "cifar10", "cifar100", "imagenet"}
