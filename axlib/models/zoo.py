"""Model zoo: build, train (with a progress bar) and cache networks by config hash.

A trained model is stored as ``data/models/<name>-<hash12>.pt`` with a ``.json`` sidecar
(recipe, seed, test accuracy, training time). The hash covers the model name, the recipe and
the seed, so a changed recipe trains a new model and an unchanged one is loaded in well under
a second. Training checkpoints every epoch to ``<file>.partial`` and resumes from it, so an
interrupted training loses at most one epoch.

Reliability: the recipe is validated before anything is built, loaded or trained (every field
against its allowed range, unknown override names refused; ``ParameterError``). Every file is
written atomically (per-process temporary + rename), the weights first and the ``.json`` last with
the sha256 of the weights in it; on load the weights must match that digest. A damaged cache
(empty or truncated ``.pt``, unparsable ``.json``, digest mismatch, weights that do not fit the
network, unreadable ``.partial``) is discarded with a ``CacheWarning`` naming the file, and the
model is trained again (resumed checkpoints: from the start).

Shipped weights: the trained files behind the committed raw runs are committed under
``data/zoo/`` (:func:`axlib.paths.shipped_models_dir`). When the cache lacks a model and a shipped
file with the same name (same name, recipe, seed, zoo version) exists, it is copied into the cache
and loaded through the same digest check, so a fresh clone trains nothing; a damaged shipped file is
reported and the model is trained here instead (the committed file is never deleted).
``AXLIB_RETRAIN=1`` ignores the shipped files (``make reproduce`` sets it): each zoo network is then
trained here once and cached. :func:`ship` copies a cached model into ``data/zoo/``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from axlib import cachefiles, config, data, paths, validate

ZOO_VERSION = 1

#: Keys allowed in ``Recipe.extra`` (each part of the cache key).
EXTRA_FIELDS = ("qat_epochs", "qat_scheme")


@dataclass(frozen=True)
class Recipe:
    """Training recipe: SGD with momentum and a cosine learning-rate schedule.

    ``n_train``: training images (None = all); ``augment``: random 4-pixel shifts and
    horizontal flips (CIFAR only); ``lr`` is the peak learning rate. ``extra`` (:data:`EXTRA_FIELDS`):
    ``qat_epochs`` — the last so many epochs train with fake quantization
    (:func:`axlib.quant.qat.fake_quantized_training`, ponzina2022 §4) in ``qat_scheme`` (default "8/16").
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
        """Check every field (``ParameterError`` naming it and its allowed range); returns ``self``."""
        validate.integer("epochs", self.epochs, lo=1, hi=1000)
        validate.integer("batch_size", self.batch_size, lo=1, hi=65536)
        _real("lr", self.lr, 0.0, 10.0, lo_open=True)
        _real("momentum", self.momentum, 0.0, 1.0, hi_open=True)
        _real("weight_decay", self.weight_decay, 0.0, 1.0)
        if self.n_train is not None:
            validate.integer("n_train", self.n_train, lo=1)
        validate.boolean("augment", self.augment)
        validate.integer("warmup_epochs", self.warmup_epochs, lo=0, hi=self.epochs)
        validate.mapping("extra", self.extra)
        unknown = sorted(set(self.extra) - set(EXTRA_FIELDS))
        if unknown:
            raise validate.ParameterError(f"parameter extra has unknown key(s) {unknown}; allowed: {list(EXTRA_FIELDS)}")
        validate.integer("extra.qat_epochs", self.extra.get("qat_epochs", 0), lo=0, hi=self.epochs)
        if "qat_scheme" in self.extra:
            from axlib.nn.approx import scheme_bits

            scheme_bits(self.extra["qat_scheme"])
        try:
            json.dumps(self.extra)
        except (TypeError, ValueError) as exc:
            raise validate.ParameterError(f"parameter extra={self.extra!r} must hold JSON values "
                                          f"(it is part of the cache key): {exc}") from None
        return self


