"""Model zoo: build, train (with a progress bar) and cache networks by config hash.

A trained model is stored as ``data/models/<name>-<hash12>.pt`` with a ``.json`` sidecar
(recipe, seed, test accuracy, training time). The hash covers the model name, the recipe and
the seed, so a changed recipe trains a new model and an unchanged one is loaded in well under
a second. Training checkpoints every epoch to ``<file>.partial`` and resumes from it, so an
interrupted training loses at most one epoch.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from axlib import config, data, paths, validate

ZOO_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """Training recipe: SGD with momentum and a cosine learning-rate schedule.

    ``n_train``: training images (None = all); ``augment``: random 4-pixel shifts and
    horizontal flips (CIFAR only); ``lr`` is the peak learning rate.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    n_train: int | None = None
    augment: bool = False
    warmup_epochs: int = 0
    extra: dict = field(default_factory=dict)

    def validate(self) -> Recipe:
        validate.integer("epochs", self.epochs, lo=1, hi=1000)
        validate.integer("batch_size", self.batch_size, lo=1, hi=65536)
        validate.number("lr", self.lr, lo=0.0, hi=10.0)
        if self.n_train is not None:
            validate.integer("n_train", self.n_train, lo=1)
        return self


def cache_key(name: str, recipe: Recipe, seed: int) -> str:
    payload = json.dumps({"zoo": ZOO_VERSION, "name": name, "recipe": asdict(recipe), "seed": seed},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def model_path(name: str, recipe: Recipe, seed: int) -> Path:
    return paths.models_dir() / f"{name}-{cache_key(name, recipe, seed)}.pt"


def train_or_load(name: str, build, dataset: str, normalization: str, recipe: Recipe, seed: int,
                  progress: bool = True) -> tuple[nn.Module, dict]:
    """Return ``(model, info)``: the cached model for this config, training it first if needed."""
    recipe.validate()
    path = model_path(name, recipe, seed)
    info_path = path.with_suffix(".json")
    config.seed_everything(seed)  # deterministic initial weights
    model = build()
    if path.exists() and info_path.exists():
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval(), json.loads(info_path.read_text())
    info = _train(model, name, dataset, normalization, recipe, seed, path, progress)
    _atomic_torch_save(model.state_dict(), path)
    tmp = info_path.with_name(info_path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, info_path)
    path.with_name(path.name + ".partial").unlink(missing_ok=True)
    return model.eval(), info


def _atomic_torch_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random shifts of up to 4 pixels (zero padding) and horizontal flips, per image."""
    n, _, h, w = x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    dx = torch.randint(0, 9, (n,), generator=gen)
    dy = torch.randint(0, 9, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h))  # (n, h)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w))  # (n, w)
    cols = torch.where(flip.view(n, 1), cols.flip(1), cols)
    idx_n = torch.arange(n).view(n, 1, 1)
    out = padded.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)]
    return out.permute(0, 3, 1, 2).contiguous()


@torch.enable_grad()  # callers may sit inside torch.no_grad() (an analysis that trains its model on first use)
def _train(model: nn.Module, name: str, dataset: str, normalization: str, recipe: Recipe, seed: int,
           path: Path, progress: bool) -> dict:
    x, y = data.tensors(dataset, "train", normalization, n=recipe.n_train, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    steps_per_epoch = -(-len(y) // recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    warm = recipe.warmup_epochs * steps_per_epoch

    def lr_at(step: int) -> float:
        if step < warm:
            return recipe.lr * (step + 1) / warm
        t = (step - warm) / max(1, total - warm)
        return 0.5 * recipe.lr * (1 + torch.cos(torch.tensor(t * torch.pi)).item())

    partial = path.with_name(path.name + ".partial")
    start_epoch, elapsed = 0, 0.0
    if partial.exists():
        ck = torch.load(partial, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start_epoch, elapsed = ck["epoch"], ck["elapsed_s"]
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc=f"train {name}", disable=not progress,
               mininterval=config.PROGRESS_INTERVAL_S, unit="step")
    for epoch in range(start_epoch, recipe.epochs):
        t0 = time.perf_counter()
        model.train()
        gen = torch.Generator().manual_seed(seed * 1000 + epoch)
        for i, (xb, yb) in enumerate(data.batches(x, y, recipe.batch_size, shuffle=True, seed=seed * 1000 + epoch)):
            for g in opt.param_groups:
                g["lr"] = lr_at(epoch * steps_per_epoch + i)
            if recipe.augment:
                xb = _augment(xb, gen)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        elapsed += time.perf_counter() - t0
        _atomic_torch_save({"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1,
                            "elapsed_s": elapsed}, partial)
    bar.close()
    model.eval()
    xt, yt = data.tensors(dataset, "test", normalization)
    acc = accuracy(model, xt, yt)
    return {"name": name, "dataset": dataset, "recipe": asdict(recipe), "seed": seed,
            "test_accuracy": acc, "n_test": len(yt), "train_time_s": round(elapsed, 1),
            "torch": torch.__version__}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (put in eval mode) on tensors ``x, y``."""
    model.eval()
    correct = 0
    for xb, yb in data.batches(x, y, batch_size):
        correct += (model(xb).argmax(1) == yb).sum().item()
    return correct / len(y)


def with_overrides(recipe: Recipe, **overrides) -> Recipe:
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
