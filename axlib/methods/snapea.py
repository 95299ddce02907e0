"""SnaPEA on whole networks (akhlaghi2020 ch.3): speculation hooks, op counts and Algorithm 1.

A *SnaPEA layer* is a conv whose output (batch norm folded in, plus a residual where one is added
before the activation) goes straight into a ReLU, and whose input is non-negative (it comes out of
a ReLU, possibly through pooling). Network inputs are not non-negative, so the first conv of every
network is left dense, as are the fully connected layers.

- :class:`Speculator` installs forward hooks that apply the predictive mode with per-kernel
  speculation parameters ``(th, n)``: windows whose partial sum over the ``n`` speculation weights
  (§3.5.1) plus bias (and residual) is ``<= th`` output zero. Exact-mode termination never changes
  an output, so exact layers need no hook. This is the vectorised torch path of
  :func:`axlib.kernels.early_term.snapea_torch`, applied in place inside the network.
- :func:`layer_ops` runs the numba kernel (:func:`axlib.kernels.early_term.early_term_conv2d`) on a
  layer's real inputs to count MACs per window (Eq. 3.1).
- :func:`algorithm1`: the kernel profiling, local and global optimisation passes of Algorithm 1
  on an optimisation split, with the merit ``-Δerr/Δop`` of ADJUSTPARAM.

Thresholds are given as multiples of each kernel's pre-activation standard deviation on the
optimisation split (the thesis gives no scale for its grid of threshold values). ``n = 0`` is the
exact mode. Accuracy errors are fractions (0.01 = 1 percentage point).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from axlib import config, data, models, quant, validate
from axlib.kernels import early_term as et
from axlib.models import stages as stages_mod
from axlib.models.census import layer_census

NEG = -1e30   # written into a conv output to force ReLU(out + residual) = 0


@dataclass
class SnapLayer:
    name: str
    conv: nn.Conv2d
    block: nn.Module | None = None   # residual block whose shortcut is added before the ReLU

    @property
    def kernels(self) -> int:
        return self.conv.out_channels

    @property
    def k(self) -> int:
        return self.conv.in_channels * self.conv.kernel_size[0] * self.conv.kernel_size[1]


def snapea_layers(net: nn.Module) -> list[SnapLayer]:
    """The conv layers SnaPEA can run, in forward order (see the module docstring)."""
    from axlib.models.cifarquick import CifarQuick
    from axlib.models.resnet_cifar import BasicBlock, CifarResNet
    from axlib.models.vggf_cifar import VGGfCifar

    named = dict(net.named_modules())
    if isinstance(net, CifarResNet):
        out = []
        for n, m in net.named_modules():
            if isinstance(m, BasicBlock):
                out += [SnapLayer(f"{n}.conv1", m.conv1), SnapLayer(f"{n}.conv2", m.conv2, m)]
        return out
    if isinstance(net, VGGfCifar):
        return [SnapLayer(n, named[n]) for n in ("conv2", "conv3", "conv4", "conv5")]
    if isinstance(net, CifarQuick):
        return [SnapLayer(n, named[n]) for n in ("conv2", "conv3")]
    if type(net).__name__ == "AlexNet":   # torchvision: conv -> ReLU (-> maxpool) in `features`
        return [SnapLayer(f"features.{i}", named[f"features.{i}"]) for i in (3, 6, 8, 10)]
    raise validate.ParameterError(f"no SnaPEA layer map for {type(net).__name__}; supported: CifarResNet, "
                                  "VGGfCifar, CifarQuick, AlexNet")


@dataclass
class LayerConfig:
    """Per-kernel speculation parameters of one layer: thresholds (absolute) and group counts."""

    th: np.ndarray   # (O,) float
    n: np.ndarray    # (O,) int, 0 = exact

    @property
    def exact(self) -> bool:
        return not np.any(self.n)


@dataclass
class Tally:
    negatives: int = 0        # windows whose exact pre-activation is <= 0
    positives: int = 0
    true_neg: int = 0         # negatives cut by the speculation check
    false_neg: int = 0        # positives cut by the speculation check (the error source)


class Speculator:
    """Forward hooks applying the predictive mode of the given layers (context manager)."""

    def __init__(self, net: nn.Module, layers: list[SnapLayer], configs: dict[str, LayerConfig], tally: bool = False,
                 masks: dict[str, torch.Tensor] | None = None, decisions: dict[str, torch.Tensor] | None = None):
        """``decisions``: per layer, precomputed speculation outcomes (images in run order, active
        kernels, Ho, Wo) to apply instead of computing them (profiling reuses one computation)."""
        self.net, self.layers = net, {sl.name: sl for sl in layers}
        self._decisions, self._offset = dict(decisions or {}), {}
        self.configs = {k: v for k, v in configs.items() if not v.exact}
        self.tallies = {k: Tally() for k in self.configs} if tally else None
        self._hooks, self._shortcut = [], {}
        self._spec = {}
        for name, cfg in self.configs.items():
            w = self.layers[name].conv.weight.detach()
            mask = (masks or {}).get(name)
            if mask is None:
                mask = speculation_weights_mask(w, cfg.n)
            active = torch.from_numpy(np.flatnonzero(cfg.n)).to(w.device)
            self._spec[name] = (active, (w * mask)[active],
                                torch.as_tensor(cfg.th, dtype=w.dtype, device=w.device)[active].view(1, -1, 1, 1))

    def __enter__(self) -> Speculator:
        for name in self.configs:
            sl = self.layers[name]
            if sl.block is not None:
                self._hooks.append(sl.block.register_forward_pre_hook(
                    lambda _m, a, name=name, b=sl.block: self._shortcut.__setitem__(name, b.shortcut(a[0]))))
            self._hooks.append(sl.conv.register_forward_hook(lambda m, a, o, name=name: self._hook(name, m, a[0], o)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _hook(self, name: str, conv: nn.Conv2d, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        active, w_spec, th = self._spec[name]
        res = self._shortcut.get(name)
        pre = out if res is None else out + res
        if name in self._decisions:
            off = self._offset.get(name, 0)
            pred = self._decisions[name][off:off + len(x)]
            self._offset[name] = off + len(x)
        else:
            pred = speculation_partial(conv, x, w_spec, active, res) <= th
        if self.tallies is not None:
            neg = pre <= 0
            t = self.tallies[name]
            t.negatives += int(neg.sum())
            t.positives += int((~neg).sum())
            t.true_neg += int((pred & neg[:, active]).sum())
            t.false_neg += int((pred & ~neg[:, active]).sum())
        out = out.clone()
        out[:, active] = torch.where(pred, torch.full_like(out[:, active], NEG), out[:, active])
        return out


def speculation_weights_mask(w: torch.Tensor, n) -> torch.Tensor:
    """0/1 tensor of ``w``'s shape marking each kernel's ``n`` speculation weights (§3.5.1)."""
    r = et.reorder(w.detach().cpu().numpy(), n)
    return torch.from_numpy(et.speculation_mask(tuple(w.shape), r)).to(w.device, w.dtype)


def speculation_partial(conv: nn.Conv2d, x: torch.Tensor, w_spec: torch.Tensor, kernels: torch.Tensor,
                        residual) -> torch.Tensor:
    """Partial sums after the speculation MACs of ``kernels`` (indices; ``w_spec`` holds their masked
    weights): bias (+ residual) + Σ spec w·x."""
    bias = conv.bias[kernels] if conv.bias is not None else None
    partial = F.conv2d(x, w_spec, bias, conv.stride, conv.padding)
    return partial if residual is None else partial + residual[:, kernels]


# --------------------------------------------------------------------------- the shared setup


class Setup:
    """BN-folded network, optimisation and test batches, SnaPEA layers, per-kernel scales."""

    def __init__(self, model: str, net: nn.Module, opt: list, test: list):
        self.model, self.net, self.opt, self.test = model, net, opt, test
        self.layers = snapea_layers(net)
        self.stages = stages_mod.model_stages(net)
        self.opt_labels = torch.cat([y for _, y in opt])
        self.test_labels = torch.cat([y for _, y in test])
        self.exact_opt_hits = self.hits(0, torch.cat([x for x, _ in opt]), self.opt_labels)
        self.exact_opt_correct = int(self.exact_opt_hits.sum())
        self.exact_test_correct = self.correct(test)
        self.scale = self._kernel_scales()
        self._stage_cache: dict = {}

    @torch.no_grad()
    def correct(self, batches) -> int:
        """Correct predictions of the whole network over ``batches`` of ``(x, y)``."""
        return sum(int((self.net(x).argmax(1) == y).sum()) for x, y in batches)

    @torch.no_grad()
    def hits(self, start: int, xs: torch.Tensor, labels: torch.Tensor, batch: int = 250) -> torch.Tensor:
        """Per image: is the prediction right, running ``stages[start:]`` on ``xs``."""
        return torch.cat([stages_mod.run_stages(self.stages, start, xs[i:i + batch]).argmax(1) == labels[i:i + batch]
                          for i in range(0, len(labels), batch)])

    @torch.no_grad()
    def capture(self, batches, configs: dict | None = None, limit: int | None = None) -> dict:
        """Per SnaPEA layer: its input, its conv output and its residual (or None) on ``batches``
        (first ``limit`` images), with ``configs`` speculating."""
        got = {sl.name: {"x": [], "out": [], "res": []} for sl in self.layers}
        hooks = []
        for sl in self.layers:
            def hook(_m, a, o, name=sl.name):
                got[name]["x"].append(a[0].detach())
                got[name]["out"].append(o.detach())
            hooks.append(sl.conv.register_forward_hook(hook))
            if sl.block is not None:
                hooks.append(sl.block.register_forward_pre_hook(
                    lambda _m, a, name=sl.name, b=sl.block: got[name]["res"].append(b.shortcut(a[0]).detach())))
        n_seen = 0
        try:
            with Speculator(self.net, self.layers, configs or {}):
                for x, _ in batches:
                    if limit is not None and n_seen >= limit:
                        break
                    x = x if limit is None else x[: limit - n_seen]
                    self.net(x)
                    n_seen += len(x)
        finally:
            for h in hooks:
                h.remove()
        out = {}
        for n, d in got.items():
            out[n] = {k: (torch.cat(v) if v else None) for k, v in d.items()}
            out[n]["x_batches"] = d["x"]
            out[n]["res_batches"] = d["res"] if d["res"] else [None] * len(d["x"])
        return out

    def _kernel_scales(self) -> dict[str, np.ndarray]:
        cap = self.capture(self.opt)
        out = {}
        for sl in self.layers:
            pre = cap[sl.name]["out"] + (cap[sl.name]["res"] if cap[sl.name]["res"] is not None else 0)
            out[sl.name] = pre.transpose(0, 1).reshape(sl.kernels, -1).double().std(1).numpy()
        return out

    def stage_inputs(self, layer: str) -> tuple[int, torch.Tensor]:
        """Stage index of ``layer`` and the exact inputs of that stage on the optimisation split
        (only the latest stage is kept)."""
        s = stages_mod.stage_of(self.stages, layer)
        if s not in self._stage_cache:
            with torch.no_grad():
                self._stage_cache = {s: torch.cat([stages_mod.run_stages(self.stages, 0, x, s) for x, _ in self.opt])}
        return s, self._stage_cache[s]

    def config(self, layer: str, th_mult, n) -> LayerConfig:
        sl = next(s for s in self.layers if s.name == layer)
        th = np.broadcast_to(np.asarray(th_mult, dtype=np.float64), (sl.kernels,)) * self.scale[layer]
        return LayerConfig(th.copy(), np.broadcast_to(np.asarray(n, dtype=np.int64), (sl.kernels,)).copy())

    def opt_err(self, configs: dict[str, LayerConfig], start_layer: str | None = None, masks=None,
                images: torch.Tensor | None = None, decisions=None, cap: float | None = None,
                batch: int = 250) -> float:
        """Accuracy loss (fraction of the whole optimisation split) with ``configs`` speculating.

        ``start_layer``: every speculating layer is in this layer's stage or later, so the run starts
        there on cached exact inputs. ``images``: indices of the only images whose result can change
        (the others are left out of the run and keep their exact result). ``cap``: only whether the
        loss exceeds ``cap`` matters beyond it: the images the exact network gets wrong (the only ones
        that can be gained) run first, then the run stops once the loss is above ``cap``, since every
        remaining image can only add to it. The value returned is then a lower bound above ``cap``;
        at or below ``cap`` it is exact."""
        if start_layer is None:
            s, xs = 0, torch.cat([x for x, _ in self.opt])
        else:
            s, xs = self.stage_inputs(start_layer)
        idx = torch.arange(len(self.opt_labels)) if images is None else images
        if len(idx) == 0:
            return 0.0
        exact = self.exact_opt_hits[idx]
        if cap is not None:
            order = torch.cat([torch.nonzero(~exact).flatten(), torch.nonzero(exact).flatten()])
            idx, exact = idx[order], exact[order]
            decisions = {k: v[order.to(v.device)] for k, v in decisions.items()} if decisions else decisions
        n_total, lost = len(self.opt_labels), 0
        with torch.no_grad(), Speculator(self.net, self.layers, configs, masks=masks, decisions=decisions):
            for i in range(0, len(idx), batch):
                b = idx[i:i + batch]
                got = stages_mod.run_stages(self.stages, s, xs[b]).argmax(1) == self.opt_labels[b]
                lost += int(exact[i:i + batch].sum() - got.sum())
                if cap is not None and lost / n_total > cap + 1e-12 and bool(exact[i + batch:].all()):
                    break
        return lost / n_total


@functools.lru_cache(maxsize=2)
def setup(model: str, n_opt: int, n_test, seed: int, zoo_json: str = "{}") -> Setup:
    validate.choice("model", model, list(models.MODELS))
    validate.integer("n_opt", n_opt, lo=1, hi=9999)
    if n_test is not None:
        validate.integer("n_test", n_test, lo=1, hi=9999)
    validate.integer("seed", seed, lo=0)
    spec = models.spec(model)
    overrides = json.loads(zoo_json) if spec.origin == "zoo" else {}
    net, _ = models.get_model(model, seed=seed, **overrides)
    dev = config.device()
    net = quant.fold_batchnorm(net).eval().to(dev)
    opt, test = data.evaluation_split(spec.dataset, spec.normalization, n_opt, n_test, seed)

    def batches(x, y):
        return [(xb.to(dev), yb.to(dev)) for xb, yb in data.batches(x, y, 250)]

    return Setup(model, net, batches(*opt), batches(*test))


# --------------------------------------------------------------------------- op counts (numba)


def layer_ops(sl: SnapLayer, cap: dict, cfg: LayerConfig | None) -> np.ndarray:
    """MACs per window (N, O, Ho, Wo) of layer ``sl`` on captured inputs, Eq. (3.1) by the numba kernel."""
    return _numba_layer(sl, cap, cfg)[1]


# --------------------------------------------------------------------------- Algorithm 1


def kernel_profile(s: Setup, th_mults: list[float], ns: list[int], n_ops: int, progress: bool = True,
                   err_cap: float | None = None) -> pd.DataFrame:
    """KERNELPROFILINGPASS: for every kernel of every SnaPEA layer and every ``(th, n)`` of the grid
    (plus the exact mode), its MACs on the first ``n_ops`` optimisation images (Eq. 3.1, numba) and
    the accuracy loss on the optimisation split when it alone speculates. Only images on which the
    candidate zeroes at least one positive output can change, so only those are run (the loss is
    still a fraction of the whole split); a candidate that zeroes none has loss 0 without a run.
    ``err_cap``: the largest acceptable loss that will be asked of this profile; a candidate's run stops
    once its loss exceeds it (:meth:`Setup.opt_err` ``cap``; ``err`` is then a lower bound above the cap
    and ``capped`` is True), which leaves :func:`param_k` unchanged for every ``eps <= err_cap``."""
    from tqdm import tqdm

    cap_all = s.capture(s.opt)
    cap_ops = {n: {k: (v[:n_ops] if v is not None else None) for k, v in d.items()} for n, d in cap_all.items()}
    rows = []
    total = sum(sl.kernels for sl in s.layers) * len(th_mults) * len(ns)
    bar = tqdm(total=total, desc=f"profile {s.model}", disable=not progress, unit="cand",
               mininterval=config.PROGRESS_INTERVAL_S)
    for sl in s.layers:
        exact_ops = layer_ops(sl, cap_ops[sl.name], None).sum(axis=(0, 2, 3))
        for k in range(sl.kernels):
                rows.append({"layer": sl.name, "kernel": k, "th_mult": 0.0, "n": 0, "op": int(exact_ops[k]), "err": 0.0,
                         "simulated": False, "capped": False})
        cap = cap_all[sl.name]
        pre = cap["out"] + (cap["res"] if cap["res"] is not None else 0)
        for n in ns:
            n_eff = min(int(n), sl.k)
            for tm in th_mults:
                cfg = s.config(sl.name, tm, n_eff)
                mask = speculation_weights_mask(sl.conv.weight, cfg.n)
                ops = layer_ops(sl, cap_ops[sl.name], cfg).sum(axis=(0, 2, 3))
                flips, pred = _false_negatives(sl, cap, pre, cfg, mask)
                for k in range(sl.kernels):
                    touched = torch.from_numpy(np.flatnonzero(flips[:, k]))
                    if len(touched) == 0:
                        err, sim = 0.0, False
                    else:
                        one = LayerConfig(np.where(np.arange(sl.kernels) == k, cfg.th, 0.0),
                                          np.where(np.arange(sl.kernels) == k, cfg.n, 0))
                        err = s.opt_err({sl.name: one}, start_layer=sl.name, masks={sl.name: mask}, images=touched,
                                        decisions={sl.name: pred[touched, k:k + 1]}, cap=err_cap)
                        sim = True
                    rows.append({"layer": sl.name, "kernel": k, "th_mult": float(tm), "n": n_eff, "op": int(ops[k]),
                                 "err": err, "simulated": sim,
                                 "capped": err_cap is not None and err > err_cap + 1e-12})
                    bar.update(1)
    bar.close()
    return pd.DataFrame(rows)


@torch.no_grad()
def _false_negatives(sl: SnapLayer, cap: dict, pre: torch.Tensor, cfg: LayerConfig, mask: torch.Tensor) -> np.ndarray:
    """Per image and kernel: positive pre-activations that the speculation check zeroes, and the
    check's outcome for every window (reused by the single-kernel runs of the profiling pass)."""
    w = sl.conv.weight.detach()
    th = torch.as_tensor(cfg.th, dtype=w.dtype, device=w.device).view(1, -1, 1, 1)
    on = torch.as_tensor(cfg.n > 0, device=w.device).view(1, -1, 1, 1)
    every = torch.arange(sl.kernels, device=w.device)
    per_image, preds = [], []
    start = 0
    for x, res in zip(cap["x_batches"], cap["res_batches"]):
        pred = (speculation_partial(sl.conv, x, w * mask, every, res) <= th) & on
        p = pre[start:start + len(x)]
        per_image.append((pred & (p > 0)).sum(dim=(2, 3)).cpu())
        preds.append(pred)
        start += len(x)
    return torch.cat(per_image).numpy(), torch.cat(preds)   # (images, kernels), (images, O, Ho, Wo)


