"""Convolutional and binarized slice generators (akhlaghi2020 ch. 5, Eqs. 5.1, 5.5, 5.6).

A conv weight ``l`` of shape ``(n_f, k, h, w)`` is cut into ⌈n_f/n̂_f⌉·⌈k/k̂⌉·⌈h/ĥ⌉·⌈w/ŵ⌉ slices of shape
``(n̂_f, k̂, ĥ, ŵ)`` starting at ``l[0:n̂_f, 0:k̂, 0:ĥ, 0:ŵ]`` (§5.3.2); slices that run past the layer's
edge are generated whole and cropped (footnote 1 of §5.3.2). Slice ``i`` of the grid
``(g_f, g_k, g_h, g_w)`` is numbered row-major: ``i = ((f·g_k + c)·g_h + y)·g_w + x``.

- **CSG** (Eq. 5.1): ŝ_i = Reshape(A·c_i) with one trainable ``A`` of shape ``(P, n_c)``,
  ``P = n̂_f·k̂·ĥ·ŵ``, shared by every replaced layer, and one trainable code ``c_i ∈ ℝ^{n_c}`` per slice.
  Reshape is row-major over ``(n̂_f, k̂, ĥ, ŵ)``.
- **BSG** (§5.5, Eq. 5.5): row ``j`` of ``A_BSG`` is ``roll(b, j)`` of one fixed random base vector
  ``b ∈ {±1}^{n_c}`` (circular right shift by ``j``); the codes are trained as floats and used as
  ``sign(c)`` (straight-through gradient); ``W_{j,s} = Σ_v roll(b, j)[v]·sign(c_s)[v]``, integers in
  ``[-n_c, n_c]``, scaled by ``1/√n_c`` here (batch norm follows every replaced conv, so the scale
  does not matter; it keeps the initial activations at a sane size).
- Eq. 5.6 (:func:`bsg_weights_xor`) computes the same integers from packed bits (+1 → 1, −1 → 0):
  XOR, then a popcount. With that encoding equal bits (XOR 0) are a product of +1, so the inner
  product is ``count_zeros − count_ones``; the thesis prints ``count_ones − count_zeros``, which is
  the negated weight (a global sign, absorbed by the following batch norm's γ). Both are provided
  and tested against Eq. 5.5.

:func:`convert` returns a copy of a network whose chosen convs are :class:`SlicedConv2d` layers
sharing one :class:`SliceGenerator` (``model.slice_generator``), initialised from the pretrained
slices by a truncated SVD (``init="svd"``, CSG only) or at random (``init="scratch"``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from axlib import validate

KINDS = ("csg", "bsg")
INITS = ("svd", "scratch")
#: Which convs a network replaces: every conv but the first (ResNets, §5.7.1) or the first pointwise
#: conv of each inverted-residual block (MobileNetV2, §5.7.1 and §5.7.7).
LAYER_RULES = ("all_but_first", "first_pointwise")


def check_slice_shape(slice_shape) -> tuple[int, int, int, int]:
    """``(n̂_f, k̂, ĥ, ŵ)`` as four positive ints, or a ParameterError."""
    shape = validate.integers("slice_shape", slice_shape, lo=1)
    if len(shape) != 4:
        raise validate.ParameterError(f"slice_shape must have 4 entries (n_f, k, h, w), got {list(slice_shape)}")
    return tuple(shape)


def check_n_c(n_c) -> int:
    """Code length ``n_c`` ≥ 1."""
    return validate.integer("n_c", n_c, lo=1, hi=1 << 20)


def grid(weight_shape: Sequence[int], slice_shape: Sequence[int], name: str = "conv") -> tuple[int, int, int, int]:
    """Slices per dimension ``(⌈n_f/n̂_f⌉, ⌈k/k̂⌉, ⌈h/ĥ⌉, ⌈w/ŵ⌉)`` of a conv weight (§5.3.2).

    A slice dimension larger than the layer's (e.g. a 3x3 slice on a 1x1 conv) does not fit: most of
    every slice would be cropped away, so it is a ParameterError naming the layer.
    """
    slice_shape = check_slice_shape(slice_shape)
    if len(weight_shape) != 4:
        raise validate.ParameterError(f"{name}: weight shape {list(weight_shape)} is not (n_f, k, h, w)")
    for axis, dim, s in zip(("n_f", "k", "h", "w"), weight_shape, slice_shape):
        if s > dim:
            raise validate.ParameterError(
                f"slice shape {list(slice_shape)} does not fit layer {name} with weight shape {list(weight_shape)}: "
                f"slice {axis} = {s} > layer {axis} = {dim}")
    return tuple(-(-d // s) for d, s in zip(weight_shape, slice_shape))


def n_slices(weight_shape: Sequence[int], slice_shape: Sequence[int], name: str = "conv") -> int:
    """Number of slices of one conv weight (partial slices count whole)."""
    return int(np.prod(grid(weight_shape, slice_shape, name)))


def cut(weight: torch.Tensor, slice_shape: Sequence[int], name: str = "conv") -> torch.Tensor:
    """The slices of ``weight`` as rows ``(n_slices, P)`` in slice order, zero-padded past the edges."""
    g = grid(weight.shape, slice_shape, name)
    s = tuple(slice_shape)
    padded = weight.new_zeros(tuple(gi * si for gi, si in zip(g, s)))
    padded[:weight.shape[0], :weight.shape[1], :weight.shape[2], :weight.shape[3]] = weight
    blocks = padded.reshape(g[0], s[0], g[1], s[1], g[2], s[2], g[3], s[3]).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return blocks.reshape(-1, int(np.prod(s)))


def assemble(slices: torch.Tensor, weight_shape: Sequence[int], slice_shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`cut`: rows ``(n_slices, P)`` → the weight ``weight_shape`` (partial slices cropped)."""
    g = grid(weight_shape, slice_shape)
    s = tuple(slice_shape)
    blocks = slices.reshape(*g, *s).permute(0, 4, 1, 5, 2, 6, 3, 7)
    full = blocks.reshape(*(gi * si for gi, si in zip(g, s)))
    return full[:weight_shape[0], :weight_shape[1], :weight_shape[2], :weight_shape[3]]


