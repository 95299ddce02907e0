"""Error statistics of an approximate multiplier inside a network (delaparra2021 Table 3, Figs. 3-4).

For one network and multiplier, :func:`point` quantizes the network 8/8 (Eq. 1), collects the
per-neuron statistics of every approximated layer over ``p`` training images
(:func:`axlib.nn.errmodel.collect`, local reading of Fig. 2) and summarises each layer: mean ρ and
mean |ρ| over its neurons (Table 3), the fraction of neurons with |ρ| above ``2/√p`` (about the 5 %
significance level of a zero correlation), mean σ_ε and |μ_ε|, and the SNR. For Fig. 3 it measures
how normal the neurons' outputs are: the Kolmogorov-Smirnov distance of each of ``n_ks`` seeded
random neurons' ``p`` outputs to the normal with their own mean and standard deviation, and keeps
the outputs of a few neurons to plot. For Fig. 4 it keeps the errors of neurons (0, 0), (0, 1), ...
of channel 0 in the first layers.
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import torch

from axlib import data, models, multipliers, sweep, validate
from axlib.nn import approximate, errmodel

STATS_MODELS = ("allcnn_c_quarter", "allcnn_c", "resnet8", "resnet14", "resnet20")


def ks_normal(samples: np.ndarray) -> np.ndarray:
    """Kolmogorov-Smirnov distance of each column of ``samples`` [n, k] to the normal with that column's
    mean and (population) standard deviation; NaN for a constant column."""
    x = np.sort(np.asarray(samples, dtype=np.float64), axis=0)
    n = x.shape[0]
    mu, sd = x.mean(0), x.std(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (x - mu) / sd
    cdf = torch.special.ndtr(torch.from_numpy(z)).numpy()
    upper = np.arange(1, n + 1)[:, None] / n - cdf
    lower = cdf - np.arange(0, n)[:, None] / n
    d = np.maximum(upper.max(0), lower.max(0))
    return np.where(sd > 0, d, np.nan)


def validate_params(net: str, mults, p: int, n_calib: int, seed: int, n_ks: int = 256, n_fig4: int = 3) -> list[str]:
    from axlib.methods.approx_eval import check_multipliers

    validate.choice("net", net, list(STATS_MODELS))
    mults = check_multipliers("multipliers", mults)
    validate.integer("p", p, lo=2, hi=50000)
    validate.integer("n_calib", n_calib, lo=1, hi=50000)
    validate.integer("seed", seed, lo=0)
    validate.integer("n_ks", n_ks, lo=1, hi=100000)
    validate.integer("n_fig4", n_fig4, lo=1, hi=32)
    return mults


@functools.lru_cache(maxsize=1)
def _setup(net: str, p: int, n_calib: int, seed: int, zoo_json: str):
    spec = models.spec(net)
    model, info = models.get_model(net, **json.loads(zoo_json))
    xs, _ = data.tensors(spec.dataset, "train", spec.normalization, n=p, seed=seed + 21)
    xc, _ = data.tensors(spec.dataset, "train", spec.normalization, n=n_calib, seed=seed + 1)
    return model, xs, [(xc, None)]


def point(net: str, multiplier: str, p: int, n_calib: int, seed: int, zoo_json: str = "{}", n_ks: int = 256,
          n_fig4: int = 3, fig4_layers: int = 3, fig3_neurons: int = 3) -> dict:
    """Per-layer summary rows (``layers``), Fig. 3 samples (``fig3``) and Fig. 4 samples (``fig4``)."""
    validate_params(net, [multiplier], p, n_calib, seed, n_ks, n_fig4)
    model, xs, calib = _setup(net, p, n_calib, seed, zoo_json)
    mult = multipliers.get(multiplier)
    qnet = approximate(model, mult, calib)
    batches = [(xs[i:i + 100], None) for i in range(0, len(xs), 100)]
    stats = errmodel.collect(qnet, batches)
    rng = np.random.default_rng(seed)
    names = list(stats)
    pick = {n: np.sort(rng.choice(int(np.prod(stats[n].shape)), min(n_ks, int(np.prod(stats[n].shape))),
                                  replace=False)) for n in names}
    fig4_n = {n: list(range(min(n_fig4, int(np.prod(stats[n].shape))))) for n in names[:fig4_layers]}
    neurons = {n: np.unique(np.concatenate([pick[n], fig4_n.get(n, [])])).astype(int) for n in names}
    samples = errmodel.collect_samples(qnet, batches, neurons)
    level = 2.0 / math.sqrt(p)
    rows, fig3, fig4 = [], [], []
    for i, n in enumerate(names):
        s = stats[n]
        y, e = samples[n]
        cols = {int(k): j for j, k in enumerate(neurons[n])}
        ks = ks_normal(y[:, [cols[int(k)] for k in pick[n]]])
        rows.append({"net": net, "multiplier": multiplier, "layer": n, "layer_index": i, "n_neurons": int(s.rho.size),
                     "p": s.n, "mean_rho": float(s.rho.mean()), "mean_abs_rho": float(np.abs(s.rho).mean()),
                     "frac_significant": s.significant_fraction(level), "significance_level": level,
                     "mean_sigma_e": float(s.sigma_e.mean()), "mean_abs_mu_e": float(np.abs(s.mu_e).mean()),
                     "mean_sigma_y": float(s.sigma_y.mean()), "snr_db": s.snr_db, "power_y": s.power_y,
                     "power_e": s.power_e, "ks_median": float(np.nanmedian(ks)) if np.isfinite(ks).any() else None,
                     "ks_q90": float(np.nanquantile(ks, 0.9)) if np.isfinite(ks).any() else None, "n_ks": len(ks)})
        for k in pick[n][:fig3_neurons]:
            fig3.append({"layer": n, "neuron": int(k), "y": y[:, cols[int(k)]].tolist()})
        for k in fig4_n.get(n, []):
            fig4.append({"layer": n, "neuron": int(k), "e": e[:, cols[int(k)]].tolist(),
                         "rho": float(s.rho.reshape(-1)[k])})
    return {"layers": rows, "fig3": fig3, "fig4": fig4}


def study(net: str, mults, p: int, n_calib: int, seed: int, zoo_json: str = "{}", n_ks: int = 256, n_fig4: int = 3,
          progress: bool = True) -> dict:
    """:func:`point` for every multiplier (cached per point); tidy tables ``layers``, ``fig3``, ``fig4``."""
    import pandas as pd

    mults = validate_params(net, mults, p, n_calib, seed, n_ks, n_fig4)
    points = [dict(net=net, multiplier=m, p=p, n_calib=n_calib, seed=seed, zoo_json=zoo_json, n_ks=n_ks, n_fig4=n_fig4)
              for m in mults]
    res = sweep.run_grid(point, points, name="delaparra2021-errstats-v1", progress=progress)
    layers = pd.DataFrame([r for out in res for r in out["layers"]])
    mre = {m: (multipliers.error_metrics(multipliers.get(m))["mre_pct"], multipliers.mre_eq2_pct(multipliers.get(m)))
           for m in mults}
    layers["mre_pct"] = layers["multiplier"].map(lambda m: mre[m][0])
    layers["mre_eq2_pct"] = layers["multiplier"].map(lambda m: mre[m][1])
    # the exact outputs barely depend on the multiplier (only through its calibration): keep the first's
    fig3 = pd.DataFrame([{"multiplier": mults[0], "layer": r["layer"], "neuron": r["neuron"], "sample": j, "y": v}
                         for r in res[0]["fig3"] for j, v in enumerate(r["y"])])
    fig4 = pd.DataFrame([{"multiplier": m, "layer": r["layer"], "neuron": r["neuron"], "rho": r["rho"], "sample": j,
                          "e": v} for m, out in zip(mults, res) for r in out["fig4"] for j, v in enumerate(r["e"])])
    return {"layers": layers, "fig3": fig3, "fig4": fig4}


__all__ = ["STATS_MODELS", "ks_normal", "point", "study", "validate_params"]
