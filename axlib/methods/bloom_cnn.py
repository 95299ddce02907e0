"""Operand-pattern reuse in a CNN's multiplications (akhlaghi2020, thesis §2.5.2-2.5.3, Figs. 2.4-2.5).

Every multiplication of a convolutional or fully connected layer pairs an activation ``x`` with a
weight ``w`` (both IEEE-754 float32). Its *pattern* under ``apx_bit``-bit matching is the pair of
operand keys ``(a, b)``: the top ``apx_bit`` bits of each operand's bit pattern (sign, then the
8 exponent bits, then mantissa bits, §2.5.3; ``apx_bit = 32`` is exact matching), concatenated into
one ``2*apx_bit``-bit pattern key ``(a << apx_bit) | b`` (§2.5.4, Fig. 2.6). Order matters: the first
operand is always the activation, the second the weight (the multiplier's two ports).

Profiling (§2.5.2): the multiplications of LeNet on profiling images are counted per pattern; the
``N`` most frequent patterns are *stored*, either per layer (``scope="layer"``: one table of N
patterns for each layer) or once for the whole network (``scope="global"``: one table of N patterns
that every layer matches against). The *hit rate* is the fraction of all multiplications of other
(test) images whose pattern is stored (in its layer's table, or in the global table).

Counting without enumerating: a layer is treated as a convolution (a linear layer is a 1x1
convolution of an (N, F, 1, 1) input); the weight at tap ``pos = (c, p, q)`` of every output
channel multiplies every activation in the window of that tap. With ``H[pos, a]`` the number of
window activations of key ``a`` (:func:`axlib.kernels.reuse.window_histograms`) and ``M[pos, b]`` the
number of weights of key ``b`` at tap ``pos``, the multiplication count of pattern ``(a, b)`` is
``sum_pos H[pos, a] * M[pos, b]`` -- a matrix product. For ``apx_bit <= 12`` the keys have at most 12
bits and the full 2^apx x 2^apx count matrix is formed (*dense* path). For longer keys (exact
matching) only the top patterns are found (*sparse* path): a weight key that occurs at a single
tap has the counts of that tap's window histogram, so the top-K patterns of every weight key come
from the top-K keys of one window histogram; weight keys found at several taps are summed over
their taps explicitly. Both paths are exact (tested against a Python ``Counter`` over every
multiplication). Ties are broken by the smaller pattern key.

Shapes: activations are float32 (N, C, H, W) (linear inputs (N, F, 1, 1)); weights (O, C, kh, kw).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from axlib import validate
from axlib.kernels.reuse import out_size, window_histograms
from axlib.validate import ParameterError

#: Largest key width (bits per operand) that uses the dense count matrix (2^(2*12) = 16.8 M patterns).
DENSE_MAX_BITS = 12
SCOPES = ("layer", "global")

# --------------------------------------------------------------------------- published values (inputs, never outputs)

#: akhlaghi2020 §2.5.2 (text on Fig. 2.4): layer-based matching beats global matching, and the hit rate of
#: exact matching stays around 10 % with 50 stored patterns per layer.
THESIS_FIG_2_4 = {"layer_exact_hit_rate_at_50": 0.10, "source": "akhlaghi2020 §2.5.2, text on Fig. 2.4"}
#: akhlaghi2020 §2.5.3 (text on Fig. 2.5): hit rate with 50 stored patterns per layer.
THESIS_FIG_2_5 = {"hit_rate_at_50": {10: 0.571, 9: 0.826}, "source": "akhlaghi2020 §2.5.3, text on Fig. 2.5"}
#: MNIST networks of the zoo these pages profile; the first is the thesis's Fig. 2.3 network (§2.5.1), the default.
MNIST_MODELS = ("lenet_tinydnn", "lenet5")
#: LeNet/MNIST profiling set of the thesis: 5 % of the 60,000 training images, chosen at random (§2.7.2).
THESIS_PROFILE_FRACTION = 0.05


# --------------------------------------------------------------------------- keys


def check_apx_bit(apx_bit, name: str = "apx_bit") -> int:
    """``apx_bit`` as an int in [1, 32] (32 = exact matching)."""
    return validate.integer(name, apx_bit, 1, 32)


def operand_keys(x, apx_bit: int) -> np.ndarray:
    """Top ``apx_bit`` bits of each float32 operand's IEEE-754 pattern, as uint32 in [0, 2^apx_bit).

    ``x`` is converted to float32 first; the sign bit is the key's most significant bit."""
    apx_bit = check_apx_bit(apx_bit)
    bits = np.ascontiguousarray(np.asarray(x, dtype=np.float32)).view(np.uint32)
    return bits >> np.uint32(32 - apx_bit)


