"""16-bit EvoApprox circuits (mul16u_F6B = MulF6B, mul16u_8VH = Mul8VH of ponzina2022) built from
four 8x8 sub-tables, and their use with an 8-bit operand (ponzina2022's 8/16 layers).

Data README: ``out = (LL[aL,bL] + (LH[aL,bH] << 8) + (HL[aH,bL] << 8) + (HH[aH,bH] << 16)) mod 2^32``
with ``aL = a & 0xFF``, ``aH = a >> 8`` (likewise ``b``), ``a`` the first argument. With an 8-bit
operand in ``a`` (``aH = 0``) a product is two 8x8 table passes over the bytes of ``b``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from axlib.multipliers.evoapprox import _path
from axlib.validate import ParameterError

WIDE = ("mul16u_F6B", "mul16u_8VH")
PAPER_NAME = {"mul16u_F6B": "MulF6B", "mul16u_8VH": "Mul8VH"}


@functools.cache
def parts(name: str) -> dict[str, np.ndarray]:
    if name not in WIDE:
        raise ValueError(f"unknown 16-bit circuit {name!r}; available: {list(WIDE)}")
    with np.load(_path("evoapprox_mul16u_F6B_8VH_parts.npz")) as z:
        return {k: z[f"{name}_{k}"].astype(np.int64) for k in ("LL", "LH", "HL", "HH")}


def mul16(name: str, a, b) -> np.ndarray:
    """Element-wise 16x16 approximate product of unsigned ``a`` (first argument) and ``b``."""
    p = parts(name)
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    al, ah, bl, bh = a & 0xFF, a >> 8, b & 0xFF, b >> 8
    out = p["LL"][al, bl] + (p["LH"][al, bh] << 8) + (p["HL"][ah, bl] << 8) + (p["HH"][ah, bh] << 16)
    return out % (1 << 32)


def metrics_8x16(name: str | None, eight_bit: str = "a") -> dict:
    """Exhaustive metrics over the 2^24 pairs with one operand 8-bit (``eight_bit`` = "a" or "b").

    ``name=None`` is the exact multiplier. Returns the MRE in Eq. (2)'s all-pairs reading (delaparra2021;
    mean over all pairs, divisor ``max(1, exact)``), EvoApprox's MRE (pairs with exact != 0), MAE as % of 2^32, worst-case
    error, mean error, in product units.
    """
    small = np.arange(256, dtype=np.int64)
    sum_rel_all = sum_rel_nz = n_nz = sum_abs = 0.0
    sum_err = 0.0
    wce = 0
    for chunk in np.array_split(np.arange(1 << 16, dtype=np.int64), 16):
        a, b = (small[:, None], chunk[None, :]) if eight_bit == "a" else (chunk[None, :], small[:, None])
        exact = a * b
        approx = exact if name is None else mul16(name, a, b)
        e = (approx - exact).astype(np.float64)
        ae = np.abs(e)
        sum_rel_all += float((ae / np.maximum(1, exact)).sum())
        nz = exact != 0
        sum_rel_nz += float((ae[nz] / exact[nz]).sum())
        n_nz += int(nz.sum())
        sum_abs += float(ae.sum())
        sum_err += float(e.sum())
        wce = max(wce, int(ae.max()))
    n = 256 * 65536
    return {"mre_pct": 100 * sum_rel_all / n, "mre_pct_evoapprox": 100 * sum_rel_nz / max(n_nz, 1),
            "mae_pct_of_2^32": 100 * sum_abs / n / 2**32, "mean_error": sum_err / n, "worst_case_error": wce}


def error_readings(m: dict, lib_mre_pct: float, lib_mae_pct: float) -> pd.DataFrame:
    """Candidate readings of the "MRE (%)" column of ponzina2022's Table 1 (§4), one stated definition each.

    ``m`` is :func:`metrics_8x16` of one circuit (8-bit operand in one input, 2^24 pairs); ``lib_mre_pct`` and
    ``lib_mae_pct`` are the EvoApprox library's MRE % and MAE % of the full 16 x 16 circuit (MAE % there is
    the mean absolute error over all 2^32 pairs divided by the 2^32 output range). Returns one row per reading:
    ``reading``, ``definition``, ``value`` (in the unit the paper's column would then be in, printed as "%").

    The paper does not define its MRE; these are the normalisations that a ~10^4 gap could come from. Each is
    a definition applied to both circuits alike, never a constant fitted to one of them.
    """
    rows = [
        ("MRE, all pairs (ours)", "mean over the 2^24 pairs of |e| / max(1, a*b), in %", m["mre_pct"]),
        ("MRE, EvoApprox definition", "mean over pairs with a*b != 0 of |e| / (a*b), in %", m["mre_pct_evoapprox"]),
        ("MRE, full 16 x 16 (library)", "EvoApprox library MRE of the 16 x 16 circuit, all 2^32 pairs, in %",
         lib_mre_pct),
        ("MRE as a fraction", "the all-pairs MRE as a fraction (not x 100), printed with a % sign", m["mre_pct"] / 100),
        ("MAE / 2^24", "mean |e| over the 2^24 pairs / 2^24 (full scale of an 8 x 16 product), in %",
         m["mae_pct_of_2^32"] * 2**8),
        ("MAE / 2^32 (EvoApprox MAE %)", "mean |e| over the 2^24 pairs / 2^32 (output range of the 16 x 16 "
         "circuit), in %", m["mae_pct_of_2^32"]),
        ("MAE / 2^32, full 16 x 16 (library)", "EvoApprox library MAE % of the 16 x 16 circuit (all 2^32 pairs)",
         lib_mae_pct),
    ]
    return pd.DataFrame(rows, columns=["reading", "definition", "value"])


@dataclass(frozen=True, eq=False)
class ByteSlicedMultiplier:
    """An 8-bit (weight) x 16-bit (activation) unsigned multiplier given as 8x8 tables over the bytes
    of the wide operand: ``U(w, x) = Σ_k parts[k][w, byte_k(x)] << 8k`` (``x < 2^16``, ``w < 2^8``).

    This is exactly the EvoApprox 16-bit circuits with the 8-bit operand in their first input
    (``aH = 0``: ``LL[w, xL] + (LH[w, xH] << 8)``), and the exact 8x16 product with ``parts[k] = w·b``.
    Signed operands use sign-magnitude: ``w ⊗ x = sign(w)·sign(x)·U(|w|, |x|)`` (``|w| ≤ 128``,
    ``|x| ≤ 2^15``; unsigned activations up to ``2^16 - 1``). Every part maps a zero operand to 0,
    so a zero byte contributes nothing whatever its sign (checked on construction).
    """

    name: str
    parts: tuple[np.ndarray, ...]   # (256, 256) int64 each: parts[k][w, b]
    source: str
    published: dict | None = None
    narrow_bits: int = 8
    wide_bits: int = 16

    def __post_init__(self):
        parts = tuple(np.ascontiguousarray(p, dtype=np.int64) for p in self.parts)
        for p in parts:
            if p.shape != (256, 256):
                raise ValueError(f"{self.name}: part shape {p.shape} is not (256, 256)")
            if p[0].any() or p[:, 0].any():
                raise ValueError(f"{self.name}: a part maps a zero operand to a non-zero product")
            p.setflags(write=False)
        if len(parts) * 8 != self.wide_bits:
            raise ValueError(f"{self.name}: {len(parts)} byte parts do not cover {self.wide_bits} bits")
        object.__setattr__(self, "parts", parts)

    def unsigned(self, w, x) -> np.ndarray:
        """``U(w, x)`` element-wise for unsigned ``w < 256`` and ``x < 2^16`` (int64)."""
        w, x = np.asarray(w, dtype=np.int64), np.asarray(x, dtype=np.int64)
        return sum(p[w, (x >> (8 * k)) & 0xFF] << (8 * k) for k, p in enumerate(self.parts))

    def __call__(self, x, w) -> np.ndarray:
        """Signed product of activation codes ``x`` and weight codes ``w`` (sign-magnitude, int64)."""
        x, w = np.asarray(x, dtype=np.int64), np.asarray(w, dtype=np.int64)
        return np.sign(x) * np.sign(w) * self.unsigned(np.abs(w), np.abs(x))

    def byte_pass_tables(self) -> list[tuple[int, np.ndarray]]:
        """``[(shift_k, T_k)]`` with ``T_k[v + 255, w + 128] = sign(v)·sign(w)·parts[k][|w|, |v|]`` over
        signed byte values ``v`` in -255..255 and weight codes ``w`` in -128..127, so that
        ``x ⊗ w = Σ_k T_k[v_k(x), w] << shift_k`` with ``v_k(x) = sign(x)·byte_k(|x|)`` (see
        :func:`signed_bytes`). Each pass is an ordinary LUT convolution (offsets 255 and 128)."""
        v = np.arange(-255, 256)
        w = np.arange(-128, 128)
        out = []
        for k, p in enumerate(self.parts):
            t = np.sign(v)[:, None] * np.sign(w)[None, :] * p[np.abs(w)[None, :], np.abs(v)[:, None]]
            out.append((8 * k, t))
        return out


def signed_bytes(x: np.ndarray, n_bytes: int = 2) -> list[np.ndarray]:
    """``[sign(x)·byte_k(|x|)]`` for k = 0..n_bytes-1; ``Σ_k v_k << 8k == x`` (int64 arrays)."""
    x = np.asarray(x, dtype=np.int64)
    s, m = np.sign(x), np.abs(x)
    return [s * ((m >> (8 * k)) & 0xFF) for k in range(n_bytes)]


def exact8x16() -> ByteSlicedMultiplier:
    """Exact16 of ponzina2022 (8-bit weight x 16-bit activation)."""
    b = np.arange(256)
    return ByteSlicedMultiplier("Exact16", (np.outer(b, b), np.outer(b, b)), "exact product")


def evoapprox8x16(circuit: str) -> ByteSlicedMultiplier:
    """``mul16u_F6B`` (MulF6B) or ``mul16u_8VH`` (Mul8VH) with the 8-bit weight in the first input."""
    p = parts(circuit)
    return ByteSlicedMultiplier(PAPER_NAME[circuit], (p["LL"], p["LH"]),
                                f"EvoApprox {circuit} (public 16x16 circuit; ponzina2022 used an 8x16 re-synthesis)")


#: Names accepted by :func:`get_8x16`.
NAMES_8X16 = ("Exact16", "MulF6B", "Mul8VH")


def get_8x16(name: str) -> ByteSlicedMultiplier:
    """``Exact16``, ``MulF6B`` or ``Mul8VH`` (ponzina2022, Table 1) as 8x16 byte-sliced multipliers."""
    if name == "Exact16":
        return exact8x16()
    circuit = {v: k for k, v in PAPER_NAME.items()}.get(name, name)
    if circuit not in WIDE:
        raise ParameterError(f"8x16 multiplier {name!r} is unknown; allowed: {list(NAMES_8X16)}")
    return evoapprox8x16(circuit)
