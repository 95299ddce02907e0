"""Shared fixtures. Tests never download: AXLIB_OFFLINE=1. Datasets come from AXLIB_DATA
(CI: ../shared/data); tests that need a dataset skip with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("AXLIB_DATA", str(ROOT.parent / "shared" / "data"))
os.environ["AXLIB_OFFLINE"] = "1"
os.environ.pop("AXLIB_FORCE", None)
os.environ.pop("DASK_SCHEDULER_ADDRESS", None)
os.environ.setdefault("AXLIB_PROGRESS_INTERVAL", "30")


def have(relpath: str) -> bool:
    return (Path(os.environ["AXLIB_DATA"]) / relpath).exists()


needs_mnist = pytest.mark.skipif(not have("MNIST/raw/t10k-images-idx3-ubyte"), reason="MNIST not in AXLIB_DATA")
needs_cifar10 = pytest.mark.skipif(not have("cifar10/cifar10-uint8.npz") and not have("cifar-10-batches-py/data_batch_1"),
                                   reason="CIFAR-10 not in AXLIB_DATA")
needs_resnet = pytest.mark.skipif(not have("pretrained/resnet20-12fca82f.th"), reason="ResNet-20 weights not in AXLIB_DATA")


def randomised_bn(net):
    """Give every BatchNorm2d of ``net`` non-trivial running statistics and affine parameters (seeded),
    so that folding it into the convolutions is a real change."""
    import torch

    g = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return net


@pytest.fixture
def tmp_store(tmp_path, monkeypatch):
    """Private runs/build/cache roots for one test."""
    for var, sub in (("AXLIB_RUNS", "runs"), ("AXLIB_BUILD", "_build"), ("AXLIB_CACHE", "cache")):
        monkeypatch.setenv(var, str(tmp_path / sub))
    return tmp_path


TINY_RESNET8_ZOO = {"epochs": 1, "n_train": 256}


@pytest.fixture(scope="session")
def _tiny_resnet8_session(tmp_path_factory):
    """A session cache holding decoded CIFAR-10 arrays and a ResNet-8 trained on 256 images for one epoch."""
    root = tmp_path_factory.mktemp("tiny-resnet8")
    old = os.environ.get("AXLIB_CACHE")
    os.environ["AXLIB_CACHE"] = str(root)
    try:
        from axlib import models

        models.get_model("resnet8", progress=False, **TINY_RESNET8_ZOO)
    finally:
        if old is None:
            os.environ.pop("AXLIB_CACHE", None)
        else:
            os.environ["AXLIB_CACHE"] = old
    return root


@pytest.fixture
def tiny_resnet8_cache(tmp_path, monkeypatch, _tiny_resnet8_session):
    """A fresh AXLIB_CACHE for one test with the session's tiny ResNet-8 and decoded CIFAR-10 arrays in it
    (recipe overrides: :data:`TINY_RESNET8_ZOO`); everything else the test writes stays its own."""
    import shutil

    shutil.copytree(_tiny_resnet8_session / "models", tmp_path / "models")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "arrays").symlink_to(_tiny_resnet8_session / "cache" / "arrays")
    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path))
    return tmp_path