def _real(name: str, value, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> float:
    """A finite number in the interval from ``lo`` to ``hi`` (open ends as asked); NaN and inf are refused."""
    interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise validate.ParameterError(f"parameter {name}={value!r} must be a number in {interval}")
    inside = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not (math.isfinite(value) and inside):
        raise validate.ParameterError(f"parameter {name}={value!r} is out of range; allowed: numbers in {interval}")
    return float(value)


def check_overrides(recipe: Recipe, overrides: dict) -> Recipe:
    """``recipe`` with ``overrides`` applied (None values ignored), validated: unknown names and bad
    values are ``ParameterError`` before any work."""
    allowed = [f.name for f in fields(Recipe)]
    unknown = sorted(k for k in overrides if k not in allowed)
    if unknown:
        raise validate.ParameterError(f"parameter zoo has unknown recipe field(s) {unknown}; allowed: {allowed}")
    return replace(recipe, **{k: v for k, v in overrides.items() if v is not None}).validate()


def cache_key(name: str, recipe: Recipe, seed: int) -> str:
    payload = json.dumps({"zoo": ZOO_VERSION, "name": name, "recipe": asdict(recipe), "seed": seed},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def model_path(name: str, recipe: Recipe, seed: int) -> Path:
    return paths.models_dir() / f"{name}-{cache_key(name, recipe, seed)}.pt"


def train_or_load(name: str, build, dataset: str, normalization: str, recipe: Recipe, seed: int,
                  progress: bool = True) -> tuple[nn.Module, dict]:
    """Return ``(model, info)``: the cached model for this config, training it first if needed.

    ``info`` is the ``.json`` sidecar: recipe, seed, test accuracy, training time and
    ``weights_sha256`` (sha256 of the ``.pt`` file, checked on every load).
    """
    recipe.validate()
    validate.integer("seed", seed, lo=0, hi=2**32 - 1)
    path = model_path(name, recipe, seed)
    info_path = path.with_suffix(".json")
    config.seed_everything(seed)  # deterministic initial weights
    model = build()
    shipped = _adopt_shipped(path, info_path)
    cached = _load_cached(path, info_path)
    if shipped is not None and cached is None:
        warnings.warn(f"the shipped weights {shipped} are damaged (see the warning before); "
                      f"training {name} here instead", cachefiles.CacheWarning, stacklevel=2)
    if cached is not None:
        state, info = cached
        try:
            model.load_state_dict(state)
            return model.eval(), info
        except RuntimeError as exc:  # wrong keys or shapes: a stale or foreign file
            _discard_model(path, info_path, f"weights do not fit {name}: {str(exc).splitlines()[0]}")
            config.seed_everything(seed)  # the failed load may have overwritten some tensors: start again
            model = build()
    info = _train(model, name, dataset, normalization, recipe, seed, path, progress)
    _atomic_torch_save(model.state_dict(), path)
    info["weights_sha256"] = cachefiles.sha256_file(path)
    cachefiles.write_text(info_path, json.dumps(info, indent=2))  # last: its presence marks a complete cache
    path.with_name(path.name + ".partial").unlink(missing_ok=True)
    return model.eval(), info


def retrain_requested() -> bool:
    """``AXLIB_RETRAIN=1``: train zoo networks here instead of using the shipped weights."""
    return os.environ.get("AXLIB_RETRAIN", "").strip().lower() in ("1", "true", "yes")


def _adopt_shipped(path: Path, info_path: Path) -> Path | None:
    """Copy the shipped ``.pt`` and ``.json`` for ``path`` into the cache when the cache lacks them.

    Returns the shipped ``.pt`` when it was copied (the caller's digest check then covers it), else
    None: the cache already holds the model, no shipped file exists, or ``AXLIB_RETRAIN=1``.
    """
    src = paths.shipped_models_dir() / path.name
    src_info = src.with_suffix(".json")
    if retrain_requested() or (path.exists() and info_path.exists()):
        return None
    if not (src.exists() and src_info.exists()) or src.resolve() == path.resolve():
        return None
    with cachefiles.atomic_path(path) as tmp:  # weights first, the sidecar last (it marks a complete cache)
        shutil.copyfile(src, tmp)
    with cachefiles.atomic_path(info_path) as tmp:
        shutil.copyfile(src_info, tmp)
    return src


SHIP_LIMIT_BYTES = 5 * 2**20
"""Largest weights file that may be committed (the repository's limit for one tracked file)."""


def ship(name: str, recipe: Recipe, seed: int) -> Path:
    """Copy the cached model ``(name, recipe, seed)`` into ``data/zoo/`` (to be committed); returns its path.

    The cache must hold the model complete and undamaged (checked by its digest); ``FileNotFoundError``
    otherwise. A weights file over :data:`SHIP_LIMIT_BYTES` is refused (``ValueError``): it is too large
    to commit and must be published another way (e.g. a release asset with its checksum).
    """
    path = model_path(name, recipe, seed)
    info_path = path.with_suffix(".json")
    if _load_cached(path, info_path) is None:
        raise FileNotFoundError(f"no complete cached model {path} to ship; train it first (get_model)")
    if path.stat().st_size > SHIP_LIMIT_BYTES:
        raise ValueError(f"{path} is {path.stat().st_size / 2**20:.1f} MiB, over the {SHIP_LIMIT_BYTES / 2**20:.0f} MiB "
                         "limit for a committed file: not shipped")
    dest = paths.shipped_models_dir() / path.name
    for src, dst in ((path, dest), (info_path, dest.with_suffix(".json"))):
        with cachefiles.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return dest


def _load_cached(path: Path, info_path: Path) -> tuple[dict, dict] | None:
    """``(state_dict, info)`` of a cached model, or None (absent, or damaged and discarded)."""
    if not (path.exists() and info_path.exists()):
        return None
    info = cachefiles.read_json(info_path, "model info")
    if info is None:
        return None
    if not isinstance(info, dict):
        cachefiles.discard_corrupt(info_path, "model info is not a JSON object")
        return None
    expected = info.get("weights_sha256")  # absent in caches written before the digest was recorded
    if expected is not None:
        digest = cachefiles.sha256_file(path)
        if digest != expected:
            _discard_model(path, info_path, f"sha256 of the weights is {digest[:16]}..., {info_path.name} "
                                            f"recorded {str(expected)[:16]}... ({path.stat().st_size} bytes)")
            return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # EOFError (empty), RuntimeError (truncated zip), UnpicklingError, ...
        _discard_model(path, info_path, f"unreadable weights: {cachefiles.describe(exc)}")
        return None
    if not isinstance(state, dict):
        _discard_model(path, info_path, f"weights file holds a {type(state).__name__}, not a state dict")
        return None
    return state, info


def _discard_model(path: Path, info_path: Path, reason: str) -> None:
    """Discard a damaged model cache: the ``.pt`` (named in the warning) and its ``.json``."""
    cachefiles.discard_corrupt(path, reason)
    info_path.unlink(missing_ok=True)


def _atomic_torch_save(obj, path: Path) -> None:
    with cachefiles.atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
    start_epoch, elapsed = _resume(partial, model, opt, recipe.epochs)
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc=f"train {name}", disable=not progress,
               mininterval=config.PROGRESS_INTERVAL_S, unit="step")
    qat_from = recipe.epochs - int(recipe.extra.get("qat_epochs", 0))
    with contextlib.ExitStack() as qat:
        elapsed = _epochs(model, opt, recipe, seed, x, y, lr_at, steps_per_epoch, start_epoch, qat_from, qat, partial,
                          bar, elapsed)
    bar.close()
    model.eval()
    xt, yt = data.tensors(dataset, "test", normalization)
    acc = accuracy(model, xt, yt)
    return {"name": name, "dataset": dataset, "recipe": asdict(recipe), "seed": seed,
            "test_accuracy": acc, "n_test": len(yt), "train_time_s": round(elapsed, 1),
            "torch": torch.__version__}


def _epochs(model, opt, recipe: Recipe, seed: int, x, y, lr_at, steps_per_epoch: int, start_epoch: int, qat_from: int,
            qat: contextlib.ExitStack, partial: Path, bar, elapsed: float) -> float:
    """Train epochs ``start_epoch..epochs-1`` (fake quantization from epoch ``qat_from`` on, entered on
    ``qat``); checkpoint after each. Returns the accumulated training seconds."""
    from axlib.quant import qat as qat_mod

    for epoch in range(start_epoch, recipe.epochs):
        if epoch >= qat_from and not qat_mod.is_fake_quantized(model):
            qat.enter_context(qat_mod.fake_quantized_training(model, recipe.extra.get("qat_scheme", "8/16")))
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
        _atomic_torch_save({"model": qat_mod.plain_state_dict(model), "opt": opt.state_dict(), "epoch": epoch + 1,
                            "elapsed_s": elapsed}, partial)
    return elapsed


def _resume(partial: Path, model: nn.Module, opt, epochs: int) -> tuple[int, float]:
    """``(start_epoch, elapsed_s)`` from the checkpoint ``partial`` (model and optimiser restored);
    ``(0, 0.0)`` when there is none or it is damaged (discarded; the model keeps its initial weights)."""
    if not partial.exists():
        return 0, 0.0
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        ck = torch.load(partial, map_location="cpu", weights_only=False)
        epoch, elapsed = ck["epoch"], float(ck["elapsed_s"])
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= epochs:
            raise ValueError(f"epoch {epoch!r} is not in [0, {epochs}]")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])  # checks the parameter groups before changing anything
    except Exception as exc:  # empty/truncated file, missing keys, tensors that do not fit
        cachefiles.discard_corrupt(partial, f"unreadable training checkpoint: {cachefiles.describe(exc)}")
        model.load_state_dict(initial)
        opt.state.clear()
        return 0, 0.0
    return epoch, elapsed


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (put in eval mode) on tensors ``x, y``."""
    model.eval()
    correct = 0
    for xb, yb in data.batches(x, y, batch_size):
        correct += (model(xb).argmax(1) == yb).sum().item()
    return correct / len(y)


def with_overrides(recipe: Recipe, **overrides) -> Recipe:
    """``recipe`` with the non-None ``overrides``, validated (see :func:`check_overrides`)."""
    return check_overrides(recipe, overrides)
