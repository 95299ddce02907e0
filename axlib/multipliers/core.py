"""The :class:`Multiplier` truth-table type and multipliers defined by their logic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from axlib import validate


@dataclass(frozen=True, eq=False)
class Multiplier:
    """An ``a_bits`` x ``w_bits`` multiplier given by its complete truth table.

    ``table``: int64 array of shape ``(2**a_bits, 2**w_bits)``; ``table[a + a_offset, w + w_offset]``
    is the product of activation ``a`` and weight ``w``. ``convention`` says how signs are handled,
    ``source`` where the table comes from, ``published`` holds published numbers (power, area, MRE,
    ...) each with its source.
    """

    name: str
    table: np.ndarray
    signed: bool
    convention: str
    family: str
    source: str
    published: dict = field(default_factory=dict)

    def __post_init__(self):
        t = np.ascontiguousarray(self.table, dtype=np.int64)
        if t.ndim != 2 or any(s & (s - 1) for s in t.shape):
            raise ValueError(f"multiplier {self.name}: table shape {t.shape} is not (2^a_bits, 2^w_bits)")
        t.setflags(write=False)
        object.__setattr__(self, "table", t)

    @property
    def a_bits(self) -> int:
        return int(self.table.shape[0]).bit_length() - 1

    @property
    def w_bits(self) -> int:
        return int(self.table.shape[1]).bit_length() - 1

    @property
    def a_offset(self) -> int:
        return 1 << (self.a_bits - 1) if self.signed else 0

    @property
    def w_offset(self) -> int:
        return 1 << (self.w_bits - 1) if self.signed else 0

    def operand_range(self, which: str = "a") -> tuple[int, int]:
        bits, off = (self.a_bits, self.a_offset) if which == "a" else (self.w_bits, self.w_offset)
        return -off, (1 << bits) - 1 - off

    def operands(self) -> tuple[np.ndarray, np.ndarray]:
        """All activation and weight values, in table order."""
        lo_a, hi_a = self.operand_range("a")
        lo_w, hi_w = self.operand_range("w")
        return np.arange(lo_a, hi_a + 1), np.arange(lo_w, hi_w + 1)

    def exact_table(self) -> np.ndarray:
        a, w = self.operands()
        return np.outer(a, w)

    def __call__(self, a, w) -> np.ndarray:
        """Element-wise approximate product of integer arrays ``a`` and ``w`` (broadcast)."""
        a, w = np.asarray(a), np.asarray(w)
        return self.table[a + self.a_offset, w + self.w_offset]


def _bits_arg(bits: int) -> int:
    return validate.integer("bits", bits, lo=2, hi=12)


def exact(bits: int = 8, signed: bool = False) -> Multiplier:
    """The exact ``bits`` x ``bits`` multiplier (unsigned, or two's complement with offset tables)."""
    _bits_arg(bits)
    n = 1 << bits
    v = np.arange(n) - (n // 2 if signed else 0)
    return Multiplier(f"exact{bits}{'s' if signed else 'u'}", np.outer(v, v), signed,
                      "two's complement, offset table" if signed else "unsigned", "exact", "a * w")


def truncated(k: int, bits: int = 8) -> Multiplier:
    """Broken-array (truncated) unsigned multiplier: partial-product bits ``a_i w_j`` whose column
    ``i + j < k`` are dropped, so the product is ``Σ_{i+j≥k} a_i w_j 2^(i+j)`` (always ≤ exact)."""
    _bits_arg(bits)
    validate.integer("k", k, lo=0, hi=2 * bits - 1)
    v = np.arange(1 << bits)
    bit = (v[:, None] >> np.arange(bits)[None, :]) & 1            # (2^bits, bits)
    table = np.zeros((1 << bits, 1 << bits), dtype=np.int64)
    for i in range(bits):
        for j in range(bits):
            if i + j >= k:
                table += np.outer(bit[:, i], bit[:, j]) << (i + j)
    return Multiplier(f"trunc{k}", table, False, "unsigned", "truncated (broken-array)",
                      f"partial products in columns < {k} removed")


def _drum_operand(v: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """DRUM segment and shift of unsigned ``v``: values below ``2^k`` stay exact; otherwise the k
    bits from the leading one down are kept, their LSB forced to 1 (unbiasing)."""
    lead = np.where(v > 0, np.floor(np.log2(np.maximum(v, 1))).astype(np.int64), 0)
    shift = np.maximum(lead - (k - 1), 0)
    seg = v >> shift
    seg = np.where(shift > 0, seg | 1, seg)
    return seg, shift


def drum(k: int, bits: int = 8) -> Multiplier:
    """DRUM-k (Hashemi, Bahar, Reda, ICCAD 2015): multiply the k-bit leading segments of both
    operands (LSB of a truncated segment set to 1) and shift the product back."""
    _bits_arg(bits)
    validate.integer("k", k, lo=2, hi=bits)
    v = np.arange(1 << bits)
    seg, shift = _drum_operand(v, k)
    table = np.outer(seg, seg) << (shift[:, None] + shift[None, :])
    return Multiplier(f"drum{k}", table, False, "unsigned", "DRUM", "Hashemi et al. ICCAD 2015, k-bit segments")


def sign_magnitude(unsigned: Multiplier, name: str | None = None) -> Multiplier:
    """Signed version of an unsigned multiplier: ``sign(a)·sign(w)·U[|a|, |w|]``, offset table.

    The unsigned circuit must cover magnitudes up to ``2^(bits-1)`` (true for n-bit tables).
    """
    if unsigned.signed:
        raise ValueError(f"{unsigned.name} is already signed")
    na, nw = unsigned.table.shape
    a = np.arange(na) - na // 2
    w = np.arange(nw) - nw // 2
    mag = unsigned.table[np.abs(a)[:, None], np.abs(w)[None, :]]
    table = np.sign(a)[:, None] * np.sign(w)[None, :] * mag
    return Multiplier(name or f"{unsigned.name}-sm", table, True, f"sign-magnitude around {unsigned.name}",
                      unsigned.family, unsigned.source, unsigned.published)


def from_npy(path: str | Path, signed: bool, name: str | None = None) -> Multiplier:
    """A user table saved with ``np.save``; signed tables must use offset indexing."""
    path = Path(path)
    return Multiplier(name or path.stem, np.load(path), signed,
                      "two's complement, offset table" if signed else "unsigned", "user", str(path))


def from_function(fn: Callable[[np.ndarray, np.ndarray], np.ndarray], bits: int = 8, signed: bool = False,
                  name: str = "user") -> Multiplier:
    """Tabulate ``fn(a, w)`` (vectorised over integer arrays) over all operand pairs."""
    _bits_arg(bits)
    n = 1 << bits
    v = np.arange(n) - (n // 2 if signed else 0)
    table = np.asarray(fn(v[:, None], v[None, :]))
    if table.shape != (n, n):
        raise ValueError(f"fn returned shape {table.shape}; expected {(n, n)} (it must broadcast)")
    return Multiplier(name, table, signed, "two's complement, offset table" if signed else "unsigned", "user",
                      getattr(fn, "__qualname__", "function"))