def param_k(profile: pd.DataFrame, eps: float) -> dict[str, list[list[tuple]]]:
    """ParamK[l][k]: the kernel's candidates with ``err <= eps`` (the exact mode always), sorted by op."""
    ok = profile[profile["err"] <= eps + 1e-12]
    out: dict[str, list[list[tuple]]] = {}
    for (layer, _kernel), g in ok.groupby(["layer", "kernel"], sort=False):
        g = g.sort_values(["op", "n", "th_mult"])
        out.setdefault(layer, []).append(list(zip(g["th_mult"], g["n"], g["op"])))
    return out


def local_pass(s: Setup, pk: dict, eps: float) -> dict[str, list[dict]]:
    """LOCALOPTIMIZATIONPASS: per layer, configuration t gives kernel k its t-th cheapest acceptable
    candidate (its last one when it has fewer); kept if the layer alone speculating loses <= eps.
    The all-exact configuration is always kept. Each entry: th_mult, n (per kernel), op, err."""
    out = {}
    for sl in s.layers:
        lists = pk[sl.name]
        entries = []
        t_max = max(len(c) for c in lists)
        for t in range(t_max):
            picks = [c[min(t, len(c) - 1)] for c in lists]
            th_mult = np.array([p[0] for p in picks])
            n = np.array([p[1] for p in picks], dtype=np.int64)
            op = int(sum(p[2] for p in picks))
            cfg = LayerConfig(th_mult * s.scale[sl.name], n)
            err = 0.0 if cfg.exact else s.opt_err({sl.name: cfg}, start_layer=sl.name)
            if err <= eps + 1e-12:
                entries.append({"t": t, "th_mult": th_mult, "n": n, "op": op, "err": err})
        exact_op = int(sum(next(p[2] for p in c if p[1] == 0) for c in lists))
        if not any(not e["n"].any() for e in entries):
            entries.append({"t": -1, "th_mult": np.zeros(sl.kernels), "n": np.zeros(sl.kernels, dtype=np.int64),
                            "op": exact_op, "err": 0.0})
        out[sl.name] = sorted(entries, key=lambda e: (e["op"], e["err"]))
    return out


