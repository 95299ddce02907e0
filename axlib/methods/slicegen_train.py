"""Training CSG/BSG-augmented CIFAR networks (akhlaghi2020 §5.7), cached and resumable.

One run = one :class:`TrainSpec`: a network (``kind="original"``, ``"csg"`` or ``"bsg"``), its
initialisation (``"pretrained"`` original weights, ``"svd"`` from the pretrained slices, ``"scratch"``),
and an SGD schedule (momentum 0.9): ``"cosine"`` from ``lr`` (our short default) or ``"step"``, the
thesis's ×0.1 at 50 % and 75 % of the steps (0.05 → 5e-3 → 5e-4 over 100 + 50 + 50 epochs). After an
SVD initialisation the batch-norm statistics are re-estimated on ``bn_batches`` training batches
(the generated weights differ from the pretrained ones) before the fine-tuning starts.

Every ``eval_every`` steps the curve gets a point: training loss and error over the steps since the
last point, test error on ``n_eval`` test images (Figs. 5.3-5.6 plot these per epoch). The final
test error is measured on ``n_test`` images. The run is checkpointed at every curve point
(``<key>.partial.pt``, atomic) and resumes from there; batch order and augmentation are seeded per
epoch and step, so a resumed run equals an uninterrupted one. The finished tables are cached as
JSON under ``cache/slicegen/``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F

from axlib import cachefiles, data, paths, validate
from axlib.methods import slicegen_counts as counts
from axlib.nn import slicegen as sg

CACHE_VERSION = 1
KINDS = ("original", "csg", "bsg")
INITS = ("pretrained", "svd", "scratch")
SCHEDULES = ("cosine", "step")
NORMALIZATION = "imagenet_meanstd"  # the akamaster ResNets' input normalisation; used for every run here


@dataclass(frozen=True)
class TrainSpec:
    network: str = "resnet20"
    kind: str = "csg"
    slice_shape: tuple = (12, 12, 3, 3)
    n_c: int = 72
    init: str = "svd"
    steps: int = 150
    n_train: int = 50_000
    batch_size: int = 128
    lr: float = 0.05
    schedule: str = "cosine"
    weight_decay: float = 1e-4
    augment: bool = True
    eval_every: int = 50
    n_eval: int = 1000
    n_test: int = 10_000
    bn_batches: int = 20
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def validate(self) -> TrainSpec:
        counts.check_network(self.network)
        validate.choice("kind", self.kind, KINDS)
        validate.choice("init", self.init, INITS)
        validate.choice("schedule", self.schedule, SCHEDULES)
        if self.kind != "original":
            counts.check_fits(self.network, self.slice_shape, self.n_c)
        if self.init in ("pretrained", "svd") and self.network not in counts.PRETRAINED:
            raise validate.ParameterError(f"init={self.init!r} needs pretrained weights; {self.network} has none here "
                                          f"(pretrained: {list(counts.PRETRAINED)}); use init='scratch'")
        if self.init == "pretrained" and self.kind != "original":
            raise validate.ParameterError("init='pretrained' is for kind='original'; a CSG starts from 'svd' or "
                                          "'scratch'")
        if self.init == "svd" and self.kind != "csg":
            raise validate.ParameterError("init='svd' is for kind='csg' (BSG's matrix is a fixed ±1 circulant)")
        if self.init == "scratch" and self.kind == "original" and self.steps == 0:
            raise validate.ParameterError("an original network from scratch needs steps ≥ 1")
        validate.integer("steps", self.steps, 0, 10_000_000)
        validate.integer("n_train", self.n_train, 1, 50_000)
        validate.integer("batch_size", self.batch_size, 1, 4096)
        validate.number("lr", self.lr, 1e-6, 10.0)
        validate.number("weight_decay", self.weight_decay, 0.0, 1.0)
        validate.boolean("augment", self.augment)
        validate.integer("eval_every", self.eval_every, 1)
        validate.integer("n_eval", self.n_eval, 1, 10_000)
        validate.integer("n_test", self.n_test, 1, 10_000)
        validate.integer("bn_batches", self.bn_batches, 0, 10_000)
        validate.integer("seed", self.seed, 0)
        return self

    def key(self) -> str:
        blob = {"v": CACHE_VERSION, **asdict(self), "slice_shape": list(self.slice_shape)}
        if self.kind == "original":
            blob.update(slice_shape=None, n_c=None)
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def label(self) -> str:
        if self.kind == "original":
            return f"{self.network} ({self.init})"
        return f"{self.network}-{self.kind.upper()}-{list(self.slice_shape)}-{self.n_c} ({self.init})"


def lr_at(spec: TrainSpec, step: int) -> float:
    """Learning rate of step ``step`` (0-based) of ``spec.steps``."""
    if spec.schedule == "cosine":
        return 0.5 * spec.lr * (1 + math.cos(math.pi * step / max(1, spec.steps)))
    return spec.lr * (1.0 if step < spec.steps // 2 else 0.1 if step < (3 * spec.steps) // 4 else 0.01)


def build(spec: TrainSpec) -> tuple[torch.nn.Module, dict]:
    """The network of ``spec`` at its initialisation, and facts about it (parameter count, SVD report)."""
    if spec.init in ("pretrained", "svd"):
        from axlib.models import get_model

        base, _ = get_model(spec.network, progress=False)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(spec.seed)
            base = counts.build(spec.network)
    info = {"original_params": sg.count_parameters(base)}
    if spec.kind == "original":
        return base, {**info, "params": info["original_params"], "slices": 0}
    init = "svd" if spec.init == "svd" else "scratch"
    net, conv = counts.convert(base, spec.network, spec.kind, spec.slice_shape, spec.n_c, init, spec.seed)
    info.update(params=sg.count_parameters(net), slices=conv["n_slices"])
    if "svd" in conv:
        info.update(svd_energy_kept=conv["svd"].energy_kept, svd_residual_fro=conv["svd"].residual_fro)
    return net, info


def error_pct(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 test error (%) in eval mode, from :func:`axlib.models.zoo.accuracy` (count recovered exactly)."""
    from axlib.models import zoo

    n = len(y)
    return 100.0 * (n - round(zoo.accuracy(model, x, y) * n)) / n


