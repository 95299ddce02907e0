"""Arithmetic energy of a quantized CNN under precision scaling and zero skipping (moons2016 §3.2).

The model (moons2016 Table 1, first-order estimates from 40 nm simulations): only the switching
activity α of ``P = α·C·f·V²`` changes with the bit-width n; α grows as O(n²) for a multiplier,
O(n) for adders, registers and wires, and O(n_max) (i.e. not at all) for SRAM. Like the paper
we count only the convolutional arithmetic (multiply and accumulate); control, I/O, memories and
the clock network are left out, so the savings are an upper bound.

Energy of one multiply-accumulate with an ``n_a``-bit input and an ``n_w``-bit weight, in units
of one 16-bit x 16-bit MAC (**16-bit fixed point = 1**)::

    e_mac(n_a, n_w) = s · B(n_a, n_w) / B(16, 16)  +  (1 - s) · (n_a + n_w) / (16 + 16)
    B(n_a, n_w)     = n_a · n_w + (n_a + n_w) / 2          (B(n, n) = n (n + 1))

- multiplier term: activity ∝ the number of active blocks of the carry-save array multiplier of
  Fig. 1a (:mod:`axlib.methods.array_multiplier`): an ``n x n`` multiplier has ``n²`` array cells
  plus an ``n``-cell final adder row, ``n (n + 1)`` blocks (Fig. 1a: 20 blocks at 4 bits, 6 at
  2 bits). So the multiplier energy falls like ``n (n + 1)``, i.e. a little slower than the O(n²)
  of Table 1. For ``n_a != n_w`` the final row is taken as the mean width ``(n_a + n_w) / 2`` (which
  operand drives the columns is a layout choice). 16 x 16 = 272 blocks = 1. (Inside a wider array,
  LSB-aligned k-bit operands also wake a few carry-propagation cells, e.g. 13 instead of 12 blocks at
  k = 3 of n = 4; we model a multiplier of the used width itself.)
- adder term: the accumulating adder is as wide as the product, ``n_a + n_w`` bits (O(n));
- ``s`` = ``mult_share``: the multiplier's share of a 16-bit MAC. The paper gives no number for it.
  Default from Horowitz (ISSCC 2014, 45 nm, integer arithmetic): 8-bit multiply 0.2 pJ,
  8-bit add 0.03 pJ, 32-bit add 0.1 pJ. A 16-bit multiply is then 0.2 pJ · B(16, 16) / B(8, 8)
  = 0.2 · 272 / 72 = 0.756 pJ (by the block law; Horowitz's 32-bit multiply, 3.1 pJ, gives
  3.1 · 272 / 1056 = 0.80 pJ) and the 32-bit add that accumulates its product 0.1 pJ, so
  ``s = 0.756 / 0.856 ≈ 0.883``.

Energy of a network = Σ over layers of (counted MACs) · ``e_mac(n_a, n_w)`` of that layer,
divided by the number of MACs (so a 16-bit network without skipping has relative energy 1).
With skipping, a MAC whose input *or* weight is zero costs nothing (a zero flag gates it).

MAC counting (:func:`count_macs`) is exact and runs on the actual (quantized) inputs and
weights: a convolution's non-zero MACs are ``Σ conv(1[x≠0], Σ_out 1[w≠0])`` (zero padding counts
as zero inputs), a linear layer's ``Σ_i (Σ_n 1[x_ni≠0]) (Σ_o 1[w_oi≠0])``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from axlib import validate

#: Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm, 0.9 V:
#: energies of integer operations in pJ (the figure "Energy per operation").
HOROWITZ_2014_PJ = {"int8_add": 0.03, "int32_add": 0.1, "int8_mult": 0.2, "int32_mult": 3.1}

REFERENCE_BITS = 16  #: normalisation: one 16-bit x 16-bit MAC = 1


def horowitz_mult_share(law: str = "blocks") -> float:
    """Multiplier share of a 16-bit MAC derived from :data:`HOROWITZ_2014_PJ`: ≈ 0.883 with the block law,
    ≈ 0.889 with Table 1's n² law (the 8-bit multiply scaled to 16 bits by the same ``law``)."""
    law = validate_law(law)
    grow = (multiplier_blocks(REFERENCE_BITS) / multiplier_blocks(8) if law == "blocks"
            else (REFERENCE_BITS / 8) ** 2)
    mult16 = HOROWITZ_2014_PJ["int8_mult"] * grow
    add32 = HOROWITZ_2014_PJ["int32_add"]                                # adder as wide as the product
    return float(mult16 / (mult16 + add32))


