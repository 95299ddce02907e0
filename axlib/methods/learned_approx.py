"""Learned bit-widths and DRAM bit-error rates of a CNN by gradient descent (akhlaghi2020 §4.4, §4.5.2-3).

Every conv layer ``l`` (the FC layer is left exact) gets hardware parameters (Eqs. 4.10, 4.12):
fractional (or mantissa) bits ``q_f^l`` of its input feature map and ``q_w^l`` of its weights, and
DRAM bit error rates ``p_f^l``, ``p_w^l``. The layer computes its convolution on

    x̃ = DRAM(Q_{q_f}(x), p_f),   w̃ = DRAM(Q_{q_w}(w), p_w),

with :func:`axlib.quant.learnable.learnable_quantize` (continuous bits, straight-through rounding)
and Eq. 4.2 with the word error rate of Eq. 4.11 (:mod:`axlib.nn.dram`, ``E`` uniform over the
representable range). The network weights are frozen, batch norm in eval mode, and the hardware
parameters minimise (§4.5.2)

    CE + λ_q·Σ q² + λ_p·Σ 1/p,

with ``p = 10^u`` learned in log space and clamped to [1e-7, 0.05]. The thesis does not give λ_q,
λ_p: here each regulariser is set to 5 % of the initial cross-entropy (together 10 %), and the
values are recorded. Bits are snapped up (``⌈q⌉``) for every evaluation.

Granularity: ``"layer"`` (one ``q`` per operand and layer) or ``"filter"`` (``q_w`` per output
filter, ``q_f`` per input channel; BERs stay per layer, §4.5.2 "Filter-Wise Approximation").
Formats: ``"fixed"`` (16-bit baseline, 5 integer bits for feature maps and 1 for weights, §4.5.2) or
``"bfloat"`` (mantissa bits, §4.5.3; feature-map errors only at pipeline-group boundaries).
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from axlib import validate
from axlib.nn import dram
from axlib.quant import learnable

MODELS = ("resnet20", "resnet56", "resnet110")
GRANULARITIES = ("layer", "filter")
FORMATS = learnable.FORMATS
#: Integer bits of the fixed-point format (§4.5.2): feature maps 5, weights 1 (plus a sign bit).
INT_BITS = {"f": 5, "w": 1}
BASELINE_BITS = 16
#: Learned BER range; the thesis clamps neither, a floor keeps Σ 1/p finite and a ceiling keeps
#: the network from collapsing in the first steps.
P_RANGE = (1e-7, 0.05)
#: Initial distributions (§4.5.2): bits N(7.0, variance 0.9); BER of weights N(0.01, var 0.009) and
#: of feature maps N(0.001, var 0.0009) *in percent*, like every BER the thesis reports (read as
#: fractions, a 1 % BER corrupts ~9 % of the weights and the initial network is at chance), clipped
#: into P_RANGE. As fractions: means 1e-4 / 1e-5, variance 0.9 × mean in percent².
Q_INIT = (7.0, 0.9)
BER_INIT = {"w": 1e-4, "f": 1e-5}
REG_SHARE = 0.05


def check_init(q_init, ber_init) -> tuple[float, dict]:
    """Initial bits in [0, 32] and initial BERs (fractions) in [0, 1] for ``"w"``/``"f"``; ParameterError otherwise."""
    q = validate.number("q_init", q_init, *learnable.BITS_RANGE)
    validate.mapping("ber_init", ber_init)
    unknown = sorted(set(ber_init) - {"w", "f"})
    if unknown:
        raise validate.ParameterError(f"parameter ber_init has unknown operand(s) {unknown}; allowed: 'w', 'f'")
    return q, {k: dram.check_ber(f"ber_init[{k!r}]", v) for k, v in ber_init.items()}


def max_bits(fmt: str, operand: str) -> float:
    """Largest learnable bit count: the 16-bit baseline's fraction (10 / 14) or BFloat16's 7 mantissa bits."""
    if fmt == "bfloat":
        return float(learnable.BFLOAT_MANTISSA)
    return float(BASELINE_BITS - 1 - INT_BITS[operand])


@dataclass(frozen=True)
class Setup:
    """What is learned: number format, granularity, whether DRAM errors exist, where feature maps meet DRAM."""

    fmt: str = "fixed"
    granularity: str = "layer"
    dram: bool = True
    fm_dram: str = "all"          # "all" conv inputs (§4.5.2) or "boundaries" (io-stationary dataflow, §4.5.3)

    def __post_init__(self):
        validate.choice("fmt", self.fmt, FORMATS)
        validate.choice("granularity", self.granularity, GRANULARITIES)
        validate.choice("fm_dram", self.fm_dram, ("all", "boundaries"))


class ApproxConv(nn.Module):
    """A frozen ``nn.Conv2d`` computing on quantized, DRAM-corrupted input and weights (module docstring)."""

    def __init__(self, conv: nn.Conv2d, setup: Setup, gen: torch.Generator, fm_dram: bool, q_init: float = Q_INIT[0],
                 ber_init: dict | None = None):
        super().__init__()
        self.conv, self.setup, self.fm_dram = conv, setup, fm_dram
        per = setup.granularity == "filter"
        n_w, n_f = (conv.out_channels, conv.in_channels) if per else (1, 1)
        mean, var = q_init, Q_INIT[1]
        ber_init = {**BER_INIT, **(ber_init or {})}
        self.q_w = nn.Parameter((mean + math.sqrt(var) * torch.randn(n_w, generator=gen)).squeeze(0)
                                .clamp(0, max_bits(setup.fmt, "w")))
        self.q_f = nn.Parameter((mean + math.sqrt(var) * torch.randn(n_f, generator=gen)).squeeze(0)
                                .clamp(0, max_bits(setup.fmt, "f")))
        self.u_w = nn.Parameter(_init_log_ber(ber_init["w"], gen))
        self.u_f = nn.Parameter(_init_log_ber(ber_init["f"], gen))
        self.gen = torch.Generator()
        self.mode = "expected"
        self.dram_on = True

    def ber(self, operand: str) -> torch.Tensor:
        """BER ``10^u``; ``u`` is kept inside :data:`P_RANGE` by :func:`project` after every step."""
        return 10.0 ** (self.u_w if operand == "w" else self.u_f)

    def _operand(self, v: torch.Tensor, operand: str, dim: int, with_dram: bool) -> torch.Tensor:
        s = self.setup
        q = self.q_w if operand == "w" else self.q_f
        m = INT_BITS[operand]
        vq = learnable.learnable_quantize(v, q, s.fmt, m, dim=dim if q.dim() else None)
        if not (s.dram and with_dram and self.dram_on):
            return vq
        n = learnable.word_bits(q.clamp(0, max_bits(s.fmt, operand)), s.fmt, m)
        alpha = dram.word_error_rate(self.ber(operand), n)
        if alpha.dim():
            shape = [1] * v.dim()
            shape[dim] = alpha.numel()
            alpha = alpha.view(shape)
        if s.fmt == "fixed":
            lo, hi = -(2.0 ** m), 2.0 ** m
        else:
            lo, hi = float(v.detach().min()), float(v.detach().max())
        return dram.corrupt(vq, alpha, lo, hi, self.gen, self.mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xq = self._operand(x, "f", 1, self.fm_dram)
        wq = self._operand(self.conv.weight, "w", 0, True)
        return self.conv._conv_forward(xq, wq, self.conv.bias)


class BoundaryErrors(nn.Module):
    """DRAM errors of a feature map crossing a pipeline-group boundary (§4.5.3), stored in ``bits`` bits."""

    def __init__(self, gen: torch.Generator, bits_of, ber_mean: float = BER_INIT["f"]):
        super().__init__()
        self.u = nn.Parameter(_init_log_ber(ber_mean, gen))
        self.bits_of = bits_of
        self.gen = torch.Generator()
        self.mode = "expected"
        self.dram_on = True

    def ber(self) -> torch.Tensor:
        return 10.0 ** self.u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.dram_on:
            return x
        alpha = dram.word_error_rate(self.ber(), self.bits_of())
        return dram.corrupt(x, alpha, float(x.detach().min()), float(x.detach().max()), self.gen, self.mode)


def _init_log_ber(mean: float, gen: torch.Generator) -> torch.Tensor:
    """log10 of a BER drawn from N(mean, 0.9·mean) in percent units (§4.5.2), clipped into P_RANGE."""
    sd = math.sqrt(0.9 * mean * 100) / 100
    p = (mean + sd * torch.randn((), generator=gen)).clamp(*P_RANGE)
    return torch.log10(p)


# --------------------------------------------------------------------------- building the network


def load_network(name: str) -> tuple[nn.Module, str]:
    """``(model, normalization)`` of a pretrained CIFAR-10 ResNet; ResNet-110 only from a user-supplied file."""
    validate.choice("model", name, MODELS)
    from axlib import models
    from axlib.models.pretrained import load_cifar_resnet_state
    from axlib.models.resnet_cifar import CifarResNet

    if name == "resnet110":
        state, _ = load_cifar_resnet_state(110)   # MissingDataError says where to put resnet110-1d1ed7c2.th
        model = CifarResNet(110)
        model.load_state_dict(state)
        return model.eval(), "imagenet_meanstd"
    model, _ = models.get_model(name)
    return model.eval(), models.spec(name).normalization


def conv_names(model: nn.Module) -> list[str]:
    """The conv layers that get hardware parameters, in execution order (the FC layer stays exact)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


