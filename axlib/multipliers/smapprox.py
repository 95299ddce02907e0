"""STAND-INS for the SMApprox 8x8 multipliers of delaparra2021 (Tables 1 and 2, Eq. (2)).

delaparra2021 use eight 8x8 multipliers of SMApproxLib (Ullah et al., DAC 2018). Each is four 4x4
blocks, each block one of the base designs ``0`` (accurate) and ``1``, ``2``, ``3`` (approximate;
Table 1), with the partial products of the blocks added exactly; ``1100`` names the design of the
four blocks. The logic of designs 1, 2 and 3 is not public (the LUT-level netlists are not in any
public repository we can reach), so the real circuits cannot be rebuilt here. This module builds
clearly labelled **stand-ins** instead:

1. a catalogue of documented 4x4 unsigned approximate multipliers (:func:`catalogue`), each a
   16x16 table built from its published logic: broken-array multipliers (BAM), DRUM-2/3 on 4 bits
   and Kulkarni et al.'s underdesigned multiplier;
2. a stated, deterministic rule (:func:`selection`) that picks one catalogue design per SMApprox
   type 1, 2, 3 by its exhaustive 4x4 MRE, the only published fact about those designs
   (Table 1); design 0 is the exact 4x4 multiplier;
3. the 8x8 composition of four blocks with exact accumulation (:func:`compose_8x8`), with the
   digit-to-block order as a stated assumption (the paper does not give it) and its reverse.

The 8x8 MREs of the stand-ins (Eq. (2), :func:`mre_eq2`) are then compared with Table 2; they
are a check of the stand-ins, not a fit. Tables are indexed ``T[a, w]`` (``a``: activation, first
operand; ``w``: weight), unsigned, int64, in product units.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from axlib.multipliers.core import Multiplier, _drum_operand
from axlib.multipliers.published import DELAPARRA2021_TABLE1, DELAPARRA2021_TABLE2, DELAPARRA2021_TABLE2_SOURCE
from axlib.validate import ParameterError, choice

#: The eight 8x8 designs of delaparra2021, Table 2, in the table's order.
TABLE2_DESIGNS = ("1100", "2200", "3300", "1110", "3330", "2220", "3333", "2222")
#: Digit-to-block orders of :func:`compose_8x8`: "lsb-first" (our assumption) and its reverse.
ORDERS = ("lsb-first", "msb-first")
#: The four 4x4 blocks of an 8x8 product, as (activation nibble, weight nibble, left shift in bits),
#: least significant first: B1 = (aL, wL), B2 = (aL, wH), B3 = (aH, wL), B4 = (aH, wH).
BLOCKS = (("L", "L", 0), ("L", "H", 4), ("H", "L", 4), ("H", "H", 8))

CITE_BAM = ("Mahdiani, Ahmadi, Fakhraie, Lucas: Bio-inspired imprecise computational blocks for efficient VLSI "
            "implementation of soft-computing applications, IEEE TCAS-I 57(4), 2010 (broken-array multiplier)")
CITE_DRUM = "Hashemi, Bahar, Reda: DRUM: a dynamic range unbiased multiplier for approximate applications, ICCAD 2015"
CITE_KULKARNI = ("Kulkarni, Gupta, Ercegovac: Trading accuracy for power with an underdesigned multiplier "
                 "architecture, VLSI Design 2011")

_V4 = np.arange(16, dtype=np.int64)
_BITS4 = (_V4[:, None] >> np.arange(4)[None, :]) & 1          # (16, 4): bit i of each 4-bit value


@dataclass(frozen=True, eq=False)
class Design4x4:
    """A documented 4x4 unsigned multiplier: ``table[a, w]`` (16x16 int64, read-only), its logic
    family, parameters, citation, and the names of other catalogue entries with the same table."""

    name: str
    family: str
    params: dict
    table: np.ndarray
    citation: str
    aliases: tuple[str, ...] = field(default=())


def _readonly(t: np.ndarray) -> np.ndarray:
    t = np.ascontiguousarray(t, dtype=np.int64)
    t.setflags(write=False)
    return t


def exact4() -> np.ndarray:
    """The exact 4x4 product ``a * w``, shape (16, 16)."""
    return np.outer(_V4, _V4)


def bam4(hbl: int, vbl: int) -> np.ndarray:
    """Broken-array multiplier (Mahdiani et al. 2010) on 4 bits, shape (16, 16).

    The partial-product bit ``a_i w_j`` (weight ``2^(i+j)``) is kept only if its row (weight bit
    ``j``) is not below the horizontal break level, ``j >= hbl``, and its column is not below the
    vertical break level, ``i + j >= vbl``. ``hbl`` in 0..3, ``vbl`` in 0..6; ``bam4(0, 0)`` is
    exact. The table is never above the exact product.
    """
    if not (0 <= hbl <= 3 and 0 <= vbl <= 6):
        raise ParameterError(f"BAM break levels hbl={hbl!r}, vbl={vbl!r} out of range; allowed hbl in [0, 3], vbl in [0, 6]")
    t = np.zeros((16, 16), dtype=np.int64)
    for i in range(4):          # activation bit
        for j in range(hbl, 4):  # weight bit (partial-product row)
            if i + j >= vbl:
                t += np.outer(_BITS4[:, i], _BITS4[:, j]) << (i + j)
    return t


def drum4(k: int) -> np.ndarray:
    """DRUM-k (Hashemi et al. 2015) on 4-bit operands, shape (16, 16): operands below ``2^k`` stay
    exact; larger ones keep the k bits from their leading one, the lowest forced to 1, and the
    product of the segments is shifted back (same logic as :func:`axlib.multipliers.drum`)."""
    if k not in (2, 3):
        raise ParameterError(f"DRUM segment k={k!r} on 4 bits; allowed values: [2, 3] (k=4 is exact)")
    seg, shift = _drum_operand(_V4, k)
    return np.outer(seg, seg) << (shift[:, None] + shift[None, :])


def kulkarni2x2() -> np.ndarray:
    """Kulkarni et al.'s 2x2 underdesigned block, shape (4, 4): exact except ``3 x 3 = 7`` (0b111)."""
    t = np.outer(np.arange(4), np.arange(4)).astype(np.int64)
    t[3, 3] = 7
    return t


