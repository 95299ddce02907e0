"""LEMAX on the weight update of linear regression and SVM (akhlaghi2020 thesis §4.5.1, Tables 4.1–4.3).

One mini-batch gradient step of least-squares linear regression (``lr``) or a linear SVM with hinge
loss (``svm``) runs on a platform whose adders, multipliers and DRAM are configurable approximate
units (Table 4.1, :data:`axlib.energy.LEMAX_TABLE_4_1`). Every *static* operation of the program
(one line of the update for one feature, say "multiply w_j by x_ij") has its own configuration level,
shared by all samples; the DRAM has one level for all reads. LEMAX learns the levels by gradient
descent on Eq. (4.9) without the resource term::

    f_c(s) / f_c(0) + λ_Q · max(0, Q(s) − C_out)

where ``f_c`` is the energy of one iteration and ``Q`` the mean relative L1 error of the weight
update (``‖Δw̃ − Δw‖₁ / ‖Δw‖₁``, averaged over the iterations of one pass, each step taken from the
exact trajectory's weights). Levels are continuous while learning, ``s = (K−1)·h(θ)``, with error
and energy interpolated linearly between the table's columns, then snapped down to ``⌊s⌋``
(conservative: a lower level has less error) and re-evaluated on held-out batches ("tested quality
loss", Table 4.2).

Error models (akhlaghi2020 §4.3.1):

- adders and multipliers, Eq. (4.3): ``X̃ = X·(1 + ω)`` on the operation's output;
- DRAM (Flicker, one refresh rate), Eq. (4.2): ``x̃ = α·E + (1 − α)·x`` on every input read (features
  and labels), ``E ~ U[min x, max x]`` drawn fresh on every evaluation from a seeded generator.

Shapes: a pass is stacked as ``X (T, B, F)`` (T iterations of B samples, F features), ``y (T, B)``
in ±1, weights ``W (T, F)`` (the exact trajectory's w_t before each step). Energies are in nJ.
All per-feature operations of one kind are one vector of ω (no Python loop over features).
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from axlib import config as axconfig
from axlib import energy, validate
from axlib.validate import ParameterError

APPS = ("lr", "svm")
SYSTEMS = ("APX-DMA", "APX-DRAM", "APX-MUL", "APX-ADD")
#: the Table 4.1 units each system may approximate (the others stay exact)
SYSTEM_UNITS = {"APX-DMA": ("adder", "multiplier", "dram"), "APX-DRAM": ("dram",),
                "APX-MUL": ("multiplier",), "APX-ADD": ("adder",)}
DATA = ("mnist", "synthetic")
KIND_UNIT = {"add": "adder", "mul": "multiplier", "dram": "dram"}
MNIST_4_9_TRAIN = 11791   #: MNIST training images labelled 4 (5842) or 9 (5949)
MNIST_PIXELS = 784
THETA_INIT = -3.0
STRETCH = 0.05            #: h(θ) = clip((1 + 2·STRETCH)·sigmoid(θ) − STRETCH, 0, 1): both ends reachable
DTYPE = torch.float64        #: levels, errors and energies (small tensors)
DATA_DTYPE = torch.float32   #: the stacked passes (float32 halves the cost; rounding ~1e-7 << any target)
MASK_TAU = 0.1               #: temperature of the SVM hinge-indicator surrogate (straight-through)


# --------------------------------------------------------------------------- operation inventory


@dataclass(frozen=True)
class Op:
    """One group of static operations: ``count`` static ops of one kind, each executed ``per_iter`` times
    per iteration (B for per-sample ops, 1 for per-weight ops); each static op has its own error parameter."""

    name: str
    kind: str        # add | mul | dram
    count: int       # static operations (= error parameters) in the group
    per_sample: bool  # executed B times per iteration (else once)
    what: str


def operations(app: str, features: int) -> list[Op]:
    """The static operations of one weight update of ``app`` with F = ``features`` (spec §1).

    LR (least squares, r_i = w·x_i − y_i, Δ_j = (η/B)·Σ_i r_i x_ij): multiplies M1 w_j·x_ij, M2 r_i·x_ij,
    M3 (η/B)·g_j; adds A1 (dot-product accumulate, F − 1, plus the residual − y_i), A2 w_j − Δ_j; one DRAM
    → 5F + 1 error parameters. SVM (hinge, data term only where y_i·s_i < 1): multiplies w_j·x_ij, y_i·x_ij,
    λ·w_j, η·g_j and the scalars y_i·s_i, (1/B)·Σ; adds: dot product (F − 1), gradient λw_j − (1/B)Σ (F),
    update (F); one DRAM → 7F + 2 (Table 4.2). The batch reduction Σ_i is not an approximate operation
    in the thesis's count and stays exact here.
    """
    app = validate.choice("app", app, APPS)
    f = validate.integer("features", features, lo=1)
    dram = Op("dram", "dram", 1, False, "every input read (x and y), Eq. 4.2")
    if app == "lr":
        return [Op("M1_wx", "mul", f, True, "w_j·x_ij"),
                Op("A1_dot", "add", f - 1, True, "dot-product accumulate"),
                Op("A1_res", "add", 1, True, "residual s_i − y_i"),
                Op("M2_rx", "mul", f, True, "r_i·x_ij"),
                Op("M3_eta", "mul", f, False, "(η/B)·g_j"),
                Op("A2_upd", "add", f, False, "w_j − Δ_j"),
                dram]
    return [Op("M1_wx", "mul", f, True, "w_j·x_ij"),
            Op("A1_dot", "add", f - 1, True, "dot-product accumulate"),
            Op("M5_ys", "mul", 1, True, "margin y_i·s_i"),
            Op("M2_yx", "mul", f, True, "y_i·x_ij"),
            Op("M6_invB", "mul", 1, False, "(1/B)·Σ_i (one static op, applied to every g_j)"),
            Op("M3_lw", "mul", f, False, "λ·w_j"),
            Op("A3_grad", "add", f, False, "g_j = λw_j − (1/B)Σ"),
            Op("M4_eta", "mul", f, False, "η·g_j"),
            Op("A2_upd", "add", f, False, "w_j − Δ_j"),
            dram]


def n_exec(op: Op, batch: int, features: int) -> int:
    """Executions per iteration of each static op of ``op``: B if per sample, else 1; M6 runs once per weight."""
    if op.name == "M6_invB":
        return features
    return batch if op.per_sample else 1


def inventory(app: str, features: int, batch: int = 400) -> pd.DataFrame:
    """Operation inventory as a table (one row per group): kind, static count, executions per iteration."""
    rows = [{"app": app, "features": features, "op": o.name, "kind": o.kind, "what": o.what, "static": o.count,
             "exec_per_op": n_exec(o, batch, features), "exec_per_iter": o.count * n_exec(o, batch, features)}
            for o in operations(app, features)]
    return pd.DataFrame(rows)


def counts(app: str, features: int) -> dict:
    """Error parameters, adders and multipliers (static ops) of Table 4.2."""
    ops = operations(app, features)
    n = {k: sum(o.count for o in ops if o.kind == k) for k in KIND_UNIT}
    return {"params": sum(n.values()), "adders": n["add"], "multipliers": n["mul"], "dram": n["dram"]}


# --------------------------------------------------------------------------- Table 4.1, continuous levels


def levels(unit: str) -> int:
    """Number of configuration levels K of a Table 4.1 unit."""
    return len(energy.lemax_unit(unit)[0])


def interp(unit: str, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(error, energy nJ) at continuous levels ``s`` ∈ [0, K−1]: linear between Table 4.1 columns."""
    err, en = (torch.tensor(v, dtype=DTYPE) for v in energy.lemax_unit(unit))
    lo = torch.clamp(torch.floor(s.detach()), 0, len(err) - 2).long()
    frac = s - lo.to(s.dtype)
    return err[lo] + frac * (err[lo + 1] - err[lo]), en[lo] + frac * (en[lo + 1] - en[lo])