BOUNDARIES = (("conv1", "input"), ("layer2", "input"), ("layer3", "input"), ("layer3", "output"))


class ApproxNet(nn.Module):
    """``model`` with every conv replaced by :class:`ApproxConv` (and boundary errors if the setup asks)."""

    def __init__(self, model: nn.Module, setup: Setup, seed: int, q_init: float = Q_INIT[0],
                 ber_init: dict | None = None):
        super().__init__()
        self.q_init, self.ber_init = q_init, {**BER_INIT, **(ber_init or {})}
        self.net = copy.deepcopy(model).eval()
        self.setup = setup
        gen = torch.Generator().manual_seed(seed)
        self.layers = conv_names(self.net)
        fm_all = setup.fm_dram == "all"
        for name in self.layers:
            parent, child = _split(self.net, name)
            setattr(parent, child, ApproxConv(getattr(parent, child), setup, gen, fm_dram=fm_all,
                                                  q_init=q_init, ber_init=self.ber_init))
        self.boundaries = nn.ModuleDict()
        self._hooks = []
        if setup.dram and not fm_all:
            self._add_boundaries(gen)
        for p in self.net.parameters():
            p.requires_grad_(False)
        for p in self.hardware_parameters():
            p.requires_grad_(True)

    def _add_boundaries(self, gen):
        named = dict(self.net.named_modules())
        first = {"conv1": self.layers[0], "layer2": f"layer2.0.{_first_conv(named['layer2.0'])}",
                 "layer3": f"layer3.0.{_first_conv(named['layer3.0'])}"}
        for module, where in BOUNDARIES:
            key = f"{module}.{where}"
            if where == "input":
                conv = named[first[module]]
                bits = (lambda c=conv: learnable.word_bits(c.q_f.detach().clamp(0, 7).max(), "bfloat"))
            else:
                bits = (lambda: torch.tensor(float(BASELINE_BITS)))    # consumed by the exact FC layer
            self.boundaries[key.replace(".", "_")] = b = BoundaryErrors(gen, bits, self.ber_init["f"])
            if where == "input":
                self._hooks.append(named[module].register_forward_pre_hook(lambda _m, a, b=b: (b(a[0]),)))
            else:
                self._hooks.append(named[module].register_forward_hook(lambda _m, _a, out, b=b: b(out)))

    def approx_layers(self) -> dict[str, ApproxConv]:
        named = dict(self.net.named_modules())
        return {n: named[n] for n in self.layers}

    def hardware_parameters(self) -> list[nn.Parameter]:
        out = []
        for m in self.approx_layers().values():
            out += [m.q_w, m.q_f] + ([m.u_w, m.u_f] if self.setup.dram else [])
        return out + ([b.u for b in self.boundaries.values()] if self.setup.dram else [])

    def set_mode(self, mode: str, seed: int) -> None:
        """DRAM error mode (``expected`` | ``bernoulli``) and a fresh seed for every error generator."""
        validate.choice("mode", mode, dram.MODES[:2])
        for i, m in enumerate(list(self.approx_layers().values()) + list(self.boundaries.values())):
            m.mode = mode
            m.gen.manual_seed(seed * 1009 + i)

    @contextlib.contextmanager
    def without_dram(self):
        """Inside the block the network is quantized only (every DRAM error off)."""
        mods = list(self.approx_layers().values()) + list(self.boundaries.values())
        for m in mods:
            m.dram_on = False
        try:
            yield self
        finally:
            for m in mods:
                m.dram_on = True

    def forward(self, x):
        return self.net(x)