def kulkarni4() -> np.ndarray:
    """Kulkarni et al.'s 4x4 multiplier, shape (16, 16): four 2x2 underdesigned blocks on the 2-bit
    halves of the operands, their outputs added exactly with shifts 0, 2, 2, 4."""
    k = kulkarni2x2()
    lo, hi = _V4 & 3, _V4 >> 2
    return (k[lo[:, None], lo[None, :]] + (k[lo[:, None], hi[None, :]] << 2)
            + (k[hi[:, None], lo[None, :]] << 2) + (k[hi[:, None], hi[None, :]] << 4))


def _raw_catalogue() -> list[tuple[str, str, dict, np.ndarray, str]]:
    out = [("exact", "exact", {}, exact4(), "exact 4x4 product a * w")]
    out += [(f"BAM(hbl={h},vbl={v})", "BAM", {"hbl": h, "vbl": v}, bam4(h, v), CITE_BAM)
            for h in range(4) for v in range(7)]
    out += [(f"DRUM-{k}", "DRUM", {"k": k}, drum4(k), CITE_DRUM) for k in (2, 3)]
    out += [("Kulkarni", "Kulkarni underdesigned", {}, kulkarni4(), CITE_KULKARNI)]
    return out


@functools.cache
def catalogue() -> tuple[Design4x4, ...]:
    """The 4x4 catalogue, deduplicated: entries with a table identical to an earlier one are
    dropped and listed as aliases of the first (catalogue order: exact, BAM by (hbl, vbl), DRUM-2,
    DRUM-3, Kulkarni). ``catalogue()[0]`` is the exact design."""
    kept: list[list] = []
    for name, family, params, table, cite in _raw_catalogue():
        for entry in kept:
            if np.array_equal(entry[3], table):
                entry[5].append(name)
                break
        else:
            kept.append([name, family, params, table, cite, []])
    return tuple(Design4x4(n, f, p, _readonly(t), c, tuple(a)) for n, f, p, t, c, a in kept)


def design(name: str) -> Design4x4:
    """A catalogue design by name or alias."""
    for d in catalogue():
        if name == d.name or name in d.aliases:
            return d
    raise ParameterError(f"4x4 design {name!r} is not in the catalogue; allowed: {[d.name for d in catalogue()]}")


def mre_full(table: np.ndarray) -> float:
    """MRE in % over every unsigned operand pair of ``table`` (shape (2^a_bits, 2^w_bits)):
    mean of ``|T[a, w] - a*w| / max(1, a*w)``; the divisor of Eq. (2), averaged over the full range.
    Equals ``error_metrics(m)["mre_pct"]`` for an unsigned multiplier."""
    t = np.asarray(table, dtype=np.int64)
    ex = np.outer(np.arange(t.shape[0]), np.arange(t.shape[1]))
    return 100.0 * float(np.mean(np.abs(t - ex) / np.maximum(1, ex)))


