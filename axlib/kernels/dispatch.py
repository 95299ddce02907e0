"""Choose the faster exact path for an approximate-multiplier convolution, from measured timings.

Two paths give bit-identical integer results (both are tested against ``kernels.reference``):

- ``"lut"``: an exact LUT kernel on the tensors' device: the numba kernels (:func:`axlib.kernels.lut_conv2d`)
  on the CPU, the Triton kernel (:mod:`axlib.kernels.lut_triton`) on CUDA when Triton is installed
  (otherwise CUDA tensors travel to the host and back, and that transfer is part of its measured time);
- ``"lowrank"``: the exact low-rank identity (:mod:`axlib.kernels.lowrank`), plain torch ops on the
  tensors' own device, available only when the table's error matrix factors exactly at rank
  ``<= MAX_RANK`` and the float64 result is provably exact for the layer's dot-product length K
  (:meth:`~axlib.kernels.lowrank.LowRankTable.exactness_problem`: table entries and ``|operand| x K``
  well below 2^53, rounding error below 0.5); otherwise ``"auto"`` uses the LUT kernel.

With ``path="auto"`` the first call for a given (table, input shape, weight shape, stride, padding,
groups, device) runs both paths — once to warm up (the two outputs are compared and a mismatch
raises), then ``TIMED_REPEATS`` times each — and remembers the faster one for every later call with
that key. Decisions (with both timings) are listed by :func:`decisions`. ``AXLIB_APPROX_PATH``
(``auto`` | ``lut`` | ``lowrank``) sets the default for code that does not pass ``path``.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from axlib import validate
from axlib.kernels import checks
from axlib.kernels.lowrank import LowRankTable, factorize, lowrank_conv2d
from axlib.kernels.lut_gemm import lut_conv2d

PATHS = ("auto", "lut", "lowrank")
#: Largest error rank tried for the low-rank path (each rank adds one convolution).
MAX_RANK = 8
#: Timed runs per path after the warm-up run; the minimum is kept.
TIMED_REPEATS = 2


#: Exact factorisations (or why there is none) by table digest (content and offsets).
_FACTORISATIONS: dict[str, tuple[LowRankTable | None, str | None]] = {}


class PreparedTable:
    """A product table with its offsets, a content digest and its (lazy) exact factorisation."""

    def __init__(self, table: np.ndarray, a_offset: int = 0, w_offset: int = 0, name: str = "table"):
        self.table = np.ascontiguousarray(checks.check_lut(table), dtype=np.int64)
        self.a_offset, self.w_offset = checks.int_param("a_offset", a_offset), checks.int_param("w_offset", w_offset)
        self.name = name
        self.device_tables: dict = {}  # device -> lut_triton.DeviceTable, copied on first use there
        self.digest = hashlib.blake2b(self.table.tobytes() + f"{self.a_offset},{self.w_offset}".encode(),
                                      digest_size=8).hexdigest()

    @functools.cached_property
    def _factorisation(self) -> tuple[LowRankTable | None, str | None]:
        """``(factorisation, None)``, or ``(None, why there is none)``; computed once per table content
        (the SVD costs about a second for a 511 x 256 table, and every new layer copy prepares its tables
        again), shared through :data:`_FACTORISATIONS` by digest."""
        if self.digest not in _FACTORISATIONS:
            try:
                lr = factorize(self.table, self.a_offset, self.w_offset, max_rank=MAX_RANK)
                why = None if lr is not None else f"error matrix has no exact factorisation of rank <= {MAX_RANK}"
            except ValueError as e:  # entries beyond float64's exact integers
                lr, why = None, str(e)
            _FACTORISATIONS[self.digest] = (lr, why)
        return _FACTORISATIONS[self.digest]

    @property
    def lowrank(self) -> LowRankTable | None:
        return self._factorisation[0]


@dataclass(frozen=True)
class Decision:
    table: str
    digest: str
    x_shape: tuple
    w_shape: tuple
    stride: tuple
    padding: tuple
    groups: int
    device: str
    path: str
    rank: int | None
    lut_ms: float | None
    lowrank_ms: float | None
    reason: str


_DECISIONS: dict[tuple, Decision] = {}


def default_path() -> str:
    return validate.choice("AXLIB_APPROX_PATH", os.environ.get("AXLIB_APPROX_PATH", "auto"), PATHS)


def decisions() -> pd.DataFrame:
    """Every decision taken in this process (one row per key), with both timings in ms."""
    return pd.DataFrame([asdict(d) for d in _DECISIONS.values()], columns=list(Decision.__dataclass_fields__))


def clear() -> None:
    _DECISIONS.clear()


def lut_backend(device: torch.device) -> str:
    """The kernel behind the ``"lut"`` path for tensors on ``device``: ``"triton"`` or ``"numba"``."""
    from axlib.kernels import lut_triton  # lazy: TRITON_INTERPRET is read when the kernel is defined

    return "triton" if torch.device(device).type == "cuda" and lut_triton.available() else "numba"


def run_lut(x: torch.Tensor, w: torch.Tensor, pt: PreparedTable, stride, padding, groups) -> torch.Tensor:
    if lut_backend(x.device) == "triton":
        from axlib.kernels.lut_triton import device_table, triton_lut_conv2d

        key = str(x.device)
        if key not in pt.device_tables:
            pt.device_tables[key] = device_table(pt.table, x.device)
        return triton_lut_conv2d(x, w.to(x.device), pt.device_tables[key], stride, padding, groups, pt.a_offset,
                                 pt.w_offset)
    out = lut_conv2d(x.detach().to("cpu", torch.int64).numpy(), w.detach().to("cpu", torch.int64).numpy(), pt.table,
                     stride, padding, groups, pt.a_offset, pt.w_offset)
    return torch.from_numpy(out).to(x.device)


def run_lowrank(x: torch.Tensor, w: torch.Tensor, pt: PreparedTable, stride, padding, groups) -> torch.Tensor:
    return lowrank_conv2d(x.detach().long(), w.detach().long().to(x.device), pt.lowrank, stride, padding, groups)


def _timed(fn, device: torch.device) -> tuple[torch.Tensor, float]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, 1e3 * (time.perf_counter() - t0)


def lowrank_unavailable(pt: PreparedTable, k: int) -> str | None:
    """Why the low-rank path cannot serve a layer with dot-product length ``k`` (None if it can)."""
    lr, why_not = pt._factorisation
    if lr is None:
        return why_not
    why_not = lr.exactness_problem(k)
    return None if why_not is None else f"not exact for K={k}: {why_not}"


def conv2d(x: torch.Tensor, w: torch.Tensor, pt: PreparedTable, stride=1, padding=0, groups: int = 1,
           path: str | None = None) -> torch.Tensor:
    """Integer approximate-multiplier convolution of integer codes ``x`` (N, C, H, W) and ``w``
    (O, C/groups, kh, kw): ``out[n, o, i, j] = Σ T[x + a_offset, w + w_offset]`` (int64, on ``x.device``).

    ``path``: ``"lut"``, ``"lowrank"`` (error if unavailable for this table/layer) or ``"auto"``
    (default: ``AXLIB_APPROX_PATH``), which measures both on first use per key as described above.
    Inputs are checked once for every path (:func:`axlib.kernels.checks.check_conv_operands`): float codes
    are refused, not truncated, and codes outside the table raise instead of wrapping.
    """
    path = default_path() if path is None else validate.choice("path", path, PATHS)
    x, w, stride, padding, groups, _, _, _ = checks.check_conv_operands(
        x, w, pt.table.shape, stride, padding, groups, pt.a_offset, pt.w_offset, tensors=True)
    x, w = torch.as_tensor(x), torch.as_tensor(w)
    k = w.shape[1] * w.shape[2] * w.shape[3]
    if path == "lut":
        return run_lut(x, w, pt, stride, padding, groups)
    why_not = lowrank_unavailable(pt, k)
    if path == "lowrank":
        if why_not:
            raise ValueError(f"low-rank path unavailable for {pt.name}: {why_not}")
        return run_lowrank(x, w, pt, stride, padding, groups)
    key = (pt.digest, tuple(x.shape), tuple(w.shape), stride, padding, groups, str(x.device))
    decided = _DECISIONS.get(key)
    if decided is not None:
        fn = run_lut if decided.path == "lut" else run_lowrank
        return fn(x, w, pt, stride, padding, groups)
    common = dict(table=pt.name, digest=pt.digest, x_shape=tuple(x.shape), w_shape=tuple(w.shape), stride=stride,
                  padding=padding, groups=groups, device=str(x.device))
    if why_not:
        out = run_lut(x, w, pt, stride, padding, groups)
        _DECISIONS[key] = Decision(**common, path="lut", rank=None, lut_ms=None, lowrank_ms=None, reason=why_not)
        return out
    ref = run_lut(x, w, pt, stride, padding, groups)                 # warm-up of both paths
    if not torch.equal(run_lowrank(x, w, pt, stride, padding, groups), ref):
        raise AssertionError(f"low-rank and LUT paths disagree for {pt.name} on shape {tuple(x.shape)}")
    lut_ms = min(_timed(lambda: run_lut(x, w, pt, stride, padding, groups), x.device)[1] for _ in range(TIMED_REPEATS))
    lr_ms = min(_timed(lambda: run_lowrank(x, w, pt, stride, padding, groups), x.device)[1]
                for _ in range(TIMED_REPEATS))
    best = "lowrank" if lr_ms < lut_ms else "lut"
    _DECISIONS[key] = Decision(**common, path=best, rank=pt.lowrank.rank, lut_ms=lut_ms, lowrank_ms=lr_ms,
                               reason=f"measured: lut {lut_ms:.3g} ms, low-rank (rank {pt.lowrank.rank}) {lr_ms:.3g} ms")
    return ref


def linear(x: torch.Tensor, w: torch.Tensor, pt: PreparedTable, path: str | None = None) -> torch.Tensor:
    """Integer approximate GEMM ``out[n, o] = Σ_k T[x[n, k], w[o, k]]`` of integer codes ``x`` (N, K) and ``w``
    (O, K) (as ``nn.Linear.weight``); int64 (N, O)."""
    x, w = checks.int_array("x", x, 2, tensors=True), checks.int_array("w", w, 2, tensors=True)
    if x.shape[1] != w.shape[1]:
        raise ValueError(f"shape mismatch: x is {tuple(x.shape)} (N, K) but w is {tuple(w.shape)} (O, K); K must agree")
    x, w = torch.as_tensor(x), torch.as_tensor(w)
    return conv2d(x[:, :, None, None], w[:, :, None, None], pt, path=path)[:, :, 0, 0]
