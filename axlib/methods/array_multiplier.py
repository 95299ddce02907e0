"""Bit-level model of an n×n unsigned carry-save array multiplier under precision scaling.

Reproduces the idea of {cite}`moons2016`, Fig. 1a ("by scaling the used number of bits from 4 to 2 the
number of active blocks drops from 20 to 6"). The paper shows only a picture of the multiplier; the
structure below is *our* model of it (a textbook carry-save array multiplier), evaluated integer-exactly
with numpy on whole operand streams at once.

Structure (n² + n blocks)
-------------------------
Operands ``a = sum a_j 2^j`` and ``b = sum b_i 2^i``, ``i, j = 0..n-1``, unsigned.

*Array cell (i, j)*, row ``i`` (one row per multiplier bit ``b_i``), column ``j``: an AND gate making the
partial product ``pp(i, j) = a_j AND b_i`` (weight ``2^(i+j)``) feeding a full adder with

- ``sin(i, j) = s(i-1, j+1)``: the sum output of the cell one row up and one column left (the same weight
  ``2^(i+j)``); 0 in row 0 and in column ``j = n-1`` (no cell there);
- ``cin(i, j) = c(i-1, j)``: the carry output of the cell directly above (weight ``2^(i-1+j+1)``); 0 in row 0;
- outputs ``s(i, j)`` (weight ``2^(i+j)``) and ``c(i, j)`` (weight ``2^(i+j+1)``).

Carries are *saved*: they go down one row, never sideways inside a row. Product bit ``p_i = s(i, 0)``
for ``i = 0..n-1``.

*Final row cell f_j*, ``j = 0..n-1``, a ripple-carry adder merging the last row's sums and carries
(weight ``2^(n+j)``): a full adder of

- ``s(n-1, j+1)`` (0 for ``j = n-1``), ``c(n-1, j)`` and the ripple carry ``r(j-1)`` of ``f_{j-1}``
  (0 for ``j = 0``);
- outputs ``fs(j) = p_{n+j}`` and ripple carry ``r(j)`` (``r(n-1)`` would be ``p_{2n}``, always 0).

Block ports and "active"
------------------------
A block's *ports* are the nets it reads and drives: for array cell (i, j) ``pp, sin, cin, s, c``; for
final cell f_j its three addends and ``fs, r``. The operand broadcast lines ``a_j, b_i`` are *not* ports
(they are shared buses; counting them would make every cell of a row/column with a live operand bit
"active", see ``count_operand_lines``). A block is *active* over an operand stream if any of its ports
is 1 for at least one operand pair.

*Toggles* are counted per distinct net (each wire once, not at both of its ends): the nets are all
``pp, s, c`` of the array and all ``fs, r`` of the final row. Toggles per multiply = mean over consecutive
operand pairs of the stream of the number of nets whose value changes, unit: net toggles per multiply.

Precision scaling: ``k``-bit operands, uniform and independent over ``[0, 2^k)``, placed either
LSB-aligned (upper ``n-k`` bits zero) or MSB-aligned (value shifted left by ``n-k``, lower bits zero).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ALIGNMENTS = ("lsb", "msb")


def _bits(x: np.ndarray, n: int) -> list[np.ndarray]:
    x = np.asarray(x, dtype=np.int64)
    return [((x >> j) & 1).astype(np.uint8) for j in range(n)]


def simulate(a, b, n: int) -> dict:
    """Evaluate the multiplier on operand streams ``a``, ``b`` (integer arrays in ``[0, 2^n)``, same shape).

    Returns a dict of uint8 arrays, each of the stream's shape: ``("pp", i, j)``, ``("sin", i, j)``,
    ``("cin", i, j)``, ``("s", i, j)``, ``("c", i, j)`` for array cells and ``("fa", j)``, ``("fb", j)``,
    ``("fr_in", j)``, ``("fs", j)``, ``("r", j)`` for final-row cells (``fa`` = sum from the array,
    ``fb`` = carry from the array, ``fr_in`` = ripple carry in), plus ``"product"`` (int64).
    """
    n = int(n)
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.shape != b.shape:
        raise ValueError(f"operand streams differ in shape: {a.shape} vs {b.shape}")
    if ((a < 0) | (a >= 1 << n) | (b < 0) | (b >= 1 << n)).any():
        raise ValueError(f"operands must lie in [0, 2^{n})")
    ab, bb = _bits(a, n), _bits(b, n)
    zero = np.zeros(a.shape, dtype=np.uint8)
    net: dict = {}
    for i in range(n):
        for j in range(n):
            pp = ab[j] & bb[i]
            sin = net[("s", i - 1, j + 1)] if i > 0 and j < n - 1 else zero
            cin = net[("c", i - 1, j)] if i > 0 else zero
            net[("pp", i, j)], net[("sin", i, j)], net[("cin", i, j)] = pp, sin, cin
            net[("s", i, j)] = pp ^ sin ^ cin
            net[("c", i, j)] = (pp & sin) | (pp & cin) | (sin & cin)
    r = zero
    for j in range(n):
        x = net[("s", n - 1, j + 1)] if j < n - 1 else zero
        y = net[("c", n - 1, j)]
        net[("fa", j)], net[("fb", j)], net[("fr_in", j)] = x, y, r
        net[("fs", j)] = x ^ y ^ r
        r = (x & y) | (x & r) | (y & r)
        net[("r", j)] = r
    prod = np.zeros(a.shape, dtype=np.int64)
    for i in range(n):
        prod |= net[("s", i, 0)].astype(np.int64) << i
    for j in range(n):
        prod |= net[("fs", j)].astype(np.int64) << (n + j)
    prod |= net[("r", n - 1)].astype(np.int64) << (2 * n)
    net["product"] = prod
    net["_a"], net["_b"] = ab, bb
    return net


def block_ports(net: dict, n: int, count_operand_lines: bool = False) -> dict:
    """Block -> list of its port arrays. Keys ``(row, col)``: rows ``0..n-1`` the array, row ``n`` the final
    adder. With ``count_operand_lines`` the AND inputs ``a_j, b_i`` count as ports of array cell (i, j)."""
    ports = {}
    for i in range(n):
        for j in range(n):
            p = [net[(t, i, j)] for t in ("pp", "sin", "cin", "s", "c")]
            if count_operand_lines:
                p += [net["_a"][j], net["_b"][i]]
            ports[(i, j)] = p
    for j in range(n):
        ports[(n, j)] = [net[(t, j)] for t in ("fa", "fb", "fr_in", "fs", "r")]
    return ports


def nets(net: dict, n: int) -> list[np.ndarray]:
    """The distinct nets (each wire once): all ``pp, s, c`` of the array and ``fs, r`` of the final row."""
    out = [net[(t, i, j)] for t in ("pp", "s", "c") for i in range(n) for j in range(n)]
    return out + [net[(t, j)] for t in ("fs", "r") for j in range(n)]


def active_map(a, b, n: int, count_operand_lines: bool = False) -> np.ndarray:
    """Bool array ``(n + 1, n)``: block (row, col) has a port that is 1 for some operand pair (row n = final adder)."""
    net = simulate(a, b, n)
    m = np.zeros((n + 1, n), dtype=bool)
    for (i, j), ports in block_ports(net, n, count_operand_lines).items():
        m[i, j] = any(bool(p.any()) for p in ports)
    return m


def active_blocks(a, b, n: int, count_operand_lines: bool = False) -> int:
    """Number of active blocks (out of n² + n) over the operand stream ``a, b``."""
    return int(active_map(a, b, n, count_operand_lines).sum())


def toggles_per_multiply(a, b, n: int) -> float:
    """Mean number of net toggles (0->1 or 1->0) between consecutive operand pairs of the stream (unit:
    toggles per multiply; needs at least two pairs)."""
    net = simulate(a, b, n)
    if np.asarray(a).shape[0] < 2:
        raise ValueError("need at least two operand pairs to count toggles")
    return float(sum(int((x[1:] ^ x[:-1]).sum()) for x in nets(net, n)) / (len(a) - 1))


def cell_toggles(a, b, n: int) -> np.ndarray:
    """Float array ``(n + 1, n)``: toggles per multiply of the nets each block *drives* (array cell: pp, s, c;
    final cell: fs, r), so that the map sums to :func:`toggles_per_multiply`."""
    net = simulate(a, b, n)
    t = np.zeros((n + 1, n))
    d = len(a) - 1
    for i in range(n):
        for j in range(n):
            t[i, j] = sum(int((net[(x, i, j)][1:] ^ net[(x, i, j)][:-1]).sum()) for x in ("pp", "s", "c")) / d
    for j in range(n):
        t[n, j] = sum(int((net[(x, j)][1:] ^ net[(x, j)][:-1]).sum()) for x in ("fs", "r")) / d
    return t


def operands(n: int, k: int, alignment: str, n_stream: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random stream of ``n_stream`` operand pairs, ``k``-bit uniform, placed LSB- or MSB-aligned in n bits."""
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must lie in [1, n={n}]")
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment={alignment!r} not in {ALIGNMENTS}")
    a = rng.integers(0, 1 << k, size=n_stream, dtype=np.int64)
    b = rng.integers(0, 1 << k, size=n_stream, dtype=np.int64)
    shift = n - k if alignment == "msb" else 0
    return a << shift, b << shift


