"""Input checks shared by every kernel (LUT, low-rank, dispatcher, references, early termination, reuse).

Each check refuses a bad argument before any work with a ValueError that names the argument, its value
and what is allowed. Arrays are NumPy arrays (or anything ``np.asarray`` takes) or torch tensors, which
are checked where they live (no copy to the host). The checks cost one or two O(size) passes per call and
never run inside a compiled loop. Integer codes must have an integer dtype: float arrays are refused, not
truncated (2.7 would silently become 2).
"""

from __future__ import annotations

import sys

import numpy as np

_INT64_MAX = int(np.iinfo(np.int64).max)
#: Largest magnitude up to which float64 holds every integer exactly (2^53).
F64_EXACT = 2**53


def is_tensor(x) -> bool:
    """True for a torch tensor (torch is not imported here just to ask)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _kind(x) -> str:
    """NumPy-style dtype kind of an array or tensor: 'i'/'u' integer, 'f' float, 'b' bool, 'c' complex, ..."""
    if is_tensor(x):
        if x.dtype.is_floating_point:
            return "f"
        if x.dtype.is_complex:
            return "c"
        return "b" if x.dtype == sys.modules["torch"].bool else "i"
    return x.dtype.kind


def minmax(x) -> tuple:
    """``(min, max)`` of a non-empty array or tensor as Python scalars."""
    if is_tensor(x):
        torch = sys.modules["torch"]
        return tuple(torch.stack(torch.aminmax(x)).tolist())  # one device sync
    return x.min().item(), x.max().item()


def int_array(name: str, x, ndim: int | None = None, tensors: bool = False):
    """``x`` as an integer ndarray with ``ndim`` dimensions, else ValueError; with ``tensors`` a torch tensor
    stays a tensor (on its device), otherwise it becomes an ndarray (``np.asarray``)."""
    x = x if tensors and is_tensor(x) else np.asarray(x)
    if _kind(x) not in "iu":
        hint = " (round or cast the codes explicitly; floats are not truncated)" if _kind(x) == "f" else ""
        raise ValueError(f"{name} must have an integer dtype (integer codes), got dtype {x.dtype}{hint}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {tuple(x.shape)}")
    return x


def real_array(name: str, x, ndim: int | None = None, shape: tuple | None = None, dtype=np.float64) -> np.ndarray:
    """``x`` as a finite real ndarray of ``dtype`` (integer or float input; bool, complex, object, NaN and
    inf refused), optionally with ``ndim`` dimensions or exactly ``shape``."""
    x = np.asarray(x)
    if x.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a real numeric array (integer or float), got dtype {x.dtype}")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if shape is not None and x.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {x.shape}")
    x = np.asarray(x, dtype=dtype)
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        bad = ~np.isfinite(x)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} must be finite; got {int(bad.sum())} NaN/inf value(s), the first {x[first]} at "
                         f"index {first}")
    return x


def int_param(name: str, value, lo: int | None = None) -> int:
    """A Python int from an int / numpy integer (bools are refused), optionally >= ``lo``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    return value


def pair(name: str, value, lo: int) -> tuple[int, int]:
    """``int`` or ``(h, w)`` tuple -> ``(h, w)`` of ints >= ``lo``."""
    if isinstance(value, tuple | list):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or an (h, w) pair, got {value!r}")
        return int_param(f"{name}[0]", value[0], lo), int_param(f"{name}[1]", value[1], lo)
    v = int_param(name, value, lo)
    return v, v