def level_of(theta: torch.Tensor, unit: str) -> torch.Tensor:
    """s = (K−1)·h(θ), h = a sigmoid stretched by STRETCH and clipped so that 0 and K−1 are reachable."""
    h = torch.clamp((1 + 2 * STRETCH) * torch.sigmoid(theta) - STRETCH, 0.0, 1.0)
    return (levels(unit) - 1) * h


def snap(s: torch.Tensor) -> torch.Tensor:
    """Conservative snapping: ⌊s⌋ (a lower level never has more error, Table 4.1)."""
    return torch.floor(s.detach() + 1e-9)


# --------------------------------------------------------------------------- data


@dataclass
class Problem:
    """One (app, F) problem: stacked training and validation passes and the exact trajectories."""

    app: str
    features: int
    X: torch.Tensor      # (T, B, F) training pass
    y: torch.Tensor      # (T, B)
    Xv: torch.Tensor     # (Tv, B, F) validation batches
    yv: torch.Tensor
    W: torch.Tensor      # (T, F) exact trajectory w_t before step t
    Wv: torch.Tensor     # (Tv', F) states used on the validation batches
    x_range: tuple       # (min, max) of the stored features (DRAM error values)
    eta: float
    svm_lambda: float


def load_data(data: str, features: int, n_train: int, n_val: int, seed: int) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_val, y_val), float64 standardised features and ±1 labels.

    ``mnist``: MNIST digits 4 (label −1) vs 9 (+1) from the training split, ``n_train`` + ``n_val`` drawn
    without replacement (seeded); features = the F highest-variance pixels of the training samples,
    standardised with the training mean and std. ``synthetic``: Gaussian features with a random linear
    teacher, y = sign(x·w* + 0.5·noise)."""
    rng = np.random.default_rng(seed)
    if data == "mnist":
        from axlib.data.arrays import load_arrays

        ds = load_arrays("mnist", "train")
        idx = np.flatnonzero((ds.labels == 4) | (ds.labels == 9))
        idx = rng.permutation(idx)[: n_train + n_val]
        x = ds.images[idx].reshape(len(idx), -1).astype(np.float64) / 255.0
        y = np.where(ds.labels[idx] == 9, 1.0, -1.0)
        xt = x[:n_train]
        var = xt.var(axis=0)
        cols = np.sort(np.argsort(-var, kind="stable")[:features])
        x = x[:, cols]
    else:
        x = rng.standard_normal((n_train + n_val, features))
        teacher = rng.standard_normal(features)
        y = np.sign(x @ teacher + 0.5 * np.sqrt(features) * rng.standard_normal(len(x)))
        y[y == 0] = 1.0
    mu, sd = x[:n_train].mean(axis=0), x[:n_train].std(axis=0)
    x = (x - mu) / np.where(sd > 0, sd, 1.0)
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def batches(x: np.ndarray, y: np.ndarray, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack samples into ``ceil(N/B)`` batches of exactly B samples; the last wraps around to the start."""
    t = -(-len(x) // batch)
    idx = np.arange(t * batch) % len(x)
    return (torch.tensor(x[idx].reshape(t, batch, -1), dtype=DATA_DTYPE),
            torch.tensor(y[idx].reshape(t, batch), dtype=DATA_DTYPE))


def exact_trajectory(app, X, y, eta, svm_lambda) -> torch.Tensor:
    """w_t before each of the T steps of one pass, from w_0 = 0, with the exact update."""
    w = torch.zeros(X.shape[2], dtype=X.dtype)
    out = []
    exact = _exact_config(app, X.shape[2])
    for t in range(X.shape[0]):
        out.append(w)
        w = w + update(app, X[t:t + 1], y[t:t + 1], w[None], exact, eta, svm_lambda)[0]
    return torch.stack(out)


def make_problem(app, features, data="mnist", n_train=6000, n_val=1500, batch=400, eta=0.01,
                 svm_lambda=1e-4, seed=0) -> Problem:
    """Data, batches and the exact training trajectory of one (app, F). Validation batches are evaluated at
    the training trajectory's states w_t (batch t mod Tv), so every state is tested on unseen samples."""
    xt, yt, xv, yv = load_data(data, features, n_train, n_val, seed)
    X, y = batches(xt, yt, batch)
    Xv, yv_ = batches(xv, yv, batch)
    W = exact_trajectory(app, X, y, eta, svm_lambda)
    k = torch.arange(len(W)) % len(Xv)
    return Problem(app, features, X, y, Xv[k], yv_[k], W, W, (float(xt.min()), float(xt.max())), eta, svm_lambda)


# --------------------------------------------------------------------------- the approximate update


def _exact_config(app: str, features: int) -> dict:
    return {o.name: torch.zeros(o.count, dtype=DTYPE) for o in operations(app, features)}


def _dram(x: torch.Tensor, alpha: torch.Tensor, lo: float, hi: float, gen: torch.Generator | None) -> torch.Tensor:
    """Eq. (4.2), akhlaghi2020: x̃ = α·E + (1 − α)·x, E ~ U[lo, hi] drawn fresh."""
    if gen is None or float(alpha.detach()) == 0.0:
        return x
    e = torch.rand(x.shape, generator=gen, dtype=torch.float32).mul_(hi - lo).add_(lo).to(x.dtype)
    return alpha * e + (1 - alpha) * x


def update(app, X, y, W, omega: dict, eta, svm_lambda, x_range=(0.0, 1.0), gen=None) -> torch.Tensor:
    """Approximate one-step updates Δw̃ (T, F) of ``app`` from states W (T, F) on batches X (T, B, F), y (T, B).

    ``omega`` maps each op group of :func:`operations` to its error vector (relative error ω of Eq. 4.3 for
    adds/muls, shape (count,); α of Eq. 4.2 for ``dram``, shape (1,)). With every entry 0 this is the exact
    update. A sequential accumulate S_j = (S_{j−1} + p_j)(1 + ω_j) equals Σ_j p_j Π_{k≥j}(1 + ω_k), so the
    F − 1 dot-product adds become one weight vector (reverse cumulative product)."""
    B, F = X.shape[1], X.shape[2]
    omega = {k: v.to(X.dtype) for k, v in omega.items()}
    alpha = omega["dram"][0]
    Xr = _dram(X, alpha, *x_range, gen)
    yr = _dram(y, alpha, -1.0, 1.0, gen)
    a1 = 1 + omega["A1_dot"]                                   # adds j = 1..F-1 (0-based)
    c = torch.flip(torch.cumprod(torch.flip(a1, [0]), 0), [0]) if F > 1 else torch.ones(0, dtype=X.dtype)
    c = torch.cat([c[:1] if F > 1 else torch.ones(1, dtype=X.dtype), c])   # feature 0 enters at the first add
    v = W * (1 + omega["M1_wx"]) * c                           # (T, F)
    s = torch.bmm(Xr, v.unsqueeze(2)).squeeze(2)               # (T, B) dot products, Eq. 4.3 on M1 and A1
    if app == "lr":
        r = (s - yr) * (1 + omega["A1_res"])
        g = torch.bmm(r.unsqueeze(1), Xr).squeeze(1) * (1 + omega["M2_rx"])
        delta = (eta / B) * g * (1 + omega["M3_eta"])
    else:
        margin = yr * s * (1 + omega["M5_ys"])
        m = hinge_mask(margin)
        data = torch.bmm((m * yr).unsqueeze(1), Xr).squeeze(1) * (1 + omega["M2_yx"])
        g = (svm_lambda * W * (1 + omega["M3_lw"]) - data / B * (1 + omega["M6_invB"])) * (1 + omega["A3_grad"])
        delta = eta * g * (1 + omega["M4_eta"])
    return (W - delta) * (1 + omega["A2_upd"]) - W


def hinge_mask(margin: torch.Tensor) -> torch.Tensor:
    """1[y·s < 1] in the forward pass; in the backward pass the gradient of sigmoid((1 − y·s)/τ), so that
    errors of the dot product (which reach the update only through this mask) get a gradient (our choice)."""
    hard = (margin < 1).to(margin.dtype)
    if not margin.requires_grad:
        return hard
    soft = torch.sigmoid((1 - margin) / MASK_TAU)
    return hard + (soft - soft.detach())


def quality(dw_approx: torch.Tensor, dw_exact: torch.Tensor) -> torch.Tensor:
    """Q: mean over iterations of ‖Δw̃ − Δw‖₁ / ‖Δw‖₁ (a fraction; ×100 for %)."""
    return ((dw_approx - dw_exact).abs().sum(1) / dw_exact.abs().sum(1).clamp_min(1e-300)).mean()


# --------------------------------------------------------------------------- configuration and energy


class Config:
    """Learnable levels of every static op of one (app, F) under one system (Eq. 4.9's 𝓔)."""

    def __init__(self, app: str, features: int, system: str):
        self.app, self.features, self.system = app, features, validate.choice("system", system, SYSTEMS)
        self.ops = operations(app, features)
        self.free = {o.name for o in self.ops if KIND_UNIT[o.kind] in SYSTEM_UNITS[system]}
        self.theta = {o.name: torch.full((o.count,), THETA_INIT, dtype=DTYPE, requires_grad=True)
                      for o in self.ops if o.name in self.free}

    def params(self) -> list[torch.Tensor]:
        return list(self.theta.values())

    def levels(self, snapped: bool = False) -> dict:
        """Level s per op group (a tensor per group); exact (0) for units the system does not approximate."""
        out = {}
        for o in self.ops:
            unit = KIND_UNIT[o.kind]
            if o.name in self.free:
                s = level_of(self.theta[o.name], unit)
                out[o.name] = snap(s) if snapped else s
            else:
                out[o.name] = torch.zeros(o.count, dtype=DTYPE)
        return out


def errors_and_energy(ops: list[Op], lv: dict, batch: int, features: int) -> tuple[dict, dict]:
    """(ω/α per op group, energy nJ per unit kind per iteration): f_c = Σ n_exec·e(s) + E_refresh(s_DRAM)."""
    omega, en = {}, {"add": 0.0, "mul": 0.0, "dram": 0.0}
    for o in ops:
        err, e = interp(KIND_UNIT[o.kind], lv[o.name])
        omega[o.name] = err
        en[o.kind] = en[o.kind] + n_exec(o, batch, features) * e.sum()
    return omega, en


def exact_energy(app: str, features: int, batch: int) -> dict:
    """Energy (nJ) per unit kind of one exact iteration."""
    ops = operations(app, features)
    return {k: float(v) for k, v in errors_and_energy(ops, {o.name: torch.zeros(o.count, dtype=DTYPE) for o in ops},
                                                      batch, features)[1].items()}


def evaluate(prob: Problem, cfg: Config, snapped: bool, validation: bool, gen=None) -> tuple[float, dict]:
    """(Q as a fraction, energy per kind nJ) of the configuration on the training or validation batches."""
    X, y, W = (prob.Xv, prob.yv, prob.Wv) if validation else (prob.X, prob.y, prob.W)
    with torch.no_grad():
        omega, en = errors_and_energy(cfg.ops, cfg.levels(snapped), X.shape[1], prob.features)
        dw = update(prob.app, X, y, W, omega, prob.eta, prob.svm_lambda, prob.x_range, gen)
        dw0 = update(prob.app, X, y, W, _exact_config(prob.app, prob.features), prob.eta, prob.svm_lambda)
    return float(quality(dw, dw0)), {k: float(v) for k, v in en.items()}


def learn(prob: Problem, system: str, target_pct: float, steps: int = 1500, lr: float = 0.05,
          lambda_q: float = 100.0, seed: int = 0) -> tuple[Config, list[float]]:
    """Adam on Eq. (4.9) without the resource term: f_c/f_c,exact + λ_Q·max(0, Q − C_out). Returns the config
    and the objective per step. DRAM error values are drawn fresh every step from a generator seeded by ``seed``."""
    cfg = Config(prob.app, prob.features, system)
    gen = torch.Generator().manual_seed(seed)
    B = prob.X.shape[1]
    e0 = sum(exact_energy(prob.app, prob.features, B).values())
    dw0 = update(prob.app, prob.X, prob.y, prob.W, _exact_config(prob.app, prob.features), prob.eta, prob.svm_lambda)
    c = target_pct / 100.0
    opt = torch.optim.Adam(cfg.params(), lr=lr)
    trace = []
    use_gen = gen if "dram" in cfg.free else None
    for _ in range(steps):
        omega, en = errors_and_energy(cfg.ops, cfg.levels(), B, prob.features)
        dw = update(prob.app, prob.X, prob.y, prob.W, omega, prob.eta, prob.svm_lambda, prob.x_range, use_gen)
        q = quality(dw, dw0)
        obj = sum(en.values()) / e0 + lambda_q * torch.clamp(q - c, min=0.0)
        opt.zero_grad()
        obj.backward()
        opt.step()
        trace.append(float(obj.detach()))
    return cfg, trace


# --------------------------------------------------------------------------- validation and the grid


def validate_params(apps, features, targets_pct, systems, data, n_train, n_val, batch, steps, lr, lambda_q,
                    eta, svm_lambda, seed) -> None:
    """Refuse bad parameters before any work (ParameterError naming the parameter)."""
    validate.unique("apps", validate.choices("apps", apps, APPS))
    feats = validate.unique("features", validate.integers("features", features, lo=1))
    targets = validate.unique("targets_pct", validate.numbers("targets_pct", targets_pct, lo=0, hi=100))
    if any(t <= 0 or t >= 100 for t in targets):
        raise ParameterError(f"parameter targets_pct={targets_pct!r} must lie strictly between 0 and 100 %")
    validate.unique("systems", validate.choices("systems", systems, SYSTEMS))
    validate.choice("data", data, DATA)
    validate.integer("n_train", n_train, lo=1)
    validate.integer("n_val", n_val, lo=1)
    validate.integer("batch", batch, lo=1)
    if n_train % batch:
        raise ParameterError(f"parameter batch={batch} must divide n_train={n_train} (one pass of whole batches)")
    if data == "mnist":
        if max(feats) > MNIST_PIXELS:
            raise ParameterError(f"parameter features={features!r}: MNIST has {MNIST_PIXELS} pixels")
        if n_train + n_val > MNIST_4_9_TRAIN:
            raise ParameterError(f"parameters n_train + n_val = {n_train + n_val} exceed the {MNIST_4_9_TRAIN} "
                                 "MNIST training images of digits 4 and 9")
    validate.integer("steps", steps, lo=1)
    if validate.number("lr", lr, lo=0) <= 0:
        raise ParameterError(f"parameter lr={lr!r} must be > 0")
    validate.number("lambda_q", lambda_q, lo=0)
    if validate.number("eta", eta, lo=0) <= 0:
        raise ParameterError(f"parameter eta={eta!r} must be > 0")
    validate.number("svm_lambda", svm_lambda, lo=0)
    validate.integer("seed", seed, lo=0)


def run_seed(seed: int, *key) -> int:
    """A stable per-run seed from the grid seed and the run's coordinates."""
    return (seed * 1_000_003 + zlib.crc32(repr(key).encode())) % (2**31)


def run_grid(apps=APPS, features=(32, 64, 256, 512), targets_pct=(5.0, 2.0, 0.5), systems=SYSTEMS, data="mnist",
             n_train=6000, n_val=1500, batch=400, steps=1500, lr=0.05, lambda_q=100.0, eta=0.01, svm_lambda=1e-4,
             seed=0, progress=True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every (app, F, C, system): learn, snap, test. Returns (runs, levels): one row per run, and the snapped
    level histogram per run and op kind. Same seed and parameters give the same tables."""
    from tqdm import tqdm

    apps, features, targets_pct, systems = list(apps), list(features), list(targets_pct), list(systems)
    validate_params(apps, features, targets_pct, systems, data, n_train, n_val, batch, steps, lr, lambda_q, eta,
                    svm_lambda, seed)
    rows, hist = [], []
    bar = tqdm(total=len(apps) * len(features) * len(targets_pct) * len(systems), desc="LEMAX", unit="run",
               disable=not progress, mininterval=axconfig.PROGRESS_INTERVAL_S)
    for app in apps:
        for f in features:
            prob = make_problem(app, f, data, n_train, n_val, batch, eta, svm_lambda, seed)
            e_exact = exact_energy(app, f, batch)
            for c in targets_pct:
                for system in systems:
                    t0 = time.perf_counter()
                    rs = run_seed(seed, app, f, c, system)
                    cfg, trace = learn(prob, system, c, steps, lr, lambda_q, rs)
                    q_cont, _ = evaluate(prob, cfg, False, False, torch.Generator().manual_seed(rs + 1))
                    q_train, en = evaluate(prob, cfg, True, False, torch.Generator().manual_seed(rs + 2))
                    q_val, _ = evaluate(prob, cfg, True, True, torch.Generator().manual_seed(rs + 3))
                    ex, ap = sum(e_exact.values()), sum(en.values())
                    rows.append({"app": app, "features": f, "target_pct": c, "system": system,
                                 "train_quality_learned_pct": 100 * q_cont, "train_quality_pct": 100 * q_train,
                                 "tested_quality_pct": 100 * q_val,
                                 **{f"e_exact_{k}_nj": v for k, v in e_exact.items()},
                                 **{f"e_approx_{k}_nj": v for k, v in en.items()},
                                 "e_exact_nj": ex, "e_approx_nj": ap, "ratio": ex / ap, "improvement": ex / ap - 1,
                                 "objective_first": trace[0], "objective_last": trace[-1], "steps": steps,
                                 "seconds": time.perf_counter() - t0})
                    for name, s in cfg.levels(snapped=True).items():
                        kind = next(o.kind for o in cfg.ops if o.name == name)
                        for lvl, n in zip(*np.unique(s.numpy().astype(int), return_counts=True)):
                            hist.append({"app": app, "features": f, "target_pct": c, "system": system, "op": name,
                                         "kind": kind, "level": int(lvl), "n": int(n)})
                    bar.update(1)
    bar.close()
    lv = pd.DataFrame(hist).groupby(["app", "features", "target_pct", "system", "kind", "level"], as_index=False)["n"].sum()
    return pd.DataFrame(rows), lv