@torch.no_grad()
def reestimate_bn(model: torch.nn.Module, x: torch.Tensor, batches: int, batch_size: int, seed: int) -> None:
    """Reset every batch norm's running statistics and re-estimate them (cumulative average) on
    ``batches`` training batches."""
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if not bns or batches == 0:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed + 7))
    for i in range(batches):
        idx = order[(i * batch_size) % len(x):][:batch_size]
        model(x[idx])
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def _paths(spec: TrainSpec):
    root = paths.cache_root() / "cache" / "slicegen"
    stem = f"{spec.network}-{spec.kind}-{spec.key()}"
    return root / f"{stem}.json", root / f"{stem}.partial.pt"


def train(spec: TrainSpec, progress: bool = True) -> dict[str, pd.DataFrame]:
    """Tables ``summary`` (one row) and ``curve`` of one run; cached, resumable (module docstring)."""
    spec = spec.validate()
    final, partial = _paths(spec)
    if final.exists():
        blob = cachefiles.read_json(final, "slice-generator training")
        if blob is not None:
            return {k: pd.DataFrame(**v) for k, v in blob.items()}
    tables = _run(spec, partial, progress)
    cachefiles.write_text(final, json.dumps({k: json.loads(v.to_json(orient="split", index=False))
                                             for k, v in tables.items()}))
    partial.unlink(missing_ok=True)
    return tables