def _first_conv(block: nn.Module) -> str:
    return next(n for n, m in block.named_children() if isinstance(m, (nn.Conv2d, ApproxConv)))


def _split(root: nn.Module, name: str):
    parts = name.split(".")
    parent = root
    for p in parts[:-1]:
        parent = getattr(parent, p)
    return parent, parts[-1]


# --------------------------------------------------------------------------- configurations


def snapshot(net: ApproxNet, snapped: bool = True) -> dict:
    """The hardware parameters as plain numbers: bits (``⌈q⌉`` if ``snapped``) and BERs per layer."""
    cfg = {"layers": {}, "boundaries": {}}
    for name, m in net.approx_layers().items():
        qw, qf = m.q_w.detach().clamp(0, max_bits(net.setup.fmt, "w")), m.q_f.detach().clamp(0, max_bits(net.setup.fmt, "f"))
        if snapped:
            qw, qf = torch.ceil(qw - 1e-6), torch.ceil(qf - 1e-6)
        cfg["layers"][name] = {"q_w": qw.tolist(), "q_f": qf.tolist(),
                               "p_w": float(m.ber("w").detach()) if net.setup.dram else 0.0,
                               "p_f": float(m.ber("f").detach()) if net.setup.dram and m.fm_dram else 0.0}
    for key, b in net.boundaries.items():
        cfg["boundaries"][key] = float(b.ber().detach())
    return cfg


