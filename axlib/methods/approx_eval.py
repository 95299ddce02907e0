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


def check_multipliers(name: str, values, allow_empty: bool = False) -> list[str]:
    """``values`` as a list of distinct multiplier registry names (``axlib.multipliers.get``), each resolved once
    (tables are small); an unknown name is a ParameterError naming parameter ``name``, the value and what exists."""
    from axlib.data.arrays import MissingDataError
    from axlib.multipliers.registry import PATTERNS

    values = validate.as_list(name, values) if allow_empty else validate.nonempty(name, values, "multiplier name")
    validate.unique(name, values)
    for v in values:
        if not isinstance(v, str):
            raise validate.ParameterError(f"parameter {name}: {v!r} is not a multiplier name; allowed: {list(PATTERNS)}")
        try:
            multipliers.get(v)
        except validate.ParameterError:
            raise validate.ParameterError(f"parameter {name} has unknown value {v!r}; allowed: {list(PATTERNS)}") from None
        except MissingDataError:
            if not v.startswith("evoapprox:"):
                raise
            names = multipliers.evoapprox_names()  # raises the missing-file error itself if the tables are absent
            if v.split(":", 1)[1] in names:
                raise  # a known circuit whose data is missing: keep the error that says where to get it
            raise validate.ParameterError(f"parameter {name} has unknown value {v!r}; allowed EvoApprox circuits: "
                                          f"{['evoapprox:' + n for n in names]}") from None
    return values


def validate_params(model: str, mults: list[str], n_test, n_calib: int, seed: int) -> None:
    validate.choice("model", model, [m for m, s in models.MODELS.items() if s.dataset != "imagenet"])
    check_multipliers("multipliers", mults)
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
    """Accuracy with ``multiplier`` (None: exact fake quantization) and agreement with the exact path.

    The multiplier's MRE is given in both readings of Eq. (2) of delaparra2021, in %: ``mre_pct`` is the mean
    over all 256 x 256 operand pairs, ``mre_eq2_pct`` the literal sum over magnitudes 0..128 divided by 128²
    (:func:`axlib.multipliers.mre_eq2_pct`). Accuracies are fractions of ``n_test`` images.
    """
    net, calib, xt, yt = _setup(model, n_test, n_calib, seed)
    mult = multipliers.get(multiplier) if multiplier else None
    pred = _predict(approximate(net, mult, calib), xt)
    ref = _predict(approximate(net, None, calib), xt) if multiplier else pred
    with torch.no_grad():
        float_acc = (_predict(net.eval(), xt) == yt).float().mean().item()
    return {"model": model, "multiplier": multiplier or "fake-quant (exact, float)",
            "mre_pct": multipliers.error_metrics(mult)["mre_pct"] if mult else 0.0,
            "mre_eq2_pct": multipliers.mre_eq2_pct(mult) if mult else 0.0,
            "accuracy": (pred == yt).float().mean().item(), "float_accuracy": float_acc,
            "agreement_with_exact_path": (pred == ref).float().mean().item(), "n_test": len(yt)}


def evaluate(model: str, mults: list[str], n_test, n_calib: int, seed: int) -> pd.DataFrame:
    points = [dict(model=model, multiplier=m, n_test=n_test, n_calib=n_calib, seed=seed) for m in [None, *mults]]
    return pd.DataFrame(sweep.run_grid(point, points, name="approx-eval-v2"))


def with_mre_readings(acc: pd.DataFrame) -> pd.DataFrame:
    """``acc`` (a saved :func:`evaluate` table) with both MRE readings of Eq. (2) of delaparra2021, in %.

    Runs saved before ``mre_eq2_pct`` existed lack that column; it is a property of the multiplier's truth
    table alone (no network involved), so it is filled in from the registry names in ``multiplier``
    (the fake-quant reference row gets 0). Tables that have the column are returned unchanged.
    """
    if "mre_eq2_pct" in acc.columns:
        return acc
    out = acc.copy()
    out.insert(out.columns.get_loc("mre_pct") + 1, "mre_eq2_pct",
               [0.0 if m.startswith("fake-quant") else multipliers.mre_eq2_pct(multipliers.get(m))
                for m in out["multiplier"]])
    return out