class _SignSTE(torch.autograd.Function):
    """sign() with +1 at 0 in the forward pass; identity gradient (straight-through) backward."""

    @staticmethod
    def forward(ctx, x):
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad):
        return grad


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)`` in {−1, +1} (0 ↦ +1) with a straight-through gradient (§5.5.1)."""
    return _SignSTE.apply(x)


def bsg_matrix(base: torch.Tensor, n_rows: int) -> torch.Tensor:
    """``A_BSG`` ``(n_rows, n_c)``: row ``j`` is ``roll(base, j)`` (circular right shift, §5.5.2)."""
    n_c = base.numel()
    idx = (torch.arange(n_c).view(1, -1) - torch.arange(n_rows).view(-1, 1)) % n_c
    return base[idx]


def bsg_weights(base: torch.Tensor, codes: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Eq. (5.5) in integers: ``W[s, j] = Σ_v roll(base, j)[v]·sign(codes[s])[v]``, shape ``(S, n_rows)``.

    ``base`` ``(n_c,)`` in {±1}; ``codes`` ``(S, n_c)`` (floats, their sign is used).
    """
    return sign_ste(codes) @ bsg_matrix(base, n_rows).T


def pack_bits(pm1: np.ndarray) -> np.ndarray:
    """±1 vectors ``(..., n_c)`` → packed 16-bit words ``(..., ⌈n_c/16⌉)`` (+1 → bit 1, bit v of the
    vector at bit ``v % 16`` of word ``v // 16``) as the accelerator stores them (§5.6.2)."""
    bits = (np.asarray(pm1) > 0).astype(np.uint16)
    n_c = bits.shape[-1]
    pad = (-n_c) % 16
    bits = np.concatenate([bits, np.zeros(bits.shape[:-1] + (pad,), np.uint16)], axis=-1)
    words = bits.reshape(*bits.shape[:-1], -1, 16)
    return (words << np.arange(16, dtype=np.uint16)).sum(axis=-1).astype(np.uint16)


def _roll_bits(words: np.ndarray, n_c: int, j: int) -> np.ndarray:
    bits = ((words[..., :, None] >> np.arange(16, dtype=np.uint16)) & 1).reshape(*words.shape[:-1], -1)[..., :n_c]
    return pack_bits(np.where(np.roll(bits, j, axis=-1) > 0, 1, -1))


def bsg_weights_xor(base_words: np.ndarray, code_words: np.ndarray, n_c: int, n_rows: int,
                    as_printed: bool = False) -> np.ndarray:
    """Eq. (5.6) on packed bits: ``BCX = CV ⊕ roll(BSG, j)``, ``W = count_zeros(BCX) − count_ones(BCX)``.

    ``base_words`` ``(⌈n_c/16⌉,)`` and ``code_words`` ``(S, ⌈n_c/16⌉)`` uint16 from :func:`pack_bits`;
    returns int64 ``(S, n_rows)`` equal to :func:`bsg_weights`. ``as_printed=True`` returns the
    thesis's ``count_ones − count_zeros`` (the negation; see the module docstring). Padding bits of
    the last word are zero in both operands, so they XOR to 0 and are not counted.
    """
    code_words = np.atleast_2d(np.asarray(code_words, np.uint16))
    out = np.empty((code_words.shape[0], n_rows), np.int64)
    for j in range(n_rows):
        ones = np.bitwise_count(code_words ^ _roll_bits(np.asarray(base_words, np.uint16), n_c, j)).sum(axis=-1)
        out[:, j] = (2 * ones - n_c) if as_printed else (n_c - 2 * ones)
    return out