#: moons2016 Table 1: exponent of n in the switching activity of each building block.
TABLE1_ACTIVITY_ORDER = {"multiplier": 2, "adder": 1, "register": 1, "wire": 1, "sram": 0}


#: multiplier activity laws: ``"blocks"`` = active blocks of Fig. 1a's array multiplier, n (n + 1) (default);
#: ``"n2"`` = Table 1's O(n²), ``n_a · n_w`` array cells, the model used before Fig. 1a was reproduced (kept so
#: raw runs stored with it stay reproducible).
MULTIPLIER_LAWS = ("blocks", "n2")


def validate_law(law) -> str:
    return validate.choice("multiplier_law", law, MULTIPLIER_LAWS)


def validate_mult_share(mult_share) -> float:
    return validate.number("mult_share", mult_share, lo=0.0, hi=1.0)


def multiplier_blocks(n_a, n_w=None):
    """Blocks of an ``n_a x n_w``-bit carry-save array multiplier (Fig. 1a, :mod:`axlib.methods.array_multiplier`).

    ``n_a · n_w`` array cells plus a final adder row of the mean width ``(n_a + n_w) / 2``:
    ``n (n + 1)`` for ``n_a = n_w = n`` (20 at 4 bits, 6 at 2 bits, as in the Fig. 1a caption). Unit: blocks.
    Exact for the simulated multiplier at ``n >= 2``; at ``n = 1`` its one final-adder cell never switches (1 active
    block, the law says 2), which only matters for 1-bit operands.
    """
    n_a = np.asarray(n_a, dtype=float)
    n_w = n_a if n_w is None else np.asarray(n_w, dtype=float)
    return n_a * n_w + (n_a + n_w) / 2


def multiplier_energy(n_a, n_w=None, law: str = "blocks"):
    """Relative energy of an ``n_a x n_w``-bit multiplier (16 x 16 = 1).

    ``law="blocks"``: active blocks of Fig. 1a's array multiplier, ``B(n_a, n_w) / B(16, 16)`` with
    ``B(n, n) = n (n + 1)`` (:func:`multiplier_blocks`); ``law="n2"``: ``n_a · n_w / 256`` (Table 1's O(n²)).
    """
    if validate_law(law) == "n2":
        n_a = np.asarray(n_a, dtype=float)
        n_w = n_a if n_w is None else np.asarray(n_w, dtype=float)
        return n_a * n_w / REFERENCE_BITS**2
    return multiplier_blocks(n_a, n_w) / multiplier_blocks(REFERENCE_BITS)


MULT_SHARE = horowitz_mult_share()
MULT_SHARE_N2 = horowitz_mult_share("n2")  #: ≈ 0.889, the share used with ``law="n2"``


def adder_energy(n_a, n_w=None):
    """Relative energy of the accumulating adder for an ``n_a x n_w`` product (32 bits = 1)."""
    n_a = np.asarray(n_a, dtype=float)
    n_w = n_a if n_w is None else np.asarray(n_w, dtype=float)
    return (n_a + n_w) / (2 * REFERENCE_BITS)


def mac_energy(n_a, n_w=None, mult_share: float = MULT_SHARE, law: str = "blocks"):
    """Relative energy of one MAC with ``n_a``-bit input and ``n_w``-bit weight (16-bit MAC = 1);
    ``law`` is the multiplier's activity law (:data:`MULTIPLIER_LAWS`)."""
    validate_mult_share(mult_share)
    return mult_share * multiplier_energy(n_a, n_w, law) + (1.0 - mult_share) * adder_energy(n_a, n_w)


# --------------------------------------------------------------------------- MAC counting

