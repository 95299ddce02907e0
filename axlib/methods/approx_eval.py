"""Accuracy of a network whose conv/linear products all go through an approximate multiplier.

8-bit quantization per Eq. (1) of delaparra2021 (``axlib.nn.approximate``), products by truth-table
lookup. The exact fake-quantized float path is evaluated alongside as the reference.
"""

from __future__ import annotations

import functools

import pandas as pd
import torch

from axlib import data, models, multipliers, sweep, validate
from axlib.nn import approximate


def validate_params(model: str, mults: list[str], n_test, n_calib: int, seed: int) -> None:
    validate.choice("model", model, [m for m, s in models.MODELS.items() if s.dataset != "imagenet"])
    validate.as_list("multipliers", mults)
    for name in mults:
        multipliers.get(name)  # raises ParameterError naming the allowed patterns
    if n_test is not None:
        validate.integer("n_test", n_test, lo=1, hi=10000)
    validate.integer("n_calib", n_calib, lo=1, hi=50000)
    validate.integer("seed", seed, lo=0)


@functools.lru_cache(maxsize=2)
def _setup(model: str, n_test, n_calib: int, seed: int):
    spec = models.spec(model)
    net, _ = models.get_model(model, seed=seed)
    xc, yc = data.tensors(spec.dataset, "train", spec.normalization, n=n_calib, seed=seed + 1)
    xt, yt = data.tensors(spec.dataset, "test", spec.normalization, n=n_test, seed=seed)
    return net, [(xc, yc)], xt, yt


@torch.no_grad()
def _predict(net, x, batch: int = 250) -> torch.Tensor:
    return torch.cat([net(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


def point(model: str, multiplier: str | None, n_test, n_calib: int, seed: int) -> dict:
    """Accuracy with ``multiplier`` (None: exact fake quantization) and agreement with the exact path."""
    net, calib, xt, yt = _setup(model, n_test, n_calib, seed)
    mult = multipliers.get(multiplier) if multiplier else None
    pred = _predict(approximate(net, mult, calib), xt)
    ref = _predict(approximate(net, None, calib), xt) if multiplier else pred
    with torch.no_grad():
        float_acc = (_predict(net.eval(), xt) == yt).float().mean().item()
    return {"model": model, "multiplier": multiplier or "fake-quant (exact, float)",
            "mre_pct": multipliers.error_metrics(mult)["mre_pct"] if mult else 0.0,
            "accuracy": (pred == yt).float().mean().item(), "float_accuracy": float_acc,
            "agreement_with_exact_path": (pred == ref).float().mean().item(), "n_test": len(yt)}


def evaluate(model: str, mults: list[str], n_test, n_calib: int, seed: int) -> pd.DataFrame:
    points = [dict(model=model, multiplier=m, n_test=n_test, n_calib=n_calib, seed=seed) for m in [None, *mults]]
    return pd.DataFrame(sweep.run_grid(point, points, name="approx-eval-v1"))