@torch.enable_grad()
def _run(spec: TrainSpec, partial, progress: bool) -> dict[str, pd.DataFrame]:
    from tqdm.auto import tqdm

    from axlib import config as axconfig
    from axlib.models import zoo

    net, info = build(spec)
    x, y = data.tensors("cifar10", "train", NORMALIZATION, n=spec.n_train, seed=spec.seed)
    xe, ye = data.tensors("cifar10", "test", NORMALIZATION, n=spec.n_eval, seed=spec.seed + 1)
    xt, yt = data.tensors("cifar10", "test", NORMALIZATION, n=spec.n_test, seed=spec.seed + 2)
    summary = {"label": spec.label(), **asdict(spec), "slice_shape": str(list(spec.slice_shape)), **info}
    summary.pop("extra")
    t_init = time.perf_counter()
    summary["init_test_err_pct"] = error_pct(net, xt, yt)
    if spec.init == "svd":
        reestimate_bn(net, x, spec.bn_batches, spec.batch_size, spec.seed)
        summary["init_bn_test_err_pct"] = error_pct(net, xt, yt)
    summary["init_s"] = time.perf_counter() - t_init
    opt = torch.optim.SGD(net.parameters(), lr=spec.lr, momentum=0.9, weight_decay=spec.weight_decay)
    step, rows, elapsed = _resume(partial, net, opt)
    steps_per_epoch = max(1, -(-len(y) // spec.batch_size))
    bar = tqdm(total=spec.steps, initial=step, desc=f"train {spec.label()}", disable=not progress, unit="step",
               mininterval=axconfig.PROGRESS_INTERVAL_S)
    if step == 0 and not rows:
        rows.append({"step": 0, "epoch": 0.0, "lr": lr_at(spec, 0), "train_loss": float("nan"),
                     "train_err_pct": float("nan"), "test_err_pct": error_pct(net, xe, ye)})
    loss_sum, wrong, seen, t0 = 0.0, 0, 0, time.perf_counter()
    while step < spec.steps:
        epoch, i = divmod(step, steps_per_epoch)
        order = torch.randperm(len(y), generator=torch.Generator().manual_seed(spec.seed * 1000 + epoch))
        idx = order[i * spec.batch_size:(i + 1) * spec.batch_size]
        xb, yb = x[idx], y[idx]
        if spec.augment:
            xb = zoo._augment(xb, torch.Generator().manual_seed(spec.seed * 1_000_003 + step))
        for g in opt.param_groups:
            g["lr"] = lr_at(spec, step)
        net.train()
        out = net(xb)
        loss = F.cross_entropy(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        loss_sum += loss.item() * len(yb)
        wrong += int((out.argmax(1) != yb).sum())
        seen += len(yb)
        bar.update(1)
        if step % spec.eval_every == 0 or step == spec.steps:
            elapsed += time.perf_counter() - t0
            rows.append({"step": step, "epoch": step / steps_per_epoch, "lr": lr_at(spec, step - 1),
                         "train_loss": loss_sum / seen, "train_err_pct": 100.0 * wrong / seen,
                         "test_err_pct": error_pct(net, xe, ye)})
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", test_err=f"{rows[-1]['test_err_pct']:.1f}%")
            _checkpoint(partial, net, opt, step, rows, elapsed)
            loss_sum, wrong, seen, t0 = 0.0, 0, 0, time.perf_counter()
    bar.close()
    summary.update(final_test_err_pct=error_pct(net, xt, yt), train_s=elapsed,
                   first_loss=rows[1]["train_loss"] if len(rows) > 1 else float("nan"),
                   last_loss=rows[-1]["train_loss"])
    return {"summary": pd.DataFrame([summary]), "curve": pd.DataFrame(rows).assign(label=spec.label())}


def _checkpoint(partial, net, opt, step: int, rows: list, elapsed: float) -> None:
    partial.parent.mkdir(parents=True, exist_ok=True)
    with cachefiles.atomic_path(partial) as tmp:
        torch.save({"model": net.state_dict(), "opt": opt.state_dict(), "step": step, "rows": rows,
                    "elapsed_s": elapsed}, tmp)


def _resume(partial, net, opt) -> tuple[int, list, float]:
    """``(step, curve rows, elapsed_s)`` from a checkpoint; ``(0, [], 0.0)`` when absent or damaged."""
    if not partial.exists():
        return 0, [], 0.0
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    try:
        ck = torch.load(partial, map_location="cpu", weights_only=False)
        step, rows = ck["step"], list(ck["rows"])
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step {step!r} is not a non-negative int")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
    except Exception as exc:
        cachefiles.discard_corrupt(partial, f"unreadable training checkpoint: {cachefiles.describe(exc)}")
        net.load_state_dict(initial)
        opt.state.clear()
        return 0, [], 0.0
    return step, rows, float(ck.get("elapsed_s", 0.0))


def plot_curves(curve: pd.DataFrame, n_eval: int):
    """Figs. 5.3-5.6 style: training error (left, per interval) and test error (right, from step 0) vs
    epoch, one line per run label; legend below the figure. Returns the figure."""
    from axlib import plotting

    fig, axes = plotting.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for label, g in curve.groupby("label", sort=False):
        trained = g[g["step"] > 0]
        (line,) = axes[0].plot(trained["epoch"], trained["train_err_pct"], marker=".", label=label)
        axes[1].plot(g["epoch"], g["test_err_pct"], marker=".", color=line.get_color())
    axes[0].set_title("training error (augmented batches since the previous point)")
    axes[1].set_title(f"test error ({n_eval:,} test images; epoch 0 = initialisation)")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[0].set_ylabel("top-1 error (%)")
    fig.legend(loc="outside lower center", ncol=1, frameon=False)
    return fig