def all_pairs(n: int, k: int, alignment: str) -> tuple[np.ndarray, np.ndarray]:
    """Every pair of k-bit operands (4^k pairs), aligned as in :func:`operands`."""
    v = np.arange(1 << k, dtype=np.int64) << (n - k if alignment == "msb" else 0)
    a, b = np.meshgrid(v, v, indexing="ij")
    return a.ravel(), b.ravel()


def tables(n: int, ks, n_stream: int, seed: int, alignments=ALIGNMENTS, exhaustive_max_k: int = 10) -> dict:
    """Tidy tables for moons2016 Fig. 1a.

    - ``active``: one row per (n, k, alignment): ``active_blocks`` over the random stream, the split
      ``array_active`` / ``final_active``, ``total_blocks`` (n² + n), ``active_blocks_exhaustive`` over all
      4^k operand pairs (NaN for k > ``exhaustive_max_k``) and ``active_blocks_with_operand_lines`` (the
      alternative definition counting the AND inputs as ports).
    - ``toggles``: one row per (n, k, alignment): ``toggles_per_multiply`` (net toggles per multiply),
      ``n_pairs`` (consecutive pairs averaged over).
    - ``cells``: one row per (n, k, alignment, row, col): ``block`` ("array" | "final"), ``active``,
      ``toggles_per_multiply`` of the nets the block drives.

    One ``numpy.random.Generator(seed)`` draws the streams in the order (alignment, k) as given.
    """
    rng = np.random.default_rng(seed)
    act, tog, cells = [], [], []
    for al in alignments:
        for k in ks:
            a, b = operands(n, k, al, n_stream, rng)
            m = active_map(a, b, n)
            ex = active_blocks(*all_pairs(n, k, al), n) if k <= exhaustive_max_k else np.nan
            act.append({"n": n, "k": k, "alignment": al, "active_blocks": int(m.sum()),
                        "array_active": int(m[:n].sum()), "final_active": int(m[n].sum()),
                        "total_blocks": n * n + n, "active_blocks_exhaustive": ex,
                        "active_blocks_with_operand_lines": active_blocks(a, b, n, count_operand_lines=True)})
            tog.append({"n": n, "k": k, "alignment": al, "toggles_per_multiply": toggles_per_multiply(a, b, n),
                        "n_pairs": n_stream - 1})
            t = cell_toggles(a, b, n)
            for r in range(n + 1):
                for c in range(n):
                    cells.append({"n": n, "k": k, "alignment": al, "row": r, "col": c,
                                  "block": "final" if r == n else "array", "active": bool(m[r, c]),
                                  "toggles_per_multiply": float(t[r, c])})
    return {"active": pd.DataFrame(act), "toggles": pd.DataFrame(tog), "cells": pd.DataFrame(cells)}


def fit_exponent(k, toggles) -> float:
    """Least-squares slope of log(toggles) vs log(k) (toggles ∝ k^slope)."""
    k = np.asarray(k, dtype=float)
    t = np.asarray(toggles, dtype=float)
    ok = t > 0
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(k[ok]), np.log(t[ok]), 1)[0])