def pattern_keys(a_key, w_key, apx_bit: int) -> np.ndarray:
    """Concatenated pattern keys ``(a << apx_bit) | b`` as uint64 (broadcasting ``a_key`` against ``w_key``)."""
    apx_bit = check_apx_bit(apx_bit)
    return (np.asarray(a_key, dtype=np.uint64) << np.uint64(apx_bit)) | np.asarray(w_key, dtype=np.uint64)


def split_pattern_keys(keys, apx_bit: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pattern_keys`: (activation keys, weight keys) as uint32."""
    apx_bit = check_apx_bit(apx_bit)
    keys = np.asarray(keys, dtype=np.uint64)
    mask = np.uint64((1 << apx_bit) - 1)
    return (keys >> np.uint64(apx_bit)).astype(np.uint32), (keys & mask).astype(np.uint32)


def key_floor_value(key, apx_bit: int) -> np.ndarray:
    """The float32 whose low ``32 - apx_bit`` bits are zero and whose top bits are ``key`` (the pattern's
    operand with its unmatched bits cleared; equal to the operand itself when ``apx_bit = 32``)."""
    apx_bit = check_apx_bit(apx_bit)
    k = np.asarray(key, dtype=np.uint64).astype(np.uint32) << np.uint32(32 - apx_bit)
    return np.ascontiguousarray(k).view(np.float32)


# --------------------------------------------------------------------------- the network's multiplying layers


@dataclass(frozen=True)
class Layer:
    """A convolution (no padding, no groups) or a linear layer, as a convolution.

    ``weight``: float32 (O, C, kh, kw) (linear: (O, F, 1, 1)); ``bias``: float32 (O,) ; ``stride``: (sh, sw).
    """

    name: str
    weight: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    linear: bool

    @property
    def positions(self) -> int:
        """Number of weight taps P = C * kh * kw."""
        return int(np.prod(self.weight.shape[1:]))

    def out_hw(self, h: int, w: int) -> tuple[int, int]:
        return out_size(h, w, self.weight.shape[2], self.weight.shape[3], *self.stride)

    def mults_per_image(self, in_shape: tuple[int, int, int]) -> int:
        """Multiplications of one image with input shape (C, H, W)."""
        ho, wo = self.out_hw(in_shape[1], in_shape[2])
        return int(self.weight.shape[0] * self.positions * ho * wo)


def _layer_from_module(name: str, module: nn.Module) -> Layer:
    w = module.weight.detach().cpu().numpy().astype(np.float32)
    b = (module.bias.detach().cpu().numpy().astype(np.float32) if module.bias is not None
         else np.zeros(w.shape[0], np.float32))
    if isinstance(module, nn.Linear):
        return Layer(name, np.ascontiguousarray(w[:, :, None, None]), b, (1, 1), True)
    if (module.groups != 1 or any(p != 0 for p in module.padding) or any(d != 1 for d in module.dilation)
            or isinstance(module.padding, str)):
        raise ParameterError(f"layer {name}: only unpadded, undilated, ungrouped convolutions are supported "
                             f"(padding={module.padding}, dilation={module.dilation}, groups={module.groups})")
    return Layer(name, np.ascontiguousarray(w), b, tuple(module.stride), False)


def network_ops(model: nn.Module) -> list[tuple[str, object]]:
    """The model's forward as a list of ``("layer", Layer)``, ``("module", nn.Module)`` and ``("flatten", None)``.

    The model's direct children are run in order, with a flatten before the first linear layer that gets a
    4-D input (LeNet5Caffe: conv1, pool1, conv2, pool2, flatten, ip1, relu1, ip2). Tests check the result
    against ``model(x)``.
    """
    ops: list[tuple[str, object]] = []
    flat = False
    for name, child in model.named_children():
        if isinstance(child, nn.Conv2d | nn.Linear):
            if isinstance(child, nn.Linear) and not flat:
                ops.append(("flatten", None))
                flat = True
            ops.append(("layer", _layer_from_module(name, child)))
        else:
            ops.append(("module", child))
    if not any(kind == "layer" for kind, _ in ops):
        raise ParameterError("model has no Conv2d or Linear child to profile")
    return ops


def layers_of(model: nn.Module) -> list[Layer]:
    return [op for kind, op in network_ops(model) if kind == "layer"]


def _as_numpy_images(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 4:
        raise ParameterError(f"images must be a (N, C, H, W) array, got shape {x.shape}")
    return x


def run_network(model: nn.Module, x, layer_fn=None, batch_size: int = 500, collect: bool = False):
    """Forward pass where every Conv2d/Linear is computed by ``layer_fn(layer, x4) -> float64 sums`` (no bias).

    ``layer_fn=None``: exact arithmetic (float64 convolution of the float32 operands: exact products, float64
    sums). The bias is added in float64 and every layer output is rounded to float32 (the next layer's
    multiplier operands are float32). Pooling and ReLU run in torch float32.

    Returns ``(logits float32 (N, classes), inputs)`` where ``inputs[name]`` is the float32 (N, C, H, W) input
    of each layer when ``collect`` (else an empty dict).
    """
    ops = network_ops(model)
    x = _as_numpy_images(x)
    outs, inputs = [], {}
    for start in range(0, len(x), batch_size):
        h = torch.from_numpy(x[start:start + batch_size])
        for kind, op in ops:
            if kind == "module":
                with torch.no_grad():
                    h = op(h)
            elif kind == "flatten":
                h = torch.flatten(h, 1)
            else:
                x4 = h.numpy() if h.ndim == 4 else h.numpy()[:, :, None, None]
                x4 = np.ascontiguousarray(x4, dtype=np.float32)
                if collect:
                    inputs.setdefault(op.name, []).append(x4)
                if layer_fn is None:
                    y = F.conv2d(torch.from_numpy(x4).double(), torch.from_numpy(op.weight).double(),
                                 stride=op.stride).numpy()
                else:
                    y = layer_fn(op, x4)
                y = (y + op.bias.astype(np.float64)[None, :, None, None]).astype(np.float32)
                h = torch.from_numpy(y if not op.linear else y[:, :, 0, 0].copy())
        outs.append(h.numpy().astype(np.float32))
    inputs = {k: np.concatenate(v) for k, v in inputs.items()}
    return np.concatenate(outs), inputs


def exact_forward(model: nn.Module, x, batch_size: int = 500):
    """:func:`run_network` with exact arithmetic, collecting every layer's input."""
    return run_network(model, x, None, batch_size, collect=True)


def mults_per_image(model: nn.Module, image_shape=(1, 28, 28)) -> dict[str, int]:
    """Multiplications per image of every Conv2d/Linear layer (by a forward pass on one zero image)."""
    _, inputs = exact_forward(model, np.zeros((1, *image_shape), np.float32))
    return {lay.name: lay.mults_per_image(inputs[lay.name].shape[1:]) for lay in layers_of(model)}


# --------------------------------------------------------------------------- brute-force reference (small inputs)


def windows(x: np.ndarray, layer: Layer) -> np.ndarray:
    """im2col: (N*Ho*Wo, C*kh*kw) activations (float32) of every output position of ``layer``."""
    _, _, kh, kw = layer.weight.shape
    v = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::layer.stride[0], ::layer.stride[1]]
    n, c, ho, wo = v.shape[:4]
    return np.ascontiguousarray(v.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, c * kh * kw))


def all_multiplications(x: np.ndarray, layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """Every multiplication of ``layer`` on ``x`` as (activation, weight) float32 arrays of shape (M, K, O).

    Materialises M*K*O pairs: for tests and tiny inputs only."""
    cols = windows(x, layer)
    wm = layer.weight.reshape(layer.weight.shape[0], -1).T  # (K, O)
    a = np.broadcast_to(cols[:, :, None], cols.shape + (wm.shape[1],))
    w = np.broadcast_to(wm[None], a.shape)
    return a, w


# --------------------------------------------------------------------------- dense counting (apx_bit <= 12)


def _weight_matrix(layer: Layer, w_key: np.ndarray, n_keys: int, with_sums: bool):
    """M[pos, b] = number of weights of key b at tap pos (and their sum), each (P, n_keys)."""
    o, p = layer.weight.shape[0], layer.positions
    idx = (np.arange(p, dtype=np.int64)[None, :] * n_keys + w_key.reshape(o, p).astype(np.int64)).ravel()
    mc = np.bincount(idx, minlength=p * n_keys).reshape(p, n_keys)
    ms = (np.bincount(idx, weights=layer.weight.reshape(o, p).ravel().astype(np.float64), minlength=p * n_keys)
          .reshape(p, n_keys) if with_sums else None)
    return mc, ms


def pair_counts(x: np.ndarray, layer: Layer, apx_bit: int, with_sums: bool = False):
    """Dense pattern statistics of one layer on activations ``x`` (float32, (N, C, H, W)), ``apx_bit <= 12``.

    Returns ``(count, sums)``: ``count`` int64 (2^apx, 2^apx), ``count[a, b]`` = multiplications whose
    activation key is a and weight key b (flat index = pattern key); ``sums`` float64, the sum of their exact
    products (None unless ``with_sums``). Counts are exact (float64 matrix product of integers < 2^53).
    """
    apx_bit = check_apx_bit(apx_bit)
    if apx_bit > DENSE_MAX_BITS:
        raise ParameterError(f"apx_bit={apx_bit}: dense counting needs apx_bit <= {DENSE_MAX_BITS}")
    n_keys = 1 << apx_bit
    kh, kw = layer.weight.shape[2:]
    hc, hs = window_histograms(operand_keys(x, apx_bit).astype(np.uint16), x, kh, kw, layer.stride, n_keys)
    mc, ms = _weight_matrix(layer, operand_keys(layer.weight, apx_bit), n_keys, with_sums)
    count = np.rint(hc.T.astype(np.float64) @ mc.astype(np.float64)).astype(np.int64)
    sums = hs.T @ ms if with_sums else None
    return count, sums


def top_keys(counts: np.ndarray, n: int) -> np.ndarray:
    """Flat indices of the ``n`` largest positive entries, by decreasing count, ties by smaller index."""
    flat = np.asarray(counts).ravel()
    idx = np.flatnonzero(flat > 0)
    c = flat[idx]
    if idx.size > n:
        thr = np.partition(c, idx.size - n)[idx.size - n]
        sel = c >= thr
        idx, c = idx[sel], c[sel]
    return idx[np.lexsort((idx, -c))][:n].astype(np.uint64)


# --------------------------------------------------------------------------- sparse counting (any apx_bit)


def _top_k(values: np.ndarray, counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest counts (ties: smaller value first), sorted."""
    if counts.size > k:
        thr = np.partition(counts, counts.size - k)[counts.size - k]
        sel = counts >= thr
        values, counts = values[sel], counts[sel]
    order = np.lexsort((values, -counts))[:k]
    return values[order], counts[order]


class _Positions:
    """Window histograms of one layer's activation keys, one tap at a time (channel by channel)."""

    def __init__(self, x_key: np.ndarray, layer: Layer, offset: int):
        self.x_key, self.layer, self.offset = x_key, layer, offset
        _, _, self.kh, self.kw = layer.weight.shape
        self.ho, self.wo = layer.out_hw(x_key.shape[2], x_key.shape[3])

    def scan(self, wanted=None):
        """Yield ``(g, values, counts)`` (global tap id, sorted keys, counts > 0) for every tap (or those in ``wanted``)."""
        n, c_count, h, w = self.x_key.shape
        sh, sw = self.layer.stride
        for c in range(c_count):
            taps = [(p, q) for p in range(self.kh) for q in range(self.kw)
                    if wanted is None or self.offset + (c * self.kh + p) * self.kw + q in wanted]
            if not taps:
                continue
            u, inv = np.unique(self.x_key[:, c], return_inverse=True)
            inv = inv.reshape(n, h, w)
            for p, q in taps:
                win = inv[:, p:p + sh * (self.ho - 1) + 1:sh, q:q + sw * (self.wo - 1) + 1:sw]
                cnt = np.bincount(win.ravel(), minlength=u.size)
                nz = np.flatnonzero(cnt)
                yield self.offset + (c * self.kh + p) * self.kw + q, u[nz], cnt[nz]


def _weight_map(layers: list[Layer], offsets: list[int], apx_bit: int):
    """Sorted (beta, g, mu): weight key, global tap, number of output channels with that key at that tap."""
    betas, taps = [], []
    for lay, off in zip(layers, offsets):
        o, p = lay.weight.shape[0], lay.positions
        betas.append(operand_keys(lay.weight, apx_bit).reshape(o, p).ravel().astype(np.uint64))
        taps.append(np.tile(np.arange(p, dtype=np.int64) + off, o))
    b, g = np.concatenate(betas), np.concatenate(taps)
    order = np.lexsort((g, b))
    b, g = b[order], g[order]
    start = np.flatnonzero(np.r_[True, (b[1:] != b[:-1]) | (g[1:] != g[:-1])])
    mu = np.diff(np.r_[start, b.size])
    return b[start], g[start], mu


def _scope_positions(layers, x_keys, offsets):
    return [_Positions(xk, lay, off) for lay, xk, off in zip(layers, x_keys, offsets)]


def sparse_top_patterns(layers: list[Layer], xs: list[np.ndarray], apx_bit: int, n: int):
    """The ``n`` most frequent patterns over all multiplications of ``layers`` on activations ``xs`` (one table).

    Returns ``(keys uint64, counts int64)`` sorted by decreasing count (ties: smaller key). Any ``apx_bit``;
    memory grows with the number of weight keys found at several taps (few for exact float32 weights).
    """
    apx_bit = check_apx_bit(apx_bit)
    offsets = list(np.cumsum([0] + [lay.positions for lay in layers])[:-1])
    beta, g, mu = _weight_map(layers, offsets, apx_bit)
    ub, first, ntaps = np.unique(beta, return_index=True, return_counts=True)
    shared_betas = ub[ntaps > 1]
    shared = np.isin(beta, shared_betas)
    need_full = set(g[shared].tolist())
    # unshared weight keys grouped by (tap, multiplicity)
    ug = g[~shared]
    umu = mu[~shared]
    ubeta = beta[~shared]
    order = np.lexsort((ubeta, umu, ug))
    ug, umu, ubeta = ug[order], umu[order], ubeta[order]
    gstart = np.flatnonzero(np.r_[True, (ug[1:] != ug[:-1]) | (umu[1:] != umu[:-1])]) if ug.size else np.zeros(0, int)
    gstop = np.r_[gstart[1:], ug.size]
    by_tap: dict[int, list[tuple[int, int, int]]] = {}
    for s, e in zip(gstart, gstop):
        by_tap.setdefault(int(ug[s]), []).append((int(umu[s]), int(s), int(e)))
    cnt_l, size_l, alpha_l, set_l = [], [], [], []
    full = {}
    for src in _scope_positions(layers, [operand_keys(x, apx_bit) for x in xs], offsets):
        for tap, vals, cnts in src.scan():
            if tap in need_full:
                full[tap] = (vals.astype(np.uint64), cnts)
            groups = by_tap.get(tap)
            if not groups:
                continue
            ta, tc = _top_k(vals, cnts, n)
            for m, s, e in groups:
                cnt_l.append(m * tc)
                size_l.append(np.full(tc.size, e - s, dtype=np.int64))
                alpha_l.append(ta.astype(np.uint64))
                set_l.append(np.full(tc.size, s, dtype=np.int64) + (np.int64(e) << np.int64(32)))
    # shared weight keys: sum their taps' full histograms
    s_cnt, s_alpha, s_beta = [], [], []
    for b in shared_betas:
        sel = np.flatnonzero(beta == b)
        vals = np.concatenate([full[int(g[i])][0] for i in sel])
        cnts = np.concatenate([mu[i] * full[int(g[i])][1] for i in sel])
        uv, inv = np.unique(vals, return_inverse=True)
        tot = np.bincount(inv.ravel(), weights=cnts.astype(np.float64)).astype(np.int64)
        ta, tc = _top_k(uv, tot, n)
        s_cnt.append(tc)
        s_alpha.append(ta)
        s_beta.append(np.full(tc.size, b, dtype=np.uint64))
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)
    g_cnt, g_size, g_alpha, g_set = (cat(cnt_l, np.int64), cat(size_l, np.int64), cat(alpha_l, np.uint64),
                                     cat(set_l, np.int64))
    s_cnt, s_alpha, s_beta = cat(s_cnt, np.int64), cat(s_alpha, np.uint64), cat(s_beta, np.uint64)
    all_cnt = np.r_[g_cnt, s_cnt]
    if all_cnt.size == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    all_size = np.r_[g_size, np.ones(s_cnt.size, np.int64)]
    order = np.argsort(-all_cnt, kind="stable")
    cs = np.cumsum(all_size[order])
    i = int(np.searchsorted(cs, n))
    thr = all_cnt[order[min(i, order.size - 1)]]
    keys_l, cnts_l = [], []
    for j in np.flatnonzero(g_cnt >= thr):
        s, e = int(g_set[j] & 0xFFFFFFFF), int(g_set[j] >> 32)
        keys_l.append(pattern_keys(g_alpha[j], ubeta[s:e], apx_bit))
        cnts_l.append(np.full(e - s, g_cnt[j], dtype=np.int64))
    sel = s_cnt >= thr
    keys_l.append(pattern_keys(s_alpha[sel], s_beta[sel], apx_bit))
    cnts_l.append(s_cnt[sel])
    keys, cnts = np.concatenate(keys_l), np.concatenate(cnts_l)
    order = np.lexsort((keys, -cnts))[:n]
    return keys[order], cnts[order]


def sparse_pattern_counts(layers: list[Layer], xs: list[np.ndarray], apx_bit: int, keys) -> np.ndarray:
    """Multiplication counts of the given pattern keys over ``layers`` on activations ``xs`` (int64, per key)."""
    apx_bit = check_apx_bit(apx_bit)
    keys = np.asarray(keys, dtype=np.uint64)
    out = np.zeros(keys.size, dtype=np.int64)
    if keys.size == 0:
        return out
    offsets = list(np.cumsum([0] + [lay.positions for lay in layers])[:-1])
    beta, g, mu = _weight_map(layers, offsets, apx_bit)
    ka, kb = split_pattern_keys(keys, apx_bit)
    lo = np.searchsorted(beta, kb.astype(np.uint64), side="left")
    hi = np.searchsorted(beta, kb.astype(np.uint64), side="right")
    req_key = np.repeat(np.arange(keys.size), hi - lo)
    req_row = np.concatenate([np.arange(a, b) for a, b in zip(lo, hi)]) if req_key.size else np.zeros(0, np.int64)
    req_g, req_mu, req_a = g[req_row], mu[req_row], ka[req_key].astype(np.uint64)
    wanted = set(req_g.tolist())
    for src in _scope_positions(layers, [operand_keys(x, apx_bit) for x in xs], offsets):
        for tap, vals, cnts in src.scan(wanted):
            sel = np.flatnonzero(req_g == tap)
            pos = np.searchsorted(vals.astype(np.uint64), req_a[sel])
            pos = np.minimum(pos, vals.size - 1)
            found = vals.astype(np.uint64)[pos] == req_a[sel]
            np.add.at(out, req_key[sel], np.where(found, cnts[pos] * req_mu[sel], 0))
    return out


# --------------------------------------------------------------------------- hit rates (Figs. 2.4, 2.5)


def check_profile_params(apx_bits, n_max: int, n_profile: int, n_test: int, seed: int, scopes) -> list[int]:
    """Validate the hit-rate experiment's parameters (ParameterError names the parameter and range)."""
    apx_bits = validate.unique("apx_bits", validate.integers("apx_bits", apx_bits, 1, 32))
    validate.integer("n_max", n_max, 1, 10_000)
    validate.integer("n_profile", n_profile, 1, 60_000)
    validate.integer("n_test", n_test, 1, 10_000)
    validate.integer("seed", seed, 0, 2**31)
    validate.choices("scopes", scopes, SCOPES)
    return apx_bits


def check_models(models) -> list[str]:
    """Validate a list of MNIST zoo networks (names from :data:`MNIST_MODELS`, no repeats, at least one);
    returns it as a list. The first one is the page's main network (its claims are checked on it)."""
    return list(validate.unique("models", validate.choices("models", models, MNIST_MODELS)))


def mnist_sets(n_profile: int, n_test: int, seed: int):
    """(profiling images, test images, test labels): ``n_profile`` random MNIST training images (the profiling
    set, thesis §2.7.2) and ``n_test`` random MNIST test images (disjoint by construction), scaled x/256."""
    from axlib import data

    xp, _ = data.tensors("mnist", "train", "scale", indices=data.subset_indices(60_000, n_profile, seed))
    xt, yt = data.tensors("mnist", "test", "scale", indices=data.subset_indices(10_000, n_test, seed))
    return xp.numpy(), xt.numpy(), yt.numpy()


def _scope_tables(layers, x_prof, x_test, apx_bit: int, n_layer: int, n_global: int, scopes):
    """{(scope, table): (keys, count_profile, count_test per layer (L, n))} for one key width."""
    names = [lay.name for lay in layers]
    out = {}
    if apx_bit <= DENSE_MAX_BITS:
        gp = None
        tables = {}
        for lay in layers:
            cp, _ = pair_counts(x_prof[lay.name], lay, apx_bit)
            ct, _ = pair_counts(x_test[lay.name], lay, apx_bit)
            tables[lay.name] = ct
            if "layer" in scopes:
                k = top_keys(cp, n_layer)
                out[("layer", lay.name)] = (k, cp.ravel()[k], ct.ravel()[k][None, :])
            if "global" in scopes:
                gp = cp if gp is None else gp + cp
        if "global" in scopes:
            k = top_keys(gp, n_global)
            out[("global", "all")] = (k, gp.ravel()[k], np.stack([tables[nm].ravel()[k] for nm in names]))
        return out
    if "layer" in scopes:
        for lay in layers:
            k, cp = sparse_top_patterns([lay], [x_prof[lay.name]], apx_bit, n_layer)
            ct = sparse_pattern_counts([lay], [x_test[lay.name]], apx_bit, k)
            out[("layer", lay.name)] = (k, cp, ct[None, :])
    if "global" in scopes:
        k, cp = sparse_top_patterns(layers, [x_prof[nm] for nm in names], apx_bit, n_global)
        ct = np.stack([sparse_pattern_counts([lay], [x_test[lay.name]], apx_bit, k) for lay in layers])
        out[("global", "all")] = (k, cp, ct)
    return out


def hit_rate_tables(model: nn.Module, x_profile, x_test, apx_bits, n_max: int, scopes=SCOPES, progress=None):
    """Hit rates of the N most frequent patterns (N = 1..n_max per layer; global tables up to n_max * layers).

    Returns two long tables:

    - ``curves``: one row per (apx_bit, scope, n_patterns, layer): ``hits_profile``, ``mults_profile``,
      ``hits_test``, ``mults_test`` (multiplications of that layer, or of the network for layer ``all``).
      For ``scope="layer"`` every layer stores its own N patterns (row ``all`` sums the layers); for
      ``scope="global"`` one table of N patterns serves all layers.
    - ``patterns``: the stored patterns in rank order: apx_bit, scope, table, rank, key, activation and weight
      keys and their cleared-low-bit float values, ``count_profile``, ``count_test`` (summed over layers).
    """
    layers = layers_of(model)
    names = [lay.name for lay in layers]
    _, xp = exact_forward(model, x_profile)
    _, xt = exact_forward(model, x_test)
    mp = {nm: layers[i].mults_per_image(xp[nm].shape[1:]) * len(xp[nm]) for i, nm in enumerate(names)}
    mt = {nm: layers[i].mults_per_image(xt[nm].shape[1:]) * len(xt[nm]) for i, nm in enumerate(names)}
    n_global = n_max * len(layers)
    curves, pats = [], []
    for apx in apx_bits:
        tabs = _scope_tables(layers, xp, xt, apx, n_max, n_global, scopes)
        for (scope, table), (keys, cprof, ctest) in tabs.items():
            a, b = split_pattern_keys(keys, apx)
            pats.append(pd.DataFrame({
                "apx_bit": apx, "scope": scope, "table": table, "rank": np.arange(1, keys.size + 1),
                "key": keys, "a_key": a, "w_key": b, "a_value": key_floor_value(a, apx), "w_value": key_floor_value(b, apx),
                "count_profile": cprof, "count_test": ctest.sum(0)}))
        for scope in scopes:
            nmax = n_max if scope == "layer" else n_global
            ns = np.arange(1, nmax + 1)
            per_layer_prof, per_layer_test = {}, {}
            if scope == "layer":
                for nm in names:
                    _, cprof, ctest = tabs[("layer", nm)]
                    per_layer_prof[nm] = _cum_at(cprof, ns)
                    per_layer_test[nm] = _cum_at(ctest[0], ns)
            else:
                keys, cprof, ctest = tabs[("global", "all")]
                for i, nm in enumerate(names):
                    # profile hits per layer are not kept for the global table: only the network total
                    per_layer_test[nm] = _cum_at(ctest[i], ns)
                tot_prof = _cum_at(cprof, ns)
            for nm in names:
                curves.append(pd.DataFrame({
                    "apx_bit": apx, "scope": scope, "n_patterns": ns, "layer": nm,
                    "hits_profile": per_layer_prof[nm] if scope == "layer" else -1, "mults_profile": mp[nm],
                    "hits_test": per_layer_test[nm], "mults_test": mt[nm]}))
            curves.append(pd.DataFrame({
                "apx_bit": apx, "scope": scope, "n_patterns": ns, "layer": "all",
                "hits_profile": sum(per_layer_prof.values()) if scope == "layer" else tot_prof,
                "mults_profile": sum(mp.values()), "hits_test": sum(per_layer_test.values()),
                "mults_test": sum(mt.values())}))
        if progress is not None:
            progress(apx)
    curves = pd.concat(curves, ignore_index=True)
    curves["hit_rate_test"] = curves["hits_test"] / curves["mults_test"]
    curves["hit_rate_profile"] = np.where(curves["hits_profile"] >= 0, curves["hits_profile"] / curves["mults_profile"],
                                          np.nan)
    return curves, pd.concat(pats, ignore_index=True)


def _cum_at(counts: np.ndarray, ns: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``counts`` at N = ns (saturating beyond the number of patterns)."""
    cs = np.r_[0, np.cumsum(np.asarray(counts, dtype=np.int64))]
    return cs[np.minimum(ns, counts.size)]


def hit_rate_experiment(apx_bits, n_max: int, n_profile: int, n_test: int, seed: int = 0, scopes=SCOPES,
                        model_name: str = "lenet5", progress=None):
    """Figs. 2.4/2.5: the cached zoo network ``model_name`` (one of :data:`MNIST_MODELS`), ``n_profile``
    profiling images, ``n_test`` test images.

    Returns ``(curves, patterns, meta)``; meta holds the model's test accuracy and the image counts.
    """
    from axlib.models import get_model

    apx_bits = check_profile_params(apx_bits, n_max, n_profile, n_test, seed, scopes)
    model, info = get_model(model_name, progress=False)
    xp, xt, _ = mnist_sets(n_profile, n_test, seed)
    curves, pats = hit_rate_tables(model, xp, xt, apx_bits, n_max, scopes, progress)
    meta = {"model": model_name, "model_test_accuracy": info.get("test_accuracy"), "n_profile": n_profile,
            "n_test": n_test, "mults_per_image": mults_per_image(model)}
    return curves, pats, meta