def global_pass(s: Setup, pl: dict, eps: float) -> tuple[dict[str, dict], list[dict]]:
    """GLOBALOPTIMIZATIONPASS: start every layer at its cheapest configuration; while the whole
    network loses more than eps on the optimisation split, move the layer/configuration with the
    largest merit -(err_t - err_cur) / (op_t - op_cur) (ADJUSTPARAM) and drop it from the list.
    Returns the chosen entry per layer and the trace of iterations."""
    remaining = {k: list(v) for k, v in pl.items()}
    chosen = {k: v.pop(0) for k, v in remaining.items()}

    def configs():
        return {k: LayerConfig(e["th_mult"] * s.scale[k], e["n"]) for k, e in chosen.items()}

    err = s.opt_err(configs())
    trace = [{"iteration": 0, "layer": None, "err": err, "op": sum(e["op"] for e in chosen.values())}]
    it = 0
    while err > eps + 1e-12:
        best, best_merit = None, -np.inf
        for layer, cands in remaining.items():
            cur = chosen[layer]
            for i, c in enumerate(cands):
                d_op = c["op"] - cur["op"]
                d_err = c["err"] - cur["err"]
                # cheaper-or-equal and no worse in isolation: never a repair; cheaper and better: always
                merit = -d_err / d_op if d_op > 0 else (np.inf if d_err < 0 else -np.inf)
                # ties: prefer the smaller op increase, then forward order
                if merit > best_merit or (merit == best_merit and best is not None and d_op < best[2]):
                    best, best_merit = (layer, i, d_op), merit
        if best is None or best_merit == -np.inf:   # nothing can repair: fall back to the exact mode
            for layer, cands in remaining.items():
                exact = [c for c in cands if not c["n"].any()]
                if exact and chosen[layer]["n"].any():
                    chosen[layer] = exact[0]
            err = s.opt_err(configs())
            trace.append({"iteration": it + 1, "layer": "all -> exact", "err": err,
                          "op": sum(e["op"] for e in chosen.values())})
            break
        layer, i, _ = best
        chosen[layer] = remaining[layer].pop(i)
        err = s.opt_err(configs())
        it += 1
        trace.append({"iteration": it, "layer": layer, "err": err, "op": sum(e["op"] for e in chosen.values())})
    return chosen, trace