class SliceGenerator(nn.Module):
    """The network-wide generator: CSG (trainable ``A`` ``(P, n_c)``) or BSG (fixed ±1 base ``(n_c,)``).

    :meth:`slices` maps codes ``(S, n_c)`` to slices ``(S, P)``: ``codes @ Aᵀ`` (Eq. 5.1) or, for BSG,
    ``sign(codes) @ A_BSGᵀ / √n_c`` (Eq. 5.5).
    """

    def __init__(self, kind: str, slice_shape: Sequence[int], n_c: int, seed: int = 0):
        super().__init__()
        self.kind = validate.choice("kind", kind, KINDS)
        self.slice_shape = check_slice_shape(slice_shape)
        self.n_c = check_n_c(n_c)
        self.P = int(np.prod(self.slice_shape))
        gen = torch.Generator().manual_seed(seed)
        if kind == "csg":
            self.A = nn.Parameter(torch.randn(self.P, n_c, generator=gen) / math.sqrt(n_c))
        else:
            self.register_buffer("base", torch.where(torch.rand(n_c, generator=gen) < 0.5, -1.0, 1.0))
            self.register_buffer("A_bsg", bsg_matrix(self.base, self.P), persistent=False)

    def slices(self, codes: torch.Tensor) -> torch.Tensor:
        if self.kind == "csg":
            return codes @ self.A.T
        return (sign_ste(codes) @ self.A_bsg.T) / math.sqrt(self.n_c)

    def state_version(self) -> int:
        return self.A._version if self.kind == "csg" else 0

    def extra_repr(self) -> str:
        return f"kind={self.kind}, slice_shape={list(self.slice_shape)}, n_c={self.n_c}"


class SlicedConv2d(nn.Module):
    """A conv whose weight is assembled from generated slices (Eq. 5.1 / 5.5); bias and conv
    arguments as the conv it replaces. Trainable here: ``codes`` ``(S, n_c)`` (+ ``bias``).

    The weight is rebuilt once per forward pass in training mode; in eval mode it is cached and
    rebuilt only after the codes or the generator changed (their tensor versions) or when a gradient
    is needed. ``builds`` counts the rebuilds.
    """

    def __init__(self, conv: nn.Conv2d, generator: SliceGenerator, name: str = "conv"):
        super().__init__()
        self.weight_shape = tuple(conv.weight.shape)
        self.grid = grid(self.weight_shape, generator.slice_shape, name)
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.codes = nn.Parameter(torch.zeros(int(np.prod(self.grid)), generator.n_c))
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())
        object.__setattr__(self, "generator", generator)  # shared, registered once on the network root
        self.builds = 0
        self._cache: tuple | None = None

    def weight(self) -> torch.Tensor:
        """The assembled weight ``weight_shape`` (cached in eval mode, see the class docstring)."""
        gen = self.generator
        key = (self.codes._version, gen.state_version())
        need_grad = torch.is_grad_enabled() and (self.codes.requires_grad or any(p.requires_grad for p in gen.parameters()))
        if not self.training and not need_grad and self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        w = assemble(gen.slices(self.codes), self.weight_shape, gen.slice_shape)
        self.builds += 1
        self._cache = (key, w.detach()) if not self.training and not need_grad else None
        return w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)

    def train(self, mode: bool = True):
        self._cache = None
        return super().train(mode)

    def extra_repr(self) -> str:
        return f"weight_shape={list(self.weight_shape)}, slices={self.codes.shape[0]}, grid={list(self.grid)}"


def target_convs(model: nn.Module, rule: str) -> list[str]:
    """Names of the convs a rule replaces (:data:`LAYER_RULES`), in module order."""
    validate.choice("layers", rule, LAYER_RULES)
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if rule == "all_but_first":
        return [n for n, _ in convs[1:]]
    return [n for n, m in convs if n.endswith(".conv1") and n.count(".") == 2 and m.kernel_size == (1, 1)]