def mre_eq2(table: np.ndarray, bits: int) -> float:
    """Eq. (2) of delaparra2021, literally, in %.

    ``MRE = 1/(n*n) * sum_{i=0..n} sum_{j=0..n} |T[i, j] - i*j| / max(1, |i*j|)`` with
    ``n = 2^(bits-1)``, over the unsigned magnitudes ``i, j`` in ``0..n`` (inclusive, as printed)
    of the unsigned table ``T`` (shape at least (n+1, n+1)). Note the sum has ``(n+1)^2`` terms but
    is divided by ``n*n``, as printed; we keep that. For ``bits=8``: ``n = 128``, i.e. the
    magnitudes a sign-magnitude 8-bit operand can take.
    """
    n = 1 << (bits - 1)
    t = np.asarray(table, dtype=np.int64)
    if t.ndim != 2 or t.shape[0] <= n or t.shape[1] <= n:
        raise ValueError(f"table of shape {t.shape} does not cover magnitudes 0..{n} (bits={bits})")
    v = np.arange(n + 1, dtype=np.int64)
    ex = np.outer(v, v)
    return 100.0 * float(np.sum(np.abs(t[: n + 1, : n + 1] - ex) / np.maximum(1, ex))) / (n * n)


def selection() -> pd.DataFrame:
    """The stand-in selection rule, as a table of candidates.

    Design ``0`` is the exact 4x4 multiplier. Then, for each SMApprox type in the order 1, 2, 3,
    the not-yet-chosen catalogue design whose exhaustive 4x4 MRE (:func:`mre_full`) is nearest to
    that type's MRE in Table 1 is chosen (ties: earlier catalogue entry). Only the 4x4 MRE is used.

    One row per catalogue design: ``design``, ``family``, ``aliases``, ``citation``,
    ``mre_pct_4x4`` (full range), ``mre_eq2_pct_4x4`` (Eq. (2), n = 8), ``abs_diff_to_type_<t>``
    (percentage points to Table 1's MRE of type t) and ``chosen_as`` ("0".."3" or "").
    """
    cat = catalogue()
    targets = DELAPARRA2021_TABLE1.set_index("design")["paper_mre_pct"]
    rows = [{"design": d.name, "family": d.family, "aliases": ", ".join(d.aliases), "citation": d.citation,
             "mre_pct_4x4": mre_full(d.table), "mre_eq2_pct_4x4": mre_eq2(d.table, 4)} for d in cat]
    df = pd.DataFrame(rows)
    chosen = {0: "0"}   # catalogue index -> type
    for t in ("1", "2", "3"):
        diff = (df["mre_pct_4x4"] - float(targets[t])).abs()
        df[f"abs_diff_to_type_{t}"] = diff
        free = [i for i in range(len(df)) if i not in chosen]
        best = min(free, key=lambda i: (diff[i], i))
        chosen[best] = t
    df["chosen_as"] = [chosen.get(i, "") for i in range(len(df))]
    return df


@functools.cache
def standins() -> dict[str, Design4x4]:
    """The chosen stand-in per SMApprox 4x4 type: ``{"0": exact, "1": ..., "2": ..., "3": ...}``."""
    sel = selection()
    cat = catalogue()
    return dict(sorted((t, cat[i]) for i, t in enumerate(sel["chosen_as"]) if t))


def check_digits(digits) -> str:
    """``digits`` as a valid SMApprox design string (4 characters, each 0-3), else ParameterError."""
    if not isinstance(digits, str) or not re.fullmatch(r"[0-3]{4}", digits):
        raise ParameterError(f"SMApprox design {digits!r} is invalid: expected 4 digits, each 0-3 (the 4x4 design of "
                             "blocks 1..4), e.g. '1100'")
    return digits


def block_designs(digits: str, order: str = "lsb-first") -> tuple[str, str, str, str]:
    """Design digit of the blocks B1 (aL, wL), B2 (aL, wH), B3 (aH, wL), B4 (aH, wH).

    ``order="lsb-first"`` (our assumption): digit k, left to right, is block Bk, so the first digit
    is the least significant block. ``"msb-first"``: the reverse, the first digit is B4.
    """
    check_digits(digits)
    choice("order", order, ORDERS)
    return tuple(digits if order == "lsb-first" else digits[::-1])


