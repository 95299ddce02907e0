"""MAC allocation on an FPGA budget for layer groups of equal bit-widths (akhlaghi2020 Problem 4.2).

Layers with the same (weight, feature-map) mantissa bits form a group ``g`` served by its own
``M_g`` MAC units. Problem 4.2 minimises the modelled latency ``Σ_l OP_l / M_g(l)`` subject to the
accuracy constraint (Eq. 4.13) and the LUT/FF budget ``Σ_g α(M_g)·T^Base_g ≤ R_LUT``,
``Σ_g β(M_g)·F^Base_g ≤ R_FF`` (Eq. 4.14 with the Table 4.7 coefficients).

The thesis solves it by SGD jointly with the bits (Eq. 4.16) without saying how discrete groups and
MAC counts are handled; here a documented stand-in:

1. the learned per-layer bit pairs are merged into ``k = d … 1`` groups by agglomerative merging —
   at each step the two groups whose union (raised to the larger bits of each operand) adds the
   least ``Σ OP_l · (q_w+1)(q_f+1)`` (the multiplier-size proxy of ``T^Base``) — deterministic;
2. per grouping the MAC counts are searched exhaustively over ``{16, …, 256}^k`` for the lowest
   latency within budget (:func:`allocate`);
3. groupings of at most two groups also get their shared bits lowered one at a time, largest
   ``OP × (q_w+1)(q_f+1)`` reduction first, while the accuracy holds
   (:func:`axlib.methods.learned_approx_flow.lower_group_bits`: the latency pressure the bits feel in
   Eq. 4.16, which the unconstrained learning lacks);
4. the caller checks accuracy per grouping and keeps the feasible one with the lowest latency.

``T^Base`` and ``F^Base`` (16 MACs) are unpublished; the stand-in ``T^Base = 9480 + 191.4·(q_w+1)(q_f+1)``
and ``F^Base = 3282 + 199.4·(q_w+1)(q_f+1)`` is fitted exactly to Table 4.8's two designs (one group
of 128 MACs at (7, 7); groups (2, 3) and (2, 2) at 128 MACs each), so Table 4.8's LUT/FF counts are
reproduced by construction and cannot serve as claims.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from axlib import validate

MAC_COUNTS = (16, 32, 64, 128, 256)
ALPHA_LUT_TABLE_4_7 = {16: 1.0, 32: 1.2, 64: 1.68, 128: 2.25, 256: 3.78}
BETA_FF_TABLE_4_7 = {16: 1.0, 32: 1.04, 64: 1.12, 128: 1.28, 256: 1.54}
#: Xilinx Zynq-7000 xc7z020-clg484 (§4.5.3): 53,200 LUTs, 106,400 FFs (140 BRAM36, 220 DSP48).
XC7Z020 = {"lut": 53_200, "ff": 106_400}
T_BASE = (9480.0, 191.4)
F_BASE = (3282.0, 199.4)
BASELINE_GROUP = ((7, 7), 128)      #: BFloat16: one group of 128 MACs, 7 mantissa bits each


def _size(bits: tuple[int, int]) -> int:
    return (int(bits[0]) + 1) * (int(bits[1]) + 1)


def lut_base(bits: tuple[int, int]) -> float:
    """LUTs of 16 MACs at (q_w, q_f) mantissa bits (stand-in fitted to Table 4.8)."""
    return T_BASE[0] + T_BASE[1] * _size(bits)


def ff_base(bits: tuple[int, int]) -> float:
    """FFs of 16 MACs at (q_w, q_f) mantissa bits (stand-in fitted to Table 4.8)."""
    return F_BASE[0] + F_BASE[1] * _size(bits)


def resources(groups: Mapping[tuple[int, int], int]) -> dict[str, float]:
    """LUTs and FFs of groups ``{(q_w, q_f): M}`` (Eq. 4.14)."""
    return {"lut": sum(ALPHA_LUT_TABLE_4_7[m] * lut_base(b) for b, m in groups.items()),
            "ff": sum(BETA_FF_TABLE_4_7[m] * ff_base(b) for b, m in groups.items())}


def check_budget(budget: Mapping[str, float]) -> dict[str, float]:
    validate.mapping("budget", budget)
    if set(budget) != {"lut", "ff"}:
        raise validate.ParameterError(f"budget needs exactly the keys 'lut' and 'ff', got {sorted(budget)}")
    for k, v in budget.items():
        if not (isinstance(v, (int, float)) and v > 0):
            raise validate.ParameterError(f"budget[{k!r}] must be > 0, got {v!r}")
    return dict(budget)


def allocate(group_ops: Mapping[tuple[int, int], float], budget: Mapping[str, float] = XC7Z020) -> dict | None:
    """Exhaustive MAC counts for groups ``{bits: Σ OP_l}``: lowest ``Σ_g OP_g / M_g`` within budget.

    Returns ``{"macs": {bits: M}, "latency": cycles, "lut": .., "ff": ..}`` or ``None`` if even 16 MACs
    per group exceed the budget. Ties go to fewer resources (LUTs).
    """
    budget = check_budget(budget)
    keys = list(group_ops)
    best = None
    for combo in itertools.product(MAC_COUNTS, repeat=len(keys)):
        groups = dict(zip(keys, combo))
        res = resources(groups)
        if res["lut"] > budget["lut"] or res["ff"] > budget["ff"]:
            continue
        latency = sum(group_ops[b] / m for b, m in groups.items())
        if best is None or (latency, res["lut"]) < (best["latency"], best["lut"]):
            best = {"macs": groups, "latency": latency, **res}
    return best


def merge_groups(layer_bits: Sequence[tuple[int, int]], layer_ops: Sequence[float]) -> list[list[tuple[int, int]]]:
    """Groupings of the layers for ``k = d … 1`` groups (module docstring, step 1).

    Returns one entry per ``k`` (largest first): the bits of each layer after raising it to its
    group's maximum, in layer order.
    """
    if len(layer_bits) != len(layer_ops) or not layer_bits:
        raise ValueError("layer_bits and layer_ops must be non-empty and of equal length")
    groups = {}                                   # group bits -> indices of its layers
    for i, b in enumerate(layer_bits):
        groups.setdefault((int(b[0]), int(b[1])), []).append(i)
    out = [_assign(groups, len(layer_bits))]
    while len(groups) > 1:
        keys = sorted(groups)
        best = None
        for a, b in itertools.combinations(keys, 2):
            merged = (max(a[0], b[0]), max(a[1], b[1]))
            cost = sum(layer_ops[i] * (_size(merged) - _size(key)) for key in (a, b) for i in groups[key])
            if best is None or cost < best[0]:
                best = (cost, a, b, merged)
        _, a, b, merged = best
        members = groups.pop(a) + groups.pop(b)
        groups[merged] = sorted(groups.get(merged, []) + members)
        out.append(_assign(groups, len(layer_bits)))
    return out


def _assign(groups: Mapping[tuple[int, int], list[int]], n: int) -> list[tuple[int, int]]:
    bits = [None] * n
    for key, members in groups.items():
        for i in members:
            bits[i] = key
    return bits