def _split(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    parent, _, child = name.rpartition(".")
    return (model.get_submodule(parent) if parent else model), child


@dataclass(frozen=True)
class SvdReport:
    """Truncated-SVD initialisation: singular values of the slice matrix ``(S, P)`` and what rank n_c keeps."""

    singular_values: np.ndarray
    n_c: int
    energy_kept: float          # Σ_{j<n_c} σ_j² / Σ σ_j²
    residual_fro: float         # ‖M − M_{n_c}‖_F of the (zero-padded) slice matrix


def svd_init(slices: torch.Tensor, n_c: int) -> tuple[torch.Tensor, torch.Tensor, SvdReport]:
    """Best rank-``n_c`` factorisation ``slices ≈ codes @ Aᵀ`` (Eckart-Young): ``A = V_k`` ``(P, n_c)``,
    ``codes = U_k Σ_k`` ``(S, n_c)``. When ``n_c`` exceeds the rank bound min(S, P) the extra
    columns are zero."""
    m = slices.double()
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    k = min(n_c, s.numel())
    a = torch.zeros(m.shape[1], n_c, dtype=torch.float64)
    codes = torch.zeros(m.shape[0], n_c, dtype=torch.float64)
    a[:, :k] = vh[:k].T
    codes[:, :k] = u[:, :k] * s[:k]
    total = float((s ** 2).sum())
    kept = float((s[:k] ** 2).sum())
    report = SvdReport(s.numpy(), n_c, kept / total if total > 0 else 1.0, math.sqrt(max(total - kept, 0.0)))
    return a.float(), codes.float(), report


def convert(model: nn.Module, kind: str = "csg", slice_shape: Sequence[int] = (16, 16, 3, 3), n_c: int = 128,
            layers: str = "all_but_first", init: str = "scratch", seed: int = 0) -> tuple[nn.Module, dict]:
    """A copy of ``model`` with the convs of rule ``layers`` replaced by slice-generated ones.

    ``init="svd"`` (CSG only): ``A`` and the codes from a truncated SVD of all the pretrained slices
    (zero-padded where partial; the report's numbers refer to that matrix). ``init="scratch"``: CSG
    ``A ~ N(0, 1/n_c)`` and codes ``~ N(0, 2/fan_in)`` (so generated weights have He variance); BSG
    codes ``~ N(0, 1)``. Returns ``(model, info)``: ``info`` has ``layers``, ``n_slices``, and for SVD
    the :class:`SvdReport`. Slice shapes that do not fit a layer are a ParameterError before any copy.
    """
    validate.choice("kind", kind, KINDS)
    validate.choice("init", init, INITS)
    slice_shape = check_slice_shape(slice_shape)
    n_c = check_n_c(n_c)
    if kind == "bsg" and init == "svd":
        raise validate.ParameterError("init='svd' is for CSG only: the BSG matrix is a fixed ±1 circulant; use "
                                      "init='scratch'")
    names = target_convs(model, layers)
    if not names:
        raise validate.ParameterError(f"layer rule {layers!r} selects no conv in {type(model).__name__}")
    for n in names:  # shapes checked before any work
        grid(model.get_submodule(n).weight.shape, slice_shape, n)
    net = copy.deepcopy(model)
    gen = SliceGenerator(kind, slice_shape, n_c, seed)
    torch_gen = torch.Generator().manual_seed(seed + 1)
    sliced = {}
    for n in names:
        parent, child = _split(net, n)
        conv = getattr(parent, child)
        layer = SlicedConv2d(conv, gen, n)
        fan_in = conv.weight[0].numel()
        with torch.no_grad():
            if kind == "csg":
                layer.codes.normal_(0.0, math.sqrt(2.0 / fan_in), generator=torch_gen)
            else:
                layer.codes.normal_(0.0, 1.0, generator=torch_gen)
        sliced[n] = (layer, conv.weight.detach())
        setattr(parent, child, layer)
    net.slice_generator = gen
    info = {"layers": names, "n_slices": sum(lay.codes.shape[0] for lay, _ in sliced.values())}
    if init == "svd":
        mats = [cut(w, slice_shape, n) for n, (_, w) in sliced.items()]
        a, codes, report = svd_init(torch.cat(mats), n_c)
        with torch.no_grad():
            gen.A.copy_(a)
            start = 0
            for lay, _ in sliced.values():
                lay.codes.copy_(codes[start:start + lay.codes.shape[0]])
                start += lay.codes.shape[0]
        info["svd"] = report
    return net, info


def sliced_layers(model: nn.Module) -> dict[str, SlicedConv2d]:
    return {n: m for n, m in model.named_modules() if isinstance(m, SlicedConv2d)}


def count_parameters(model: nn.Module, pretrained_generator: bool = False) -> int:
    """Trainable parameters of a (converted) network, each counted once (§5.4.2: codes + A + the rest);
    ``pretrained_generator=True`` leaves ``A`` out (a CSG trained on another network, Table 5.1)."""
    gen = getattr(model, "slice_generator", None)
    skip = {id(p) for p in gen.parameters()} if (gen is not None and pretrained_generator) else set()
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values() if id(p) not in skip)


__all__ = ["INITS", "KINDS", "LAYER_RULES", "SliceGenerator", "SlicedConv2d", "SvdReport", "assemble",
           "bsg_matrix", "bsg_weights", "bsg_weights_xor", "check_n_c", "check_slice_shape", "convert",
           "count_parameters", "cut", "grid", "n_slices", "pack_bits", "sign_ste", "sliced_layers", "svd_init",
           "target_convs"]