def conv_geometry(x_shape: tuple, w_shape: tuple, stride, padding, groups=1):
    """Checked ``((sh, sw), (ph, pw), groups, (Ho, Wo))`` of a convolution of x (N, C, H, W) with
    w (O, C/groups, kh, kw); stride >= 1, padding >= 0, groups dividing C and O."""
    sh, sw = pair("stride", stride, 1)
    ph, pw = pair("padding", padding, 0)
    groups = int_param("groups", groups, 1)
    _, c, h, wd = x_shape
    o, cg, kh, kw = w_shape
    if c % groups or o % groups:
        raise ValueError(f"groups={groups} must divide both the input channels ({c}) and the output channels ({o})")
    if cg != c // groups:
        raise ValueError(f"shape mismatch: w is {tuple(w_shape)} (O, C/groups, kh, kw) but x has C={c} channels and "
                         f"groups={groups}, so w.shape[1] must be {c // groups}")
    if kh == 0 or kw == 0:
        raise ValueError(f"kernel must be at least 1x1, got w.shape={tuple(w_shape)}")
    if h + 2 * ph < kh or wd + 2 * pw < kw:
        raise ValueError(f"kernel {kh}x{kw} is larger than the padded input {h + 2 * ph}x{wd + 2 * pw}")
    return (sh, sw), (ph, pw), groups, ((h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1)


def check_lut(lut) -> np.ndarray:
    """The product table as a non-empty 2-D integer ndarray with entries that fit int64."""
    lut = int_array("lut", lut, 2)
    if lut.shape[0] == 0 or lut.shape[1] == 0:
        raise ValueError(f"lut must be non-empty, got shape {lut.shape}")
    if lut.dtype == np.uint64 and int(lut.max()) > _INT64_MAX:
        raise ValueError(f"lut entries must fit int64 (<= {_INT64_MAX}), got up to {int(lut.max())}")
    return lut


def check_range(name: str, x, offset: int, size: int, axis: str, table: str = "LUT") -> None:
    """Every ``x + offset`` must be a valid index into an axis of length ``size`` of ``table`` (no wrap-around)."""
    if (x.numel() if is_tensor(x) else x.size) == 0:
        return
    xmin, xmax = (int(v) for v in minmax(x))
    if xmin + offset < 0 or xmax + offset >= size:
        raise ValueError(
            f"{name} values must lie in [{-offset}, {size - 1 - offset}] so that value + offset ({offset}) indexes the "
            f"{table}'s {axis} axis (length {size}); got values in [{xmin}, {xmax}]"
        )


def check_accumulation(lut: np.ndarray, k: int) -> None:
    """Refuse inputs whose int64 sum of ``k`` table entries could overflow (never the case for int32 tables
    with k < 2**32)."""
    bound = max(abs(int(lut.min())), abs(int(lut.max()))) * k
    if bound > _INT64_MAX:
        raise ValueError(f"the sum of {k} products of magnitude up to {bound // max(k, 1)} could overflow int64")


def check_gemm(a, w, lut, a_offset, w_offset):
    """Validated ``(a, w, lut, a_offset, w_offset)`` for a LUT GEMM ``(M, K) x (K, N)``."""
    lut = check_lut(lut)
    a = int_array("a", a, 2)
    w = int_array("w", w, 2)
    if a.shape[1] != w.shape[0]:
        raise ValueError(f"shape mismatch: a is {a.shape} (M, K) but w is {w.shape} (K, N); K must agree")
    a_offset = int_param("a_offset", a_offset)
    w_offset = int_param("w_offset", w_offset)
    check_range("a", a, a_offset, lut.shape[0], "first (activation)")
    check_range("w", w, w_offset, lut.shape[1], "second (weight)")
    check_accumulation(lut, a.shape[1])
    return a, w, lut, a_offset, w_offset


def check_conv_operands(x, w, table_shape: tuple, stride, padding, groups, a_offset, w_offset,
                        tensors: bool = False):
    """Validated integer conv operands for a table of ``table_shape`` (A, B): ``(x, w, (sh, sw), (ph, pw),
    groups, a_offset, w_offset, (Ho, Wo))``, each ``value + offset`` inside the table (the padding value 0
    included). ``tensors``: torch tensors stay tensors (checked on their device) instead of ndarrays."""
    x = int_array("x", x, 4, tensors)
    w = int_array("w", w, 4, tensors)
    stride, padding, groups, out_hw = conv_geometry(tuple(x.shape), tuple(w.shape), stride, padding, groups)
    a_offset = int_param("a_offset", a_offset)
    w_offset = int_param("w_offset", w_offset)
    check_range("x", x, a_offset, table_shape[0], "first (activation)")
    if padding != (0, 0):  # the padding value 0 is an activation operand like any other
        check_range("x padding value", np.zeros(1, np.int64), a_offset, table_shape[0], "first (activation)")
    check_range("w", w, w_offset, table_shape[1], "second (weight)")
    return x, w, stride, padding, groups, a_offset, w_offset, out_hw


def check_conv(x, w, lut, stride, padding, groups, a_offset, w_offset):
    """Validated LUT conv inputs plus the output size: ``(x, w, lut, (sh, sw), (ph, pw), groups, a_offset,
    w_offset, (Ho, Wo))``."""
    lut = check_lut(lut)
    x, w, stride, padding, groups, a_offset, w_offset, out_hw = check_conv_operands(
        x, w, lut.shape, stride, padding, groups, a_offset, w_offset)
    check_accumulation(lut, w.shape[1] * w.shape[2] * w.shape[3])
    return x, w, lut, stride, padding, groups, a_offset, w_offset, out_hw