def compose_8x8(digits: str, blocks, order: str = "lsb-first") -> np.ndarray:
    """8x8 unsigned table (256, 256) from four 4x4 blocks with exact accumulation.

    ``product = B1[aL, wL] + (B2[aL, wH] << 4) + (B3[aH, wL] << 4) + (B4[aH, wH] << 8)`` with
    ``aL = a & 15``, ``aH = a >> 4`` (likewise ``w``); block Bk is ``blocks[d]`` (a (16, 16) table) for
    the design digit ``d`` that :func:`block_designs` assigns to it. ``blocks`` maps the digits
    "0".."3" (str) to 4x4 tables. The digit-to-block order is not stated by delaparra2021;
    ``"lsb-first"`` is our assumption, ``"msb-first"`` its reverse.
    """
    ds = block_designs(digits, order)
    tabs = []
    for d in ds:
        if d not in blocks:
            raise ParameterError(f"no 4x4 table for design digit {d!r}; given: {sorted(blocks)}")
        t = np.asarray(blocks[d], dtype=np.int64)
        if t.shape != (16, 16):
            raise ValueError(f"4x4 block for digit {d!r} has shape {t.shape}; expected (16, 16)")
        tabs.append(t)
    v = np.arange(256, dtype=np.int64)
    half = {"L": v & 15, "H": v >> 4}
    out = np.zeros((256, 256), dtype=np.int64)
    for t, (ha, hw, shift) in zip(tabs, BLOCKS, strict=True):
        out += t[half[ha][:, None], half[hw][None, :]] << shift
    return out


def smapprox(digits: str, order: str = "lsb-first") -> Multiplier:
    """The 8x8 stand-in for SMApprox multiplier ``digits`` (e.g. "1100"), unsigned.

    Blocks are the :func:`standins` of the four digits, composed by :func:`compose_8x8`. NOT the
    real SMApprox circuit (its designs 1-3 are not public). ``published`` holds Table 2's MRE (%),
    power (W) and area (LUTs) of the real multiplier when ``digits`` is in Table 2.
    """
    ds = block_designs(digits, order)
    st = standins()
    table = compose_8x8(digits, {k: d.table for k, d in st.items()}, order)
    parts = ", ".join(f"B{k + 1}={d}:{st[d].name}" for k, d in enumerate(ds))
    source = (f"STAND-IN for SMApprox {digits} (delaparra2021 / SMApproxLib), not the real circuit: 4x4 blocks "
              f"{parts} (B1 = aL x wL ... B4 = aH x wH), exact accumulation, digit order {order}"
              + (" (assumed)" if order == "lsb-first" else " (reverse of the assumed order)"))
    published = {}
    row = DELAPARRA2021_TABLE2[DELAPARRA2021_TABLE2["multiplier"] == digits]
    if len(row):
        r = row.iloc[0]
        published = {"paper_mre_pct": float(r["paper_mre_pct"]), "paper_power_W": float(r["paper_power_W"]),
                     "paper_area_luts": int(r["paper_area_luts"]), "source": DELAPARRA2021_TABLE2_SOURCE}
    name = f"smapprox:{digits}" + ("" if order == "lsb-first" else "@msb-first")
    return Multiplier(name, table, False, "unsigned", "SMApprox stand-in", source, published)


def table2_metrics(orders=ORDERS) -> pd.DataFrame:
    """Our numbers for every row of Table 2, one row per (digit order, multiplier).

    Columns: ``order``, ``multiplier`` (Table 2's name; "Xilinx Multiplier IP" is the exact 8x8
    multiplier), ``blocks`` (stand-in design of B1..B4), ``mre_eq2_pct`` (Eq. (2), n = 128),
    ``mre_full_pct`` (all 256 x 256 pairs), and ``error_metrics``' ``mean_error``, ``error_std``
    (product units), ``worst_case_error``, ``error_probability_pct``, ``error_rank``.
    """
    from axlib.multipliers.core import exact
    from axlib.multipliers.metrics import error_metrics

    orders = [choice("order", o, ORDERS) for o in orders]
    st = standins()
    rows = []
    for order in orders:
        for digits in (*TABLE2_DESIGNS, "Xilinx Multiplier IP"):
            if digits in TABLE2_DESIGNS:
                m, blocks = smapprox(digits, order), " | ".join(st[d].name for d in block_designs(digits, order))
            else:
                m, blocks = exact(8), "exact 8x8"
            em = error_metrics(m)
            rows.append({"order": order, "multiplier": digits, "blocks": blocks, "mre_eq2_pct": mre_eq2(m.table, 8),
                         "mre_full_pct": em["mre_pct"], "mean_error": em["mean_error"], "error_std": em["error_std"],
                         "worst_case_error": em["worst_case_error"],
                         "error_probability_pct": em["error_probability_pct"], "error_rank": em["error_rank"]})
    return pd.DataFrame(rows)


def spearman_rho(x, y) -> float:
    """Spearman's rank correlation of two equal-length sequences (average ranks for ties)."""
    rx = pd.Series(np.asarray(x, dtype=float)).rank().to_numpy()
    ry = pd.Series(np.asarray(y, dtype=float)).rank().to_numpy()
    if len(rx) != len(ry) or len(rx) < 2:
        raise ValueError(f"need two sequences of equal length >= 2; got {len(rx)} and {len(ry)}")
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])