def algorithm1(s: Setup, profile: pd.DataFrame, eps: float) -> tuple[dict, list, dict]:
    """Algorithm 1 for one acceptable loss ``eps`` (fraction), given the kernel profile."""
    validate.number("eps", eps, lo=0.0, hi=1.0)
    pk = param_k(profile, eps)
    pl = local_pass(s, pk, eps)
    chosen, trace = global_pass(s, pl, eps)
    local = {k: len(v) for k, v in pl.items()}
    return chosen, trace, local


# --------------------------------------------------------------------------- numba forward and accounting


@torch.no_grad()
def numba_forward(s: Setup, configs: dict[str, LayerConfig] | None, n_images: int) -> tuple[torch.Tensor, dict]:
    """Run the first ``n_images`` test images with every SnaPEA layer computed by the numba kernel
    (outputs and Eq. 3.1 op counts; each layer sees the outputs of the numba layers before it).
    Returns the logits and, per layer, the (N, O, Ho, Wo) op counts."""
    configs = configs or {}
    ops_by_layer: dict[str, list] = {sl.name: [] for sl in s.layers}
    shortcut: dict[str, torch.Tensor] = {}
    hooks = []

    def conv_hook(sl: SnapLayer, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        res = shortcut.get(sl.name)
        cap = {"x": x, "res": res}
        y, ops = _numba_layer(sl, cap, configs.get(sl.name))
        ops_by_layer[sl.name].append(ops)
        y = torch.from_numpy(y).to(out.dtype).to(out.device)
        base = -res if res is not None else torch.zeros_like(out)
        # ReLU(out' + res) must equal y: out' = y - res where y > 0, a large negative value where y == 0
        return torch.where(y > 0, y + base, torch.full_like(out, NEG))

    for sl in s.layers:
        if sl.block is not None:
            hooks.append(sl.block.register_forward_pre_hook(
                lambda _m, a, sl=sl: shortcut.__setitem__(sl.name, sl.block.shortcut(a[0]))))
        hooks.append(sl.conv.register_forward_hook(lambda _m, a, o, sl=sl: conv_hook(sl, a[0], o)))
    logits, seen = [], 0
    try:
        for x, _ in s.test:
            if seen >= n_images:
                break
            x = x[: n_images - seen]
            logits.append(s.net(x))
            seen += len(x)
    finally:
        for h in hooks:
            h.remove()
    return torch.cat(logits), {k: np.concatenate(v) for k, v in ops_by_layer.items()}


def _numba_layer(sl: SnapLayer, cap: dict, cfg: LayerConfig | None) -> tuple[np.ndarray, np.ndarray]:
    conv = sl.conv
    x = np.maximum(cap["x"].detach().cpu().double().numpy(), 0.0)
    w = conv.weight.detach().cpu().double().numpy()
    b = conv.bias.detach().cpu().double().numpy() if conv.bias is not None else None
    res = cap["res"].detach().cpu().double().numpy() if cap["res"] is not None else None
    th = 0.0 if cfg is None else cfg.th
    n = 0 if cfg is None else cfg.n
    return et.early_term_conv2d(x, w, b, conv.stride, conv.padding, th=th, n=n, residual=res)


def layer_shapes(s: Setup) -> pd.DataFrame:
    """Every Conv2d/Linear of the network: MACs, input and output elements per image, weights
    (:func:`axlib.models.census.layer_census`), and whether it is a SnaPEA layer."""
    df = layer_census(s.net, s.test[0][0][:1])
    df["snapea"] = df["layer"].isin([sl.name for sl in s.layers])
    return df


LANES = (1, 2, 4, 8, 16)


def accelerator_rows(s: Setup, ops: dict[str, np.ndarray], n_images: int, lanes=LANES) -> pd.DataFrame:
    """Per layer of the whole network: dense and executed MACs, modelled cycles (baseline and SnaPEA
    for each lane count) and energy (:mod:`axlib.energy`), for ``n_images`` images."""
    from axlib import energy

    rows = []
    for r in layer_shapes(s).itertuples():
        dense = r.macs * n_images
        words = n_images * (r.in_elems + r.out_elems) + r.weights
        row = {"layer": r.layer, "kind": r.kind, "snapea_layer": bool(r.snapea), "dense_macs": dense, "words": words,
               "baseline_cycles": energy.dense_cycles(dense),
               "baseline_energy_pj": dense * energy.mac_energy_pj(False) + energy.movement_energy_pj(words)}
        if r.snapea:
            o = ops[r.layer]
            row["snapea_macs"] = int(o.sum())
            for ln in lanes:
                row[f"cycles_lanes{ln}"] = energy.snapea_cycles(o, ln)
        else:   # run densely on the same 256 MAC units
            row["snapea_macs"] = dense
            for ln in lanes:
                row[f"cycles_lanes{ln}"] = energy.dense_cycles(dense)
        row["snapea_energy_pj"] = row["snapea_macs"] * energy.mac_energy_pj(True) + energy.movement_energy_pj(words)
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- cached sweep points


def profile_point(model: str, th_mults: list[float], ns: list[int], n_opt: int, n_test, n_ops: int, seed: int,
                  zoo_json: str = "{}", err_cap: float | None = None) -> list[dict]:
    """The kernel profile of one network (JSON records; cached by :func:`axlib.sweep.run_grid`);
    ``err_cap``: see :func:`kernel_profile`."""
    s = setup(model, n_opt, n_test, seed, zoo_json)
    return kernel_profile(s, th_mults, ns, n_ops, err_cap=err_cap).to_dict("records")


def mode_point(model: str, eps: float | None, th_mults: list[float], ns: list[int], n_opt: int, n_test, n_ops: int,
               seed: int, zoo_json: str = "{}", err_cap: float | None = None) -> dict:
    """One network at one acceptable loss ``eps`` (None: exact mode, no speculation): Algorithm 1 on
    the optimisation split, then test accuracy (torch, all test images) and op counts, true/false
    negatives and the accelerator model on the first ``n_ops`` test images (numba forward).
    ``err_cap`` (>= ``eps``): the kernel profile stops each candidate's run once its loss exceeds it
    (:func:`kernel_profile`); None runs every candidate to the end."""
    from axlib import sweep

    s = setup(model, n_opt, n_test, seed, zoo_json)
    chosen, trace, local = None, [], {}
    if eps is not None:
        if err_cap is not None and eps > err_cap + 1e-12:
            raise validate.ParameterError(f"eps={eps} is above err_cap={err_cap}: the capped profile cannot rank it")
        point = dict(model=model, th_mults=th_mults, ns=ns, n_opt=n_opt, n_test=n_test, n_ops=n_ops, seed=seed,
                     zoo_json=zoo_json)
        if err_cap is not None:
            point["err_cap"] = err_cap
        prof = pd.DataFrame(sweep.run_grid(profile_point, [point], name=PROFILE_VERSION, progress=False)[0])
        chosen, trace, local = algorithm1(s, prof, eps)
    configs = {} if chosen is None else {k: LayerConfig(e["th_mult"] * s.scale[k], e["n"]) for k, e in chosen.items()}
    sp = Speculator(s.net, s.layers, configs, tally=True)
    with torch.no_grad(), sp:
        correct = s.correct(s.test)
    logits, ops = numba_forward(s, configs, n_ops)
    with torch.no_grad():
        ref = torch.cat([s.net(x) for x, _ in s.test])[: len(logits)]
    acc_rows = accelerator_rows(s, ops, len(logits))
    layer_rows = []
    for sl in s.layers:
        cfg = configs.get(sl.name)
        t = sp.tallies.get(sl.name) if sp.tallies else None
        layer_rows.append({"layer": sl.name, "kernels": sl.kernels, "k": sl.k,
                           "predictive": bool(cfg is not None and not cfg.exact),
                           "kernels_predictive": int(np.count_nonzero(cfg.n)) if cfg is not None else 0,
                           "mean_n": float(cfg.n.mean()) if cfg is not None else 0.0,
                           "mean_th_mult": float(chosen[sl.name]["th_mult"].mean()) if chosen else 0.0,
                           "negatives": t.negatives if t else None, "positives": t.positives if t else None,
                           "true_negatives": t.true_neg if t else None, "false_negatives": t.false_neg if t else None,
                           "local_configs": local.get(sl.name)})
    n_test_images = len(s.test_labels)
    return {"model": model, "eps": eps, "test_accuracy": correct / n_test_images,
            "exact_test_accuracy": s.exact_test_correct / n_test_images,
            "test_accuracy_loss": (s.exact_test_correct - correct) / n_test_images, "n_test": n_test_images,
            "n_opt": len(s.opt_labels), "n_ops": len(logits),
            "numba_agreement_with_torch_path": float((logits.argmax(1) == _torch_path_pred(s, configs, len(logits)))
                                                     .float().mean()),
            "numba_agreement_with_dense": float((logits.argmax(1) == ref.argmax(1)).float().mean()),
            "trace": trace, "layers": layer_rows, "accelerator": acc_rows.to_dict("records")}


@torch.no_grad()
def _torch_path_pred(s: Setup, configs: dict, n: int) -> torch.Tensor:
    with Speculator(s.net, s.layers, configs):
        return torch.cat([s.net(x) for x, _ in s.test])[:n].argmax(1)


PROFILE_VERSION = "snapea-profile-v1"
MODE_VERSION = "snapea-mode-v2"  # v2: SnaPEA MAC energy with broadcast weight/index reads


def mode_sweep(model_names: list[str], eps_values: list, th_mults: list[float], ns: list[int], n_opt: int, n_test,
               n_ops: int, seed: int, zoo_json: str = "{}", cap_profile: bool = False) -> list[dict]:
    """:func:`mode_point` for every network and acceptable loss (None = exact mode), cached per point.
    With ``cap_profile`` the kernel profile stops each candidate once its loss exceeds the largest
    ``eps`` (exact for every ``eps`` here, much cheaper; cached apart from an uncapped profile)."""
    from axlib import sweep

    budgets = [e for e in eps_values if e is not None]
    cap = {"err_cap": float(max(budgets))} if cap_profile and budgets else {}
    points = [dict(model=m, eps=e, th_mults=list(th_mults), ns=list(ns), n_opt=n_opt, n_test=n_test, n_ops=n_ops,
                   seed=seed, zoo_json=zoo_json, **(cap if e is not None else {}))
              for m in model_names for e in eps_values]
    return sweep.run_grid(mode_point, points, name=MODE_VERSION)


def tables(results: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Tidy tables of :func:`mode_sweep` results: networks, layers, accelerator rows, traces."""
    nets, layers, acc, traces = [], [], [], []
    for r in results:
        key = {"model": r["model"], "eps": r["eps"] if r["eps"] is not None else -1.0,
               "mode": "exact" if r["eps"] is None else "predictive"}
        nets.append({**key, **{k: r[k] for k in ("test_accuracy", "exact_test_accuracy", "test_accuracy_loss",
                                                 "n_test", "n_opt", "n_ops", "numba_agreement_with_torch_path",
                                                 "numba_agreement_with_dense")}})
        layers += [{**key, **row} for row in r["layers"]]
        acc += [{**key, **row} for row in r["accelerator"]]
        traces += [{**key, **row} for row in r["trace"]]
    return pd.DataFrame(nets), pd.DataFrame(layers), pd.DataFrame(acc), pd.DataFrame(traces)


#: Table 3.4 criterion: a layer counts as "in predictive mode" when speculation cuts its executed
#: MACs by at least this fraction below its exact-mode MACs on the same images.
MIN_MAC_CUT = 0.05


def predictive_mac_cut(acc: pd.DataFrame, model: str, eps: float) -> pd.Series:
    """Per SnaPEA layer of ``model`` at ``eps``: the fraction of its exact-mode MACs (Eq. 3.1, ``eps = -1``
    rows of ``acc``, same ``n_ops`` images) that the predictive configuration removes, 1 - MACs / exact MACs
    (0 for the exact mode itself; negative would mean more MACs). Indexed by layer."""
    sn = acc[(acc["model"] == model) & acc["snapea_layer"]]
    ex = sn[sn["eps"] == -1.0].set_index("layer")["snapea_macs"]
    if ex.empty:
        raise ValueError(f"no exact-mode rows (eps = -1) for {model}: the MAC cut needs them")
    cur = sn[sn["eps"] == eps].set_index("layer")["snapea_macs"].reindex(ex.index)
    return 1.0 - cur.astype(float) / ex.astype(float)


def summarize(acc: pd.DataFrame, layers: pd.DataFrame, lanes: int = 4, min_cut: float = MIN_MAC_CUT) -> pd.DataFrame:
    """Per (model, eps): whole-network speedup and energy reduction over the dense baseline, the
    SnaPEA layers' MAC reduction, the share of SnaPEA layers in predictive mode and their mean
    speedup and energy reduction, and the true/false negative rates (Tables 3.4, 3.5).

    ``share_layers_predictive`` counts a layer when any kernel speculates; ``share_layers_mac_cut``
    only when its executed MACs fall by at least ``min_cut`` below the exact mode
    (:func:`predictive_mac_cut`; needs the exact-mode rows), and ``mac_cut_layers_speedup`` /
    ``mac_cut_layers_energy_reduction`` are the mean per-layer speedup (``lanes`` lanes) and energy
    reduction over the dense baseline of those layers (Table 3.4, second and third columns)."""
    rows = []
    has_exact = bool((acc["eps"] == -1.0).any())
    for (model, eps), g in acc.groupby(["model", "eps"], sort=False):
        lay = layers[(layers["model"] == model) & (layers["eps"] == eps)].set_index("layer")
        sn = g[g["snapea_layer"]].set_index("layer")
        per_speed = sn["baseline_cycles"] / sn[f"cycles_lanes{lanes}"]
        per_energy = sn["baseline_energy_pj"] / sn["snapea_energy_pj"]
        pred = lay["predictive"].reindex(sn.index).fillna(False).astype(bool)
        if has_exact and (acc[acc["model"] == model]["eps"] == -1.0).any():
            cut = predictive_mac_cut(acc, model, eps).reindex(sn.index)
            real = (cut >= min_cut - 1e-12) & pred
        else:
            cut, real = pd.Series(np.nan, index=sn.index), pd.Series(False, index=sn.index)
        tn = lay["true_negatives"].sum() / lay["negatives"].sum() if lay["negatives"].sum() else np.nan
        fn = lay["false_negatives"].sum() / lay["positives"].sum() if lay["positives"].sum() else np.nan
        rows.append({"model": model, "eps": eps,
                     "speedup": g["baseline_cycles"].sum() / g[f"cycles_lanes{lanes}"].sum(),
                     "energy_reduction": g["baseline_energy_pj"].sum() / g["snapea_energy_pj"].sum(),
                     "snapea_layer_mac_reduction": 1 - sn["snapea_macs"].sum() / sn["dense_macs"].sum(),
                     "share_layers_predictive": float(pred.mean()) if len(pred) else np.nan,
                     "predictive_layers_speedup": float(per_speed[pred].mean()) if pred.any() else np.nan,
                     "predictive_layers_energy_reduction": float(per_energy[pred].mean()) if pred.any() else np.nan,
                     "share_layers_mac_cut": float(real.mean()) if len(real) and not cut.isna().all() else np.nan,
                     "mac_cut_layers_speedup": float(per_speed[real].mean()) if real.any() else np.nan,
                     "mac_cut_layers_energy_reduction": float(per_energy[real].mean()) if real.any() else np.nan,
                     "max_layer_mac_cut": float(cut.max()) if not cut.isna().all() else np.nan,
                     "true_negative_rate": tn, "false_negative_rate": fn})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- Fig. 3.1


@torch.no_grad()
def relu_inputs(model: str, n_images: int, seed: int, zoo_json: str = "{}") -> pd.DataFrame:
    """Per ReLU of the network (in forward order): values entering it and the share that is negative,
    over ``n_images`` seeded evaluation images (test split; ImageNet: the validation folder), the
    inputs of Fig. 3.1. Each ReLU is labelled with the layer that feeds it (the last Conv2d/Linear
    before it)."""
    spec = models.spec(model)
    overrides = json.loads(zoo_json) if spec.origin == "zoo" else {}
    net, _ = models.get_model(model, seed=seed, **overrides)
    net = quant.fold_batchnorm(net).eval()
    (x, _), _ = data.evaluation_split(spec.dataset, spec.normalization, n_images, 1, seed)
    order, feeder = [], {}
    last = [None]
    counts: dict[str, list] = {}

    def layer_hook(name):
        def h(_m, _a, _o):
            last[0] = name
        return h

    def relu_hook(name):
        def h(_m, a):
            v = a[0]
            if name not in counts:
                counts[name] = [0, 0]
                order.append(name)
                feeder[name] = last[0]
            counts[name][0] += int((v < 0).sum())
            counts[name][1] += v.numel()
        return h

    hooks = []
    for n, m in net.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(layer_hook(n)))
        if isinstance(m, nn.ReLU):
            hooks.append(m.register_forward_pre_hook(relu_hook(n)))
    kinds = {n: type(m).__name__ for n, m in net.named_modules()}
    try:
        for xb, _ in data.batches(x, torch.zeros(len(x)), 250):
            net(xb)
    finally:
        for h in hooks:
            h.remove()
    return pd.DataFrame([{"model": model, "relu": r, "fed_by": feeder[r], "fed_by_kind": kinds.get(feeder[r]),
                          "negative": counts[r][0], "values": counts[r][1],
                          "negative_share": counts[r][0] / counts[r][1]} for r in order])


# --------------------------------------------------------------------------- published values and parameters

#: akhlaghi2020 §3.7.2: exact-mode means over AlexNet, GoogLeNet, SqueezeNet, VGGNet (vs EYERISS).
PAPER_EXACT = {"speedup": 1.3, "energy_reduction": 1.16}
#: §3.7.2 / Fig. 3.11: mean speedup at an acceptable accuracy loss of 0 (exact), 1, 2, 3 %.
PAPER_SPEEDUP_VS_EPS = {0.0: 1.28, 0.01: 1.38, 0.02: 1.63, 0.03: 1.9}
#: Table 3.4 (3 % loss): share of conv layers in predictive mode, their mean speedup and energy reduction.
PAPER_TABLE_3_4 = pd.DataFrame([("AlexNet", 0.600, 2.11, 1.97), ("GoogLeNet", 0.8421, 2.17, 2.04),
                                ("SqueezeNet", 0.6538, 1.94, 1.84), ("VGGNet", 0.615, 1.87, 1.73)],
                               columns=["network", "share_layers_predictive", "speedup", "energy_reduction"])
#: Table 3.5 (3 % loss): true and false negative rates of the prediction.
PAPER_TABLE_3_5 = pd.DataFrame([("AlexNet", 0.6184, 0.2139), ("GoogLeNet", 0.6636, 0.2837),
                                ("SqueezeNet", 0.4932, 0.1669), ("VGGNet", 0.4754, 0.1521)],
                               columns=["network", "true_negative_rate", "false_negative_rate"])
#: §3.7.2, Fig. 3.12: speedup change when the lanes per PE change by 0.5x, 2x, 4x (3 % loss).
PAPER_LANES = {2: -0.26, 8: -0.36, 16: -0.45}
#: Table 3.2.
PAPER_AREA_MM2 = {"SnaPEA": 18.6, "EYERISS": 17.8}


def split_overlap(model: str, n_opt: int, n_test, seed: int) -> dict:
    """Sizes of the optimisation and test index sets that :func:`setup` draws for ``model``
    (:func:`axlib.data.evaluation_split`) and how many images they share (0 by construction)."""
    from axlib.data.arrays import load_arrays
    from axlib.data.splits import calibration_test_split
    from axlib.data.tensors import IMAGENET_DEFAULT_SECOND

    spec = models.spec(model)
    if spec.dataset == "imagenet":
        n_total = n_opt + (IMAGENET_DEFAULT_SECOND if n_test is None else n_test)
        a, b = calibration_test_split(n_total, n_opt, None, seed)
    else:
        a, b = calibration_test_split(len(load_arrays(spec.dataset, "test")), n_opt, n_test, seed)
    return {"n_opt": len(a), "n_test": len(b), "shared": len(np.intersect1d(a, b))}


#: Networks with a SnaPEA layer map (:func:`snapea_layers`).
SNAPEA_MODELS = ("cifarquick", "vggf_cifar", "resnet20", "resnet32", "resnet44", "resnet56", "alexnet")


def validate_sweep(model_names, th_mults, ns, n_opt: int, n_test, n_ops: int, seed: int):
    """Check the parameters of the SnaPEA notebooks without loading a network."""
    names = validate.unique("models", validate.choices("models", model_names, SNAPEA_MODELS))
    th = [validate.number("th_mults", t, lo=-10.0, hi=10.0) for t in validate.as_list("th_mults", th_mults)]
    n = validate.unique("ns", validate.integers("ns", ns, lo=1, hi=100000))
    if not th:
        raise validate.ParameterError("parameter th_mults is empty; give threshold multiples, e.g. [0.0]")
    validate.unique("th_mults", th)
    validate.integer("n_opt", n_opt, lo=1, hi=9999)
    if n_test is not None:
        validate.integer("n_test", n_test, lo=1, hi=9999)
    validate.integer("n_ops", n_ops, lo=1, hi=10000)
    validate.integer("seed", seed, lo=0)
    return names, th, n
