"""Pretrained weights: CIFAR ResNets (akamaster/pytorch_resnet_cifar10), torchvision AlexNet and ResNet-18.

Files are looked up in ``AXLIB_DATA/pretrained/`` first, then in the download folder; when
absent and downloads are allowed they are fetched from the upstream URL. Every file is checked
against the sha256 prefix in its name (torch.hub convention) before use (``axlib.data.integrity``:
hashed once per file version, a damaged copy is a ``CorruptDataError`` naming it and its URL).
"""

from __future__ import annotations

from pathlib import Path

import torch

from axlib import paths
from axlib.data.arrays import offline
from axlib.data.integrity import Expected, MissingDataError, check

AKAMASTER = "https://github.com/akamaster/pytorch_resnet_cifar10/raw/master/pretrained_models/"
RESNET_FILES = {
    20: "resnet20-12fca82f.th",
    32: "resnet32-d509ac18.th",
    44: "resnet44-014dd654.th",
    56: "resnet56-4bfd9763.th",
    110: "resnet110-1d1ed7c2.th",
}
ALEXNET = ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth")
RESNET18 = ("resnet18-f37072fd.pth", "https://download.pytorch.org/models/resnet18-f37072fd.pth")
#: torchvision ImageNet weights (IMAGENET1K_V1) by network name
TORCHVISION_WEIGHTS = {"alexnet": ALEXNET, "resnet18": RESNET18}


def weight_file(filename: str, url: str) -> Path:
    """Path of a verified local copy of ``filename``; downloads it from ``url`` if allowed."""
    prefix = filename.rsplit("-", 1)[-1].split(".")[0]
    candidates = [paths.data_root() / "pretrained" / filename, paths.download_root() / "pretrained" / filename]
    for p in candidates:
        if p.exists():
            return check(p, expected=Expected(None, prefix), how_to_get=f"delete it and fetch {url}")
    reason = "not found, downloads disabled (AXLIB_OFFLINE)"
    if not offline():
        dst = candidates[1]
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(dst), hash_prefix=prefix, progress=True)
            return dst
        except Exception as exc:
            reason = f"download failed: {type(exc).__name__}: {exc}"
    looked = "\n".join(f"  - {p}" for p in candidates)
    raise MissingDataError(f"pretrained weights {filename} ({reason}). Looked for:\n{looked}\n"
                           f"How to get it: download {url} into {candidates[0].parent} (or set AXLIB_DATA "
                           "to a folder whose pretrained/ holds it).")


def load_cifar_resnet_state(depth: int) -> tuple[dict, float]:
    """State dict (``module.`` prefix stripped) and the stored top-1 accuracy (%) of a CIFAR ResNet."""
    if depth not in RESNET_FILES:
        raise MissingDataError(f"no pretrained CIFAR ResNet-{depth}; available depths: {sorted(RESNET_FILES)}")
    name = RESNET_FILES[depth]
    blob = torch.load(weight_file(name, AKAMASTER + name), map_location="cpu", weights_only=True)
    state = {k.removeprefix("module."): v for k, v in blob["state_dict"].items()}
    return state, float(blob.get("best_prec1", float("nan")))


def load_torchvision_state(network: str) -> dict:
    """torchvision's ImageNet weights (IMAGENET1K_V1) of ``network`` (:data:`TORCHVISION_WEIGHTS`)."""
    if network not in TORCHVISION_WEIGHTS:
        raise MissingDataError(f"no torchvision weights registered for {network!r}; available: "
                               f"{sorted(TORCHVISION_WEIGHTS)}")
    name, url = TORCHVISION_WEIGHTS[network]
    return torch.load(weight_file(name, url), map_location="cpu", weights_only=True)
