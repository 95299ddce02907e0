"""Resource-constrained ensembles of ponzina2022 §3.1 (after Ponzina et al., E2CNNs, 2021).

An ensemble of ``M`` instances of a network, each with filters dropped (every hidden channel and
unit count scaled by one ``width``) until its MACs are about ``1/M`` of the single network's, so the
ensemble costs about as much as the single instance. Every instance is trained from its own random
initialisation (not pruned from trained weights). Combination: the mean of the instances' softmax
outputs (the paper does not state its rule; this is our choice). :class:`Ensemble` returns that mean
probability, so ``argmax`` is the ensemble's prediction.

Layer names: instance ``k`` is the submodule ``m<k>``, so the layer ``conv2`` of instance 1 is
``m1.conv2`` and a per-layer configuration (:func:`axlib.nn.approximate_layers`) addresses every
instance and layer; :func:`instance_layers` lists them. Batch norms fold per instance.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from axlib import validate

#: Zoo networks with a ``width`` argument, usable as ensemble instances.
ENSEMBLE_BASES = ("cifarquick", "vggf_cifar")
MAX_INSTANCES = 16


def check_m(m) -> int:
    """``M`` (number of instances): an integer in 1..:data:`MAX_INSTANCES`."""
    return validate.integer("M", m, lo=1, hi=MAX_INSTANCES)


class Ensemble(nn.Module):
    """``M`` networks ``m0 .. m<M-1>`` on the same input; output (N, classes): mean softmax."""

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        check_m(len(members))
        for k, m in enumerate(members):
            self.add_module(f"m{k}", m)

    @property
    def size(self) -> int:
        return len(self._modules)

    def members(self) -> list[nn.Module]:
        return list(self.children())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.softmax(m(x), dim=1) for m in self.children()]).mean(0)


def instance_layers(ensemble: Ensemble, layer: str) -> list[str]:
    """The names of ``layer`` (a layer name of the single network) in every instance: ``m<k>.<layer>``."""
    return [f"m{k}.{layer}" for k in range(ensemble.size)]


def _builder(base: str):
    from axlib.models.cifarquick import CifarQuick
    from axlib.models.vggf_cifar import VGGfCifar

    validate.choice("net", base, list(ENSEMBLE_BASES))
    return {"cifarquick": CifarQuick, "vggf_cifar": VGGfCifar}[base]


def macs_per_image(model: nn.Module) -> int:
    """Multiply-accumulates of one 3 x 32 x 32 image through ``model`` (all Conv2d/Linear layers)."""
    from axlib.energy import count_macs

    return int(count_macs(model, [(torch.zeros(1, 3, 32, 32), None)])["macs"].sum())


@functools.cache
def instance_width(base: str, m: int) -> float:
    """Width of each of ``m`` instances of ``base``: the largest width (to 1e-3) whose MACs times ``m``
    stay within the single network's MACs (bisection; channel counts are rounded, so the ensemble's
    MACs land a little below the single instance's). ``m = 1`` gives 1.0."""
    check_m(m)
    build = _builder(base)
    if m == 1:
        return 1.0
    target = macs_per_image(build()) / m
    lo, hi = 0.01, 1.0
    while hi - lo > 1e-3:
        mid = (lo + hi) / 2
        if macs_per_image(build(width=mid)) <= target:
            lo = mid
        else:
            hi = mid
    return round(lo, 4)


def instance_seed(seed: int, k: int) -> int:
    """Seed of instance ``k``: its own random initialisation and data order (``seed·100 + k``)."""
    return seed * 100 + k


def get_ensemble(base: str, m: int, seed: int = 0, progress: bool = True, dataset: str = "cifar10",
                 **recipe_overrides) -> tuple[Ensemble, dict]:
    """An eval-mode :class:`Ensemble` of ``m`` zoo-trained instances of ``base`` and its info.

    Instance ``k`` is the zoo network ``<base>_ens<m>_<k>`` (``width`` = :func:`instance_width`, seed
    :func:`instance_seed`), trained with ``base``'s zoo recipe plus ``recipe_overrides`` (epochs,
    ``extra={"qat_epochs": ...}`` ...), cached and resumable like every zoo model. ``m = 1`` is the
    single network ``base`` itself (same cache as :func:`axlib.models.get_model`), wrapped as ``m0``.
    ``dataset="cifar100"`` trains 100-class instances on CIFAR-100 (zoo names ``<base>_cifar100...``;
    torchvision loads or downloads the data).
    Returns ``(ensemble, {"M", "width", "instances": [zoo info, ...], "train_time_s"})``.
    """
    from axlib import provenance
    from axlib.models import spec
    from axlib.models.zoo import train_or_load, with_overrides

    check_m(m)
    build = _builder(base)
    validate.choice("dataset", dataset, ["cifar10", "cifar100"])
    classes = 10 if dataset == "cifar10" else 100
    validate.integer("seed", seed, lo=0, hi=(2**32 - 1) // 100 - 1)
    s = spec(base)
    recipe = with_overrides(s.recipe, **recipe_overrides)
    width = instance_width(base, m)
    members, infos = [], []
    for k in range(m):
        name = (base if m == 1 else f"{base}_ens{m}_{k}") + ("" if dataset == "cifar10" else f"_{dataset}")
        k_seed = seed if m == 1 else instance_seed(seed, k)
        net, info = train_or_load(name, functools.partial(build, width=width, num_classes=classes), dataset,
                                  s.normalization, recipe, k_seed, progress)
        provenance.record_model(name, net, origin="zoo", seed=k_seed, test_accuracy=info.get("test_accuracy"),
                                recipe=info.get("recipe"))
        members.append(net)
        infos.append(info)
    return Ensemble(members).eval(), {"M": m, "width": width, "instances": infos,
                                      "train_time_s": round(sum(i.get("train_time_s", 0.0) for i in infos), 1)}