def _shaped(values, like: torch.Tensor) -> torch.Tensor:
    """Stored bits as a tensor shaped like the parameter (one value is broadcast to every channel)."""
    t = torch.as_tensor(values, dtype=like.dtype)
    return t.expand(like.shape) if t.numel() == 1 else t.reshape(like.shape)


@torch.no_grad()
def apply(net: ApproxNet, cfg: dict) -> None:
    """Set ``net``'s hardware parameters to a :func:`snapshot` (integer bits give the plain quantizer)."""
    for name, m in net.approx_layers().items():
        c = cfg["layers"][name]
        m.q_w.copy_(_shaped(c["q_w"], m.q_w))
        m.q_f.copy_(_shaped(c["q_f"], m.q_f))
        if net.setup.dram:
            m.u_w.fill_(math.log10(max(c["p_w"], P_RANGE[0])))
            m.u_f.fill_(math.log10(max(c["p_f"], P_RANGE[0])))
    for key, b in net.boundaries.items():
        b.u.fill_(math.log10(max(cfg["boundaries"][key], P_RANGE[0])))


@torch.no_grad()
def accuracy_pct(net: nn.Module, x: torch.Tensor, y: torch.Tensor, mode: str = "expected", seed: int = 0,
                 batch_size: int = 250) -> float:
    """Top-1 (%) with fresh, seeded DRAM errors of ``mode`` (the same seed gives the same errors)."""
    if isinstance(net, ApproxNet):
        net.set_mode(mode, seed)
    net.eval()
    correct = sum(int((net(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
                  for i in range(0, len(y), batch_size))
    return 100.0 * correct / len(y)


# --------------------------------------------------------------------------- learning


@dataclass
class Learned:
    """Result of :func:`learn`: the final and the last feasible snapped configurations and a trace."""

    final: dict
    feasible: dict | None
    trace: pd.DataFrame
    lambdas: dict
    seconds: float
    original_select_pct: float


def _regularisers(net: ApproxNet) -> tuple[torch.Tensor, torch.Tensor]:
    rq = sum((m.q_w.clamp(min=0) ** 2).sum() + (m.q_f.clamp(min=0) ** 2).sum() for m in net.approx_layers().values())
    if not net.setup.dram:
        return rq, torch.zeros(())
    rp = sum(1.0 / m.ber("w") + (1.0 / m.ber("f") if m.fm_dram else 0.0) for m in net.approx_layers().values())
    rp = rp + sum(1.0 / b.ber() for b in net.boundaries.values())
    return rq, rp


def learn(net: ApproxNet, x_train: torch.Tensor, y_train: torch.Tensor, x_select: torch.Tensor,
          y_select: torch.Tensor, epochs: int = 1, batch_size: int = 128, lr: float = 0.1, check_every: int = 10,
          reg_share: float = REG_SHARE, seed: int = 0, lambdas: dict | None = None, step0: int = 0,
          original_select_pct: float | None = None, progress: bool = True) -> Learned:
    """Adam on the hardware parameters (weights frozen) over ``epochs`` passes of the training images.

    Every ``check_every`` steps (and at the end) the snapped configuration is evaluated on the
    selection images (expected-mode errors); ``feasible`` is the last one within 1 pp of the
    original network's selection accuracy (Eq. 4.13), ``None`` if none was. ``reg_share``: each
    regulariser's weight as a share of the initial cross-entropy (module docstring). A second call on
    the same ``net`` continues from its current parameters; pass the first call's ``lambdas`` to keep
    the objective, ``step0`` to number the trace on and ``original_select_pct`` to skip re-measuring the
    float network.
    """
    from tqdm.auto import tqdm

    from axlib import config as axconfig

    t0 = time.perf_counter()
    original = original_select_pct if original_select_pct is not None else accuracy_pct(_plain(net), x_select, y_select)
    params = net.hardware_parameters()
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n_steps = step0 + epochs * math.ceil(len(y_train) / batch_size)
    rows, feasible, step = [], None, step0
    bar = tqdm(total=n_steps - step0, desc=f"learn {net.setup.fmt}/{net.setup.granularity}", disable=not progress,
               mininterval=axconfig.PROGRESS_INTERVAL_S)
    net.set_mode("expected", seed)
    for _ in range(epochs):
        order = torch.randperm(len(y_train), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            net.eval()
            ce = F.cross_entropy(net(x_train[idx]), y_train[idx])
            rq, rp = _regularisers(net)
            if lambdas is None:
                c0, q0, p0 = float(ce.detach()), float(rq.detach()), float(rp.detach())
                lambdas = {"lambda_q": reg_share * c0 / q0, "lambda_p": reg_share * c0 / p0 if p0 > 0 else 0.0}
            loss = ce + lambdas["lambda_q"] * rq + lambdas["lambda_p"] * rp
            opt.zero_grad()
            loss.backward()
            opt.step()
            project(net)
            step += 1
            bar.update(1)
            row = {"step": step, "ce": float(ce.detach()), "reg_q": float(rq.detach()), "reg_p": float(rp.detach()),
                   **_means(net)}
            if step % check_every == 0 or step == n_steps:
                cfg = snapshot(net)
                row["select_pct"] = _evaluate_snapped(net, cfg, x_select, y_select, seed)
                if row["select_pct"] >= original - 1.0:
                    feasible = cfg
            rows.append(row)
    bar.close()
    final = snapshot(net)
    return Learned(final, feasible, pd.DataFrame(rows), lambdas or {}, time.perf_counter() - t0, original)


@torch.no_grad()
def project(net: ApproxNet) -> None:
    """Keep bits in ``[0, max_bits]`` and log-BERs in ``log10(P_RANGE)`` (projected gradient descent)."""
    lo, hi = math.log10(P_RANGE[0]), math.log10(P_RANGE[1])
    for m in net.approx_layers().values():
        m.q_w.clamp_(0, max_bits(net.setup.fmt, "w"))
        m.q_f.clamp_(0, max_bits(net.setup.fmt, "f"))
        m.u_w.clamp_(lo, hi)
        m.u_f.clamp_(lo, hi)
    for b in net.boundaries.values():
        b.u.clamp_(lo, hi)


def _evaluate_snapped(net: ApproxNet, cfg: dict, x, y, seed) -> float:
    saved = snapshot(net, snapped=False)
    apply(net, cfg)
    acc = accuracy_pct(net, x, y, "expected", seed)
    apply(net, saved)
    net.set_mode("expected", seed)
    return acc


def _means(net: ApproxNet) -> dict:
    layers = list(net.approx_layers().values())
    out = {"mean_q_w": float(np.mean([float(m.q_w.detach().mean()) for m in layers])),
           "mean_q_f": float(np.mean([float(m.q_f.detach().mean()) for m in layers]))}
    if net.setup.dram:
        out["mean_p_w"] = float(np.mean([float(m.ber("w").detach()) for m in layers]))
        out["mean_p_f"] = float(np.mean([float(m.ber("f").detach()) for m in layers if m.fm_dram] or [0.0]))
    return out


def _plain(net: ApproxNet) -> nn.Module:
    """The original float network inside ``net`` (convs unwrapped, boundary hooks off)."""
    plain = copy.deepcopy(net.net)
    for name in conv_names_approx(plain):
        parent, child = _split(plain, name)
        setattr(parent, child, getattr(parent, child).conv)
    for mod in plain.modules():
        mod._forward_pre_hooks.clear()
        mod._forward_hooks.clear()
    return plain.eval()


def conv_names_approx(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, ApproxConv)]


def fine_tune(net: ApproxNet, cfg: dict, x_train: torch.Tensor, y_train: torch.Tensor, iterations: int = 30,
              lr: float = 1e-4, decay_every: int = 10, batch_size: int = 128, seed: int = 0,
              progress: bool = True) -> dict:
    """§4.5.2 fine-tuning: hardware parameters fixed at ``cfg``, weights trained (Adam, ``lr`` × 0.1
    every ``decay_every`` iterations; straight-through gradients through the quantizers). In place."""
    from tqdm.auto import tqdm

    from axlib import config as axconfig

    t0 = time.perf_counter()
    apply(net, cfg)
    hw = net.hardware_parameters()
    for p in hw:
        p.requires_grad_(False)
    weights = [m.conv.weight for m in net.approx_layers().values()] + [net.net.linear.weight, net.net.linear.bias]
    for p in weights:
        p.requires_grad_(True)
    opt = torch.optim.Adam(weights, lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=decay_every, gamma=0.1)
    gen = torch.Generator().manual_seed(seed + 1)
    net.set_mode("expected", seed + 1)
    losses = []
    for _ in tqdm(range(iterations), desc="fine-tune", disable=not progress, mininterval=axconfig.PROGRESS_INTERVAL_S):
        idx = torch.randint(len(y_train), (batch_size,), generator=gen)
        net.eval()
        loss = F.cross_entropy(net(x_train[idx]), y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss))
    for p in weights:
        p.requires_grad_(False)
    for p in hw:
        p.requires_grad_(True)
    return {"ft_iterations": iterations, "ft_final_loss": losses[-1] if losses else float("nan"),
            "ft_seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- tidy tables


def layer_table(net: ApproxNet, cfg: dict, sizes: pd.DataFrame) -> pd.DataFrame:
    """One row per conv layer: index, name, mean snapped bits and BERs, word bits, tensor sizes, MACs."""
    rows = []
    for i, (name, c) in enumerate(cfg["layers"].items(), start=1):
        qw, qf = np.atleast_1d(c["q_w"]), np.atleast_1d(c["q_f"])
        rows.append({"index": i, "layer": name, "q_w": float(qw.mean()), "q_f": float(qf.mean()),
                     "q_w_max": float(qw.max()), "q_f_max": float(qf.max()), "p_w": c["p_w"], "p_f": c["p_f"]})
    out = pd.DataFrame(rows).merge(sizes, on="layer", how="left")
    fmt = net.setup.fmt
    out["n_w"] = [float(learnable.word_bits(torch.tensor(q), fmt, INT_BITS["w"])) for q in out["q_w_max"]]
    out["n_f"] = [float(learnable.word_bits(torch.tensor(q), fmt, INT_BITS["f"])) for q in out["q_f_max"]]
    return out


def filter_table(cfg: dict) -> pd.DataFrame:
    """One row per (layer, operand, channel) with its snapped bits (filter-wise granularity)."""
    rows = []
    for i, (name, c) in enumerate(cfg["layers"].items(), start=1):
        for operand in ("w", "f"):
            for ch, b in enumerate(np.atleast_1d(c[f"q_{operand}"])):
                rows.append({"index": i, "layer": name, "operand": operand, "channel": ch, "bits": float(b)})
    return pd.DataFrame(rows)


@torch.no_grad()
def tensor_sizes(model: nn.Module, x: torch.Tensor) -> pd.DataFrame:
    """Per conv layer, batch-1 element counts ``w_elems``, ``ifm_elems``, ``ofm_elems`` and ``macs``."""
    rows, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            def hook(mod, args, out, name=name):
                rows[name] = {"layer": name, "w_elems": mod.weight.numel(), "ifm_elems": args[0][0].numel(),
                              "ofm_elems": out[0].numel(),
                              "macs": out[0].numel() * mod.weight[0].numel()}
            hooks.append(m.register_forward_hook(hook))
    try:
        model.eval()(x[:1])
    finally:
        for h in hooks:
            h.remove()
    return pd.DataFrame(list(rows.values()))