@torch.no_grad()
def layer_macs(module: nn.Module, x: torch.Tensor) -> dict:
    """Exact counts for one Conv2d/Linear call on input ``x`` with ``module.weight`` as it is now.

    Returns ``macs`` (all multiply-accumulates, zero padding included), ``nonzero_macs`` (MACs
    whose input and weight are both non-zero), ``inputs`` / ``zero_inputs`` (elements of ``x``)
    and ``weights`` / ``zero_weights``.
    """
    w = module.weight
    xnz = (x != 0).to(torch.float32)
    wnz = (w != 0).to(torch.float32)
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            raise ValueError("count_macs supports numeric zero padding only")
        g = module.groups
        cout, cin_g, kh, kw = w.shape
        # Σ over output channels of a group of the weight indicator: (g, cin_g, kh, kw)
        wsum = wnz.view(g, cout // g, cin_g, kh, kw).sum(1)
        per_pos = F.conv2d(xnz, wsum, None, module.stride, module.padding, module.dilation, g)
        nonzero = int(per_pos.to(torch.float64).sum().item())  # per element <= cout*cin_g*kh*kw: exact in fp32
        n, _, ho, wo = per_pos.shape
        macs = n * cout * ho * wo * cin_g * kh * kw
    elif isinstance(module, nn.Linear):
        xs = xnz.reshape(-1, xnz.shape[-1]).to(torch.float64).sum(0)
        ws = wnz.to(torch.float64).sum(0)
        nonzero = int(torch.dot(xs, ws).item())
        rows = x.numel() // x.shape[-1]
        macs = rows * w.shape[0] * w.shape[1]
    else:
        raise TypeError(f"count_macs handles Conv2d and Linear, not {type(module).__name__}")
    return {"macs": macs, "nonzero_macs": nonzero, "inputs": x.numel(), "zero_inputs": int((x == 0).sum().item()),
            "weights": w.numel(), "zero_weights": int((w == 0).sum().item())}


@torch.no_grad()
def count_macs(model: nn.Module, batches: Iterable) -> pd.DataFrame:
    """Per Conv2d/Linear layer of ``model``: exact MAC and zero counts over all ``batches``.

    The counting hooks see the inputs the layer actually receives (after any quantizing
    pre-hook, e.g. inside :func:`axlib.quant.quantized`) and the weights as they are during the
    pass. Weight counts are per layer (not per image); ``images`` is the number of images seen.
    """
    names = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    modules = dict(model.named_modules())
    acc = {n: {"macs": 0, "nonzero_macs": 0, "inputs": 0, "zero_inputs": 0, "weights": 0, "zero_weights": 0}
           for n in names}
    hooks = []
    for n in names:
        def hook(m, args, _out, n=n):
            c = layer_macs(m, args[0])
            for k in ("macs", "nonzero_macs", "inputs", "zero_inputs"):
                acc[n][k] += c[k]
            acc[n]["weights"], acc[n]["zero_weights"] = c["weights"], c["zero_weights"]
        hooks.append(modules[n].register_forward_hook(hook))
    images = 0
    try:
        model.eval()
        for xb, _ in batches:
            model(xb)
            images += len(xb)
    finally:
        for h in hooks:
            h.remove()
    rows = [{"layer_index": i, "layer": n, "images": images, **acc[n]} for i, n in enumerate(names)]
    return pd.DataFrame(rows)


def network_energy(counts: pd.DataFrame, input_bits: int | Mapping[str, int], weight_bits: int | Mapping[str, int],
                   skipping: bool, mult_share: float = MULT_SHARE, law: str = "blocks") -> float:
    """Relative arithmetic energy of a network (16-bit, no skipping = 1) from :func:`count_macs` rows.

    ``input_bits`` / ``weight_bits``: one width for all layers or a mapping layer -> width.
    """
    validate_mult_share(mult_share)
    layers = counts["layer"].tolist()
    na = np.array([input_bits[n] if isinstance(input_bits, Mapping) else input_bits for n in layers], dtype=float)
    nw = np.array([weight_bits[n] if isinstance(weight_bits, Mapping) else weight_bits for n in layers], dtype=float)
    counted = counts["nonzero_macs" if skipping else "macs"].to_numpy(dtype=float)
    total = counts["macs"].to_numpy(dtype=float).sum()
    return float((counted * mac_energy(na, nw, mult_share, law)).sum() / total)


def zero_fractions(counts: pd.DataFrame) -> dict:
    """Network-wide zero fractions from :func:`count_macs` rows (one network, one configuration).

    - ``zero_input_fraction``: zero layer-input elements / all layer-input elements (all layers);
    - ``zero_weight_fraction``: zero weights / all weights;
    - ``zero_operand_fraction`` (Fig. 5a caption, "zeros in the weights and inputs"): zero inputs and
      weights of one inference / all of them, i.e. ``(Σ zero_inputs / images + Σ zero_weights) /
      (Σ inputs / images + Σ weights)``;
    - ``zero_output_fraction`` (§3.2.2 text, "zeros in the outputs"): zero elements among the layer
      outputs after ReLU (and pooling) and quantization, counted where they enter the next conv/linear
      layer, i.e. the inputs of every layer except the first (whose input is the image); NaN for a
      single-layer network;
    - ``skipped_mac_fraction``: MACs with a zero input or weight / all MACs.
    """
    counts = counts.sort_values("layer_index") if "layer_index" in counts else counts
    images = float(counts["images"].iloc[0]) if "images" in counts else 1.0
    inner = counts.iloc[1:]
    zi, ni = counts["zero_inputs"].sum() / images, counts["inputs"].sum() / images
    return {"zero_input_fraction": counts["zero_inputs"].sum() / counts["inputs"].sum(),
            "zero_weight_fraction": counts["zero_weights"].sum() / counts["weights"].sum(),
            "zero_operand_fraction": (zi + counts["zero_weights"].sum()) / (ni + counts["weights"].sum()),
            "zero_output_fraction": (inner["zero_inputs"].sum() / inner["inputs"].sum()) if len(inner) else float("nan"),
            "skipped_mac_fraction": 1.0 - counts["nonzero_macs"].sum() / counts["macs"].sum()}


# --------------------------------------------------------------------------- Fig. 1b: one multiplier

def product_rmse(bits, mode: str = "round", full_bits: int = REFERENCE_BITS) -> np.ndarray:
    """RMSE of the product of two operands reduced to ``bits`` bits, relative to full scale (1.0).

    Operands are independent and uniformly distributed over the ``full_bits``-bit unsigned grid
    ``{k / 2^full_bits}`` in [0, 1); each is reduced to ``bits`` bits by ``mode`` = ``"round"``
    (to nearest, saturating at the largest code) or ``"truncate"`` (LSBs dropped). The mean
    squared error is exact (no sampling): with ``a'`` the reduced operand and independence,
    ``E[(ab - a'b')²] = E[a²]² - 2·E[a·a']² + E[a'²]²``.
    """
    validate.choice("mode", mode, ("round", "truncate"))
    validate.integer("full_bits", full_bits, lo=2, hi=24)
    a = np.arange(2**full_bits, dtype=np.float64) / 2**full_bits
    out = []
    for n in np.atleast_1d(bits):
        n = validate.integer("bits", int(n), lo=1, hi=full_bits)
        scale = 2.0**n
        r = np.floor(a * scale) if mode == "truncate" else np.minimum(np.round(a * scale), scale - 1)
        ar = r / scale
        mse = np.mean(a * a) ** 2 - 2 * np.mean(a * ar) ** 2 + np.mean(ar * ar) ** 2
        out.append(np.sqrt(max(mse, 0.0)))
    return np.array(out)


__all__ = ["HOROWITZ_2014_PJ", "MULT_SHARE", "REFERENCE_BITS", "TABLE1_ACTIVITY_ORDER", "adder_energy", "count_macs",
           "MULTIPLIER_LAWS", "MULT_SHARE_N2", "horowitz_mult_share", "layer_macs", "mac_energy",
           "multiplier_energy", "network_energy", "product_rmse", "zero_fractions"]


# --------------------------------------------------------------------------- SnaPEA accelerator model
# akhlaghi2020 §3.6-3.7. A simplified, analytical stand-in for the thesis's cycle-level simulator.
#
# Baseline (EYERISS-like): 256 MAC units, every MAC of a layer executed, full utilisation:
#   cycles = MACs / 256.
# SnaPEA: P PEs x L lanes (Table 3.2: 64 x 4 = 256 MAC units). A PE broadcasts one weight per cycle
# to its L lanes, each lane computing one window of the same kernel (adjacent windows, row-major);
# the lanes of a PE wait for the slowest, so a group of L windows takes max(ops) cycles (Eq. 3.1 op
# counts). Groups are spread evenly over the P PEs: cycles = Σ_groups max(ops) / P. Not modelled:
# the synchronisation of horizontal PE groups, buffer bandwidth, pipeline fill, pooling and the
# off-chip spills of VGGNet.
# Energy: per executed MAC, one 16-bit PE operation and its operand reads. The baseline reads an input
# and a weight from register files (2 accesses per MAC). A SnaPEA lane reads its input, while the
# weight and its index are read once per cycle and broadcast to the L lanes of the PE (§3.6), i.e.
# 1 + 2/L accesses per MAC (index and input buffers costed as register-file accesses). Per layer,
# every input, weight and output word crosses the global buffer once, the same for both designs.
# Unit energies per bit from Table 3.3 of the thesis (45 nm); the baseline PE has no prediction unit
# and costs 1.0 (a register-file access) instead of 1.5 (§3.7.1).

#: akhlaghi2020 Table 3.3: energy per bit (pJ) of SnaPEA's units and of off-chip access.
SNAPEA_TABLE_3_3_PJ_PER_BIT = {"register_file": 0.20, "pe_16bit_with_pau": 0.30, "inter_pe": 0.40,
                               "global_buffer": 1.20, "ddr4": 15.00}
#: akhlaghi2020 Table 3.2: SnaPEA 64 PEs x 4 lanes; EYERISS configured with the same 256 MAC units.
SNAPEA_PES, SNAPEA_LANES, BASELINE_MACS = 64, 4, 256
WORD_BITS = 16


def snapea_cycles(ops: np.ndarray, lanes: int = SNAPEA_LANES, pes: int | None = None) -> float:
    """Cycles of one layer on SnaPEA from its per-window MAC counts ``ops`` (N, O, Ho, Wo).

    Windows of one kernel and image are taken ``lanes`` at a time in row-major order; each group
    costs its largest count; ``pes`` defaults to ``256 // lanes`` (the same 256 MAC units)."""
    validate_lanes(lanes)
    pes = pes or BASELINE_MACS // lanes
    n, o, h, w = ops.shape
    flat = ops.reshape(n * o, h * w).astype(np.int64)
    pad = (-flat.shape[1]) % lanes
    if pad:
        flat = np.concatenate([flat, np.zeros((flat.shape[0], pad), dtype=np.int64)], axis=1)
    return float(flat.reshape(flat.shape[0], -1, lanes).max(axis=2).sum() / pes)


def validate_lanes(lanes) -> int:
    from axlib import validate

    validate.integer("lanes", lanes, lo=1, hi=BASELINE_MACS)
    if BASELINE_MACS % lanes:
        raise validate.ParameterError(f"parameter lanes={lanes} must divide {BASELINE_MACS} MAC units")
    return lanes


def dense_cycles(macs: int | float, mac_units: int = BASELINE_MACS) -> float:
    """Cycles of a layer with every MAC executed on ``mac_units`` fully used units."""
    return float(macs) / mac_units


def mac_energy_pj(snapea: bool, lanes: int = SNAPEA_LANES) -> float:
    """Energy (pJ) of one executed 16-bit MAC: the PE operation plus its operand reads, 2 on the
    baseline, ``1 + 2 / lanes`` on SnaPEA (weight and index broadcast to the lanes of a PE)."""
    t = SNAPEA_TABLE_3_3_PJ_PER_BIT
    pe = t["pe_16bit_with_pau"] if snapea else t["register_file"] * 1.0   # baseline PE: relative cost 1.0
    reads = 1 + 2 / validate_lanes(lanes) if snapea else 2
    return WORD_BITS * (pe + reads * t["register_file"])


def movement_energy_pj(words: int | float) -> float:
    """Energy (pJ) of ``words`` 16-bit words crossing the global buffer once."""
    return float(words) * WORD_BITS * SNAPEA_TABLE_3_3_PJ_PER_BIT["global_buffer"]


# --------------------------------------------------------------------------- akhlaghi2020 ch. 4, Table 4.1 (LEMAX units, 45 nm)
# Source: akhlaghi2020 thesis, Table 4.1 ("Energy-error of approximate units", from Flicker [LPMZ11],
# RAP-CLA [AKAKP17] and AQ-LETAM [VKAKP17]); one column per configuration level, level 0 = exact.
# Adder and multiplier: average relative error (Eq. 4.3); DRAM: error rate of the data read (Eq. 4.2),
# energy = refresh energy of one DRAM operating cycle.

LEMAX_UNITS = ("adder", "multiplier", "dram")
LEMAX_TABLE_4_1 = {
    # unit: (error per level, energy per level in nJ)
    "adder": ((0.0, 0.004, 0.056, 0.12), tuple(e * 1e-9 for e in (5789, 1906, 1815, 1145))),   # aJ -> nJ
    "multiplier": ((0.0, 7.2e-4, 2.4e-3, 8e-3, 2.4e-2), tuple(e * 1e-6 for e in (4920, 1000, 930, 740, 590))),  # fJ -> nJ
    "dram": ((0.0, 1e-9, 1e-8, 1e-7, 1e-6), (132.84, 120.8, 110.2, 102.6, 99.6)),               # nJ per refresh
}
LEMAX_TABLE_4_1_UNITS = {"adder": "aJ", "multiplier": "fJ", "dram": "nJ"}  #: the unit the thesis prints


def lemax_unit(unit) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(errors, energies in nJ) of one Table 4.1 unit, level 0 first; unknown names are a ParameterError."""
    from axlib import validate

    validate.choice("unit", unit, LEMAX_UNITS)
    return LEMAX_TABLE_4_1[unit]


# --------------------------------------------------------------------------- akhlaghi2020 ch. 4, DRAM voltage and energy (§4.5.2)
# Source: akhlaghi2020 thesis, Table 4.6 (fraction of 64-bit beats in error at each supply voltage,
# the more error-prone vendor of Chang et al. [CYG+17]) and Eq. (4.17). Nominal DDR3 voltage 1.5 V;
# the "safe" range 1.3-1.5 V has no errors. The thesis estimates energy with SCALE-Sim + DRAMPower
# (DDR3 2 GB); here an analytical stand-in: energy per bit moved ∝ (V / 1.5 V)^γ.

DRAM_NOMINAL_V = 1.5
DRAM_SAFE_V = 1.3
DRAM_BEAT_BITS = 64
DRAM_BEAT_ERROR_TABLE_4_6 = {1.25: 0.10, 1.2: 0.35, 1.15: 0.40, 1.1: 0.50}   #: V -> fraction of beats in error


def beat_error_rate(ber):
    """Eqs. (4.11) + (4.17): fraction of 64-bit beats with at least one flipped bit at BER ``ber``.

    ``p_err = 1 - (1-p)^n`` per n-bit word and ``p_beat = 1 - (1-p_err)^(64/n)``: ``n`` cancels.
    """
    p = np.asarray(ber, dtype=float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"BER must lie in [0, 1], got {ber}")
    return 1.0 - (1.0 - p) ** DRAM_BEAT_BITS


def ber_thresholds() -> dict[float, float]:
    """Smallest BER at which each Table 4.6 voltage becomes usable: ``1 - (1 - beat_rate)^(1/64)``."""
    return {v: 1.0 - (1.0 - b) ** (1.0 / DRAM_BEAT_BITS) for v, b in DRAM_BEAT_ERROR_TABLE_4_6.items()}


def dram_voltage(ber) -> float:
    """Lowest Table 4.6 voltage whose beat error rate a data item of tolerable BER ``ber`` can take
    (its beat error rate ≤ that of the BER); below every threshold the safe 1.3 V."""
    tolerable = float(beat_error_rate(ber))
    usable = [v for v, b in DRAM_BEAT_ERROR_TABLE_4_6.items() if b <= tolerable]
    return min(usable) if usable else DRAM_SAFE_V


def dram_energy_scale(volts, gamma: float = 2.0):
    """Relative energy per bit at supply ``volts``: ``(V / 1.5 V)^γ`` (γ = 2: CV² switching)."""
    if not gamma > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    return (np.asarray(volts, dtype=float) / DRAM_NOMINAL_V) ** gamma


def dram_traffic_energy(layers, n_w, n_f, v_w, v_f, gamma: float = 2.0) -> float:
    """Relative DRAM energy of batch-1 inference (§4.5.2 stand-in):
    ``Σ_l |W_l|·n_w·e(V_w) + (|IFM_l| + |OFM_l|)·n_f·e(V_f)``.

    ``layers``: a frame with ``w_elems``, ``ifm_elems``, ``ofm_elems`` per conv layer; ``n_*`` word
    bits and ``v_*`` voltages, scalars or one per layer. Units: bits × relative energy per bit.
    """
    w = np.asarray(layers["w_elems"], float) * np.asarray(n_w, float) * dram_energy_scale(v_w, gamma)
    f = (np.asarray(layers["ifm_elems"], float) + np.asarray(layers["ofm_elems"], float)) * np.asarray(n_f, float)
    return float(np.sum(w + f * dram_energy_scale(v_f, gamma)))
