"""LeNet inference with multiplications served from stored patterns or Bloom filters (akhlaghi2020 §2.5.4, §2.7.2).

A *store* holds, for one layer, the ``N`` most frequent operand patterns of the profiling images
(:mod:`axlib.methods.bloom_cnn`) and one value per pattern. At inference every multiplication whose
pattern is served returns that value (the multiplier is clock-gated); every other multiplication is
computed exactly.

Stored value (a choice the thesis leaves open for approximate patterns): ``"mean"`` (default) stores
the mean of the exact products of all profiled multiplications of the pattern -- the centre of the
cluster of outputs the pattern stands for (§2.3.2 returns a cluster centre for every input of the
cluster); ``"truncated"`` stores the product of the two operands with their unmatched low bits
cleared (what the pattern alone determines; an underestimate of up to a factor 4 at 9 bits). With
exact matching both are the exact product. Values are float32 (a 32-bit output register).

Two ways of answering a pattern:

- ideal (``bf=None``): an exact table of the N patterns (what Figs. 2.4/2.5 assume);
- Bloom filters (``bf=(m, k)``, Table 2.5 settings): filters of ``m`` bits and ``k`` H3 hash functions,
  queried together as a :class:`axlib.kernels.bloom.BloomFunctionUnit` (first-added filter wins;
  filters are added by decreasing profiled frequency). A false positive returns the value of the
  claiming filter. ``bf_grouping="pattern"`` (default) gives every pattern its own filter, as Table
  2.5's settings state (n = 1 pattern per filter, so the design FP rate holds per filter);
  ``"value"`` gives one filter per distinct stored value holding all its patterns (§2.5.4's wording;
  in our LeNet many patterns share the value 0, the product of a zero activation, and such a filter
  holds several patterns at a higher FP rate). The key is the ``2*apx_bit``-bit pattern key in
  ``ceil(2*apx_bit/8)`` bytes. Each layer's unit draws its hash coefficients from ``seed + layer index``.

For ``apx_bit <= 12`` the answer is a function of at most 24 key bits, so it is tabulated once per
layer (the unit is queried on every possible key) and the forward pass is the table-gather
convolution :func:`axlib.kernels.reuse.served_conv2d`. Longer keys (exact matching) are answered per
multiplication by :func:`direct_layer_fn` (on-the-fly hashing; materialises all pairs, so small
inputs only) -- which is also the reference the tabulated path is tested against.

Energy (§2.7.2, Fig. 2.12; a model, documented in :func:`energy_saving`): a served multiplication saves
one fp32 multiplication; every multiplication pays one look-up in all of its layer's filters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from statistics import median

import numpy as np
import pandas as pd
from torch import nn

from axlib import validate
from axlib.kernels import bloom
from axlib.kernels.reuse import pair_table, served_conv2d
from axlib.methods import bloom_cnn as bc
from axlib.methods import bloomreuse
from axlib.validate import ParameterError

STORED_VALUES = ("mean", "truncated")
BF_GROUPINGS = ("pattern", "value")
#: Pattern pairs materialised at once by the direct (per-multiplication) path.
DIRECT_MAX_PAIRS = 50_000_000

# --------------------------------------------------------------------------- published values (inputs, never outputs)

#: akhlaghi2020 Table 2.5: matching mode (apx_bit, #patterns per layer), BF setting (m, k, n per BF), hit rate,
#: LeNet accuracy and multiplication energy saving, all in %.
THESIS_TABLE_2_5 = pd.DataFrame([
    (8, 10, 64, 2, 1, 66.9, 60.6, 58.9),
    (9, 5, 64, 2, 1, 28.9, 97.5, 24.9),
    (9, 10, 64, 2, 1, 45.7, 97.4, 37.9),
    (9, 20, 64, 2, 1, 60.7, 97.9, 45.4),
    (9, 30, 64, 2, 1, 70.6, 97.4, 47.5),
    (9, 30, 32, 3, 1, 70.6, 97.4, 41.6),
    (9, 40, 64, 2, 1, 77.3, 97.3, 47.3),
    (9, 50, 64, 2, 1, 82.3, 97.2, 44.7),
    (10, 10, 64, 2, 1, 30.4, 98.3, 22.3),
], columns=["apx_bit", "n_patterns", "m", "k", "n", "hit_rate_pct", "accuracy_pct", "e_save_pct"])
#: akhlaghi2020 §2.7.2 (text on Fig. 2.11): baseline accuracy, and accuracy with 8-bit matching (10 patterns,
#: FP rate 0.001); from 9 bits on the loss is called insignificant.
THESIS_FIG_2_11 = {"baseline_pct": 98.5, "accuracy_pct": {8: 60.6}, "source": "akhlaghi2020 §2.7.2, text on Fig. 2.11"}
THESIS_SOURCE = "akhlaghi2020 §2.7.2, Table 2.5, Figs. 2.11-2.12"

#: Horowitz, "Computing's energy problem (and what we can do about it)", ISSCC 2014, 45 nm: energy of one
#: 32-bit floating-point multiplication (pJ).
HOROWITZ_FP32_MULT_PJ = 3.7
#: akhlaghi2020 Table 2.2: energy of one look-up in a resistive (1T-1R) Bloom vector of m bits (fJ).
THESIS_TABLE_2_2_RBV_FJ = {2048: 19.3, 1024: 17.12, 512: 8.04, 256: 5.10, 128: 3.77, 64: 1.62}
#: akhlaghi2020 Table 2.4: CMOS energy (hash functions, decoders, output registers) of the ReBFs of the MUL
#: unit of each image kernel (fJ); the unit's configuration (#Out filters, k) is in Table 2.3.
THESIS_TABLE_2_4_MUL_FJ = {"Sobel": 882.63, "Roberts": 1302.74, "Sharpen": 796.95, "Prewitt": 1179.72,
                           "Scharr": 996.76}
ENERGY_MODELS = ("horowitz", "thesis")


# --------------------------------------------------------------------------- stores


def key_bytes(apx_bit: int) -> int:
    """Bytes of a 2*apx_bit-bit pattern key."""
    return max(1, math.ceil(2 * apx_bit / 8))


@dataclass
class LayerStore:
    """Stored patterns of one layer: ``keys`` (uint64 pattern keys, by decreasing profiled count), ``values``
    (float32) and ``counts`` (profiled multiplications); ``bf = (m, k)`` answers through Bloom filters."""

    layer: str
    apx_bit: int
    keys: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    bf: tuple[int, int] | None = None
    seed: int = 0
    bf_grouping: str = "pattern"
    unit: bloom.BloomFunctionUnit | None = field(default=None, repr=False)
    patterns_per_bf: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.keys = np.asarray(self.keys, dtype=np.uint64)
        self.values = np.asarray(self.values, dtype=np.float32)
        self.counts = np.asarray(self.counts, dtype=np.int64)
        if not (self.keys.size == self.values.size == self.counts.size):
            raise ParameterError("keys, values and counts of a store must have the same length")
        if self.bf is not None and self.keys.size:
            self.unit, self.patterns_per_bf = build_unit(self.keys, self.values, self.counts, self.bf, self.apx_bit,
                                                         self.seed, self.bf_grouping)

    @property
    def n_bfs(self) -> int:
        """Filters queried per multiplication (0 for the ideal table)."""
        return len(self.patterns_per_bf)

    def lookup(self, keys) -> tuple[np.ndarray, np.ndarray]:
        """Per-multiplication answer for pattern keys: (values float32, served bool)."""
        keys = np.asarray(keys, dtype=np.uint64).ravel()
        if self.keys.size == 0:
            return np.zeros(keys.size, np.float32), np.zeros(keys.size, bool)
        if self.unit is not None:
            res = self.unit.query(keys, fill=np.float32(0))
            return res.values.astype(np.float32), res.hit
        order = np.argsort(self.keys)
        sk = self.keys[order]
        pos = np.minimum(np.searchsorted(sk, keys), sk.size - 1)
        hit = sk[pos] == keys
        return np.where(hit, self.values[order][pos], np.float32(0)).astype(np.float32), hit

    def table(self, ideal: bool = False) -> np.ndarray:
        """(2^apx, 2^apx) float32: the value returned for each pattern key, NaN where it is computed (apx <= 12).

        ``ideal=True`` gives the exact table of the stored patterns even when Bloom filters answer."""
        if self.apx_bit > bc.DENSE_MAX_BITS:
            raise ParameterError(f"apx_bit={self.apx_bit}: tables need apx_bit <= {bc.DENSE_MAX_BITS}")
        size = 1 << (2 * self.apx_bit)
        if self.unit is not None and not ideal:
            res = self.unit.query(np.arange(size, dtype=np.uint64), fill=np.float32(np.nan))
            t = np.where(res.hit, res.values, np.float32(np.nan)).astype(np.float32)
        else:
            t = np.full(size, np.nan, dtype=np.float32)
            t[self.keys[::-1].astype(np.int64)] = self.values[::-1]  # first (most frequent) wins on repeats
        n = 1 << self.apx_bit
        return t.reshape(n, n)


def build_unit(keys, values, counts, bf, apx_bit: int, seed: int, grouping: str = "pattern"):
    """Bloom filters for the stored patterns: one per pattern (``grouping="pattern"``) or one per distinct
    stored value (bit-exact float32) holding that value's patterns (``"value"``).

    Filters are added by decreasing total profiled count (ties: earlier pattern first), so the most
    frequent one wins a multi-claim. Returns ``(unit, patterns per filter)``."""
    m, k = bf
    validate.choice("bf_grouping", grouping, BF_GROUPINGS)
    keys = np.asarray(keys, dtype=np.uint64)
    if grouping == "value":
        vb = np.asarray(values, dtype=np.float32).view(np.uint32)
        uv, first, inv = np.unique(vb, return_index=True, return_inverse=True)
        inv = inv.ravel()
    else:
        first = inv = np.arange(keys.size)
        uv = np.asarray(values, dtype=np.float32).view(np.uint32)
    tot = np.bincount(inv, weights=np.asarray(counts, dtype=np.float64))
    order = np.lexsort((first, -tot))
    unit = bloom.BloomFunctionUnit(m, k, key_bytes(apx_bit), seed)
    sizes = []
    for gi in order:
        sel = inv == gi
        unit.add_output(np.float32(uv[gi:gi + 1].view(np.float32)[0]), keys[sel])
        sizes.append(int(sel.sum()))
    return unit, sizes


def stored_values(keys, apx_bit: int, mode: str, count=None, sums=None) -> np.ndarray:
    """float32 value of each pattern: ``"mean"`` = sums/count at the key (dense matrices), ``"truncated"`` =
    product of the operands with cleared low bits. For apx_bit = 32 both are the exact product."""
    validate.choice("stored_value", mode, STORED_VALUES)
    keys = np.asarray(keys, dtype=np.uint64)
    a, b = bc.split_pattern_keys(keys, apx_bit)
    if mode == "truncated" or apx_bit == 32:
        return (bc.key_floor_value(a, apx_bit).astype(np.float64) * bc.key_floor_value(b, apx_bit)).astype(np.float32)
    flat = keys.astype(np.int64)
    return (sums.ravel()[flat] / count.ravel()[flat]).astype(np.float32)


def check_bf(bf) -> tuple[int, int] | None:
    if bf is None:
        return None
    if not isinstance(bf, list | tuple) or len(bf) != 2:
        raise ParameterError(f"parameter bf={bf!r} must be None or an (m, k) pair")
    return bloom.check_m(bf[0]), bloom.check_k(bf[1])


def build_stores(model: nn.Module, profile_inputs: dict, apx_bit: int, n_patterns: int, stored_value: str = "mean",
                 bf=None, seed: int = 0, stats: dict | None = None, bf_grouping: str = "pattern") -> dict[str, LayerStore]:
    """Layer-based stores of the ``n_patterns`` most frequent patterns of each layer (§2.5.2).

    ``profile_inputs``: each layer's float32 inputs on the profiling images (:func:`bloom_cnn.exact_forward`).
    ``stats``: optional cache ``{(layer, apx_bit): (count, sums)}`` of dense profiling matrices.
    """
    apx_bit = bc.check_apx_bit(apx_bit)
    if bc.DENSE_MAX_BITS < apx_bit < 32:
        raise ParameterError(f"apx_bit={apx_bit}: stores are built for apx_bit <= {bc.DENSE_MAX_BITS} or 32 (exact)")
    validate.integer("n_patterns", n_patterns, 0, 100_000)
    validate.choice("stored_value", stored_value, STORED_VALUES)
    validate.choice("bf_grouping", bf_grouping, BF_GROUPINGS)
    bf = check_bf(bf)
    stores = {}
    for i, lay in enumerate(bc.layers_of(model)):
        x = profile_inputs[lay.name]
        if apx_bit <= bc.DENSE_MAX_BITS:
            key = (lay.name, apx_bit)
            if stats is not None and key in stats:
                count, sums = stats[key]
            else:
                count, sums = bc.pair_counts(x, lay, apx_bit, with_sums=True)
                if stats is not None:
                    stats[key] = (count, sums)
            keys = bc.top_keys(count, n_patterns) if n_patterns else np.zeros(0, np.uint64)
            counts = count.ravel()[keys.astype(np.int64)]
            values = stored_values(keys, apx_bit, stored_value, count, sums)
        else:
            keys, counts = (bc.sparse_top_patterns([lay], [x], apx_bit, n_patterns) if n_patterns
                            else (np.zeros(0, np.uint64), np.zeros(0, np.int64)))
            values = stored_values(keys, apx_bit, stored_value)
        stores[lay.name] = LayerStore(lay.name, apx_bit, keys, values, counts, bf, seed + i, bf_grouping)
    return stores


# --------------------------------------------------------------------------- served inference


def direct_layer_fn(stores: dict[str, LayerStore], served: dict):
    """``layer_fn`` for :func:`bloom_cnn.run_network` answering every multiplication separately (reference path)."""

    def fn(layer: bc.Layer, x4: np.ndarray) -> np.ndarray:
        store = stores.get(layer.name)
        n, _, h, w = x4.shape
        ho, wo = layer.out_hw(h, w)
        a, wt = bc.all_multiplications(x4, layer)  # (M, K, O)
        if a.size > DIRECT_MAX_PAIRS:
            raise ParameterError(f"direct path: {a.size} multiplications in layer {layer.name} exceed {DIRECT_MAX_PAIRS}; "
                                 "use fewer images")
        prod = a.astype(np.float64) * wt.astype(np.float64)
        if store is not None and store.keys.size:
            apx = store.apx_bit
            keys = bc.pattern_keys(bc.operand_keys(a, apx), bc.operand_keys(wt, apx), apx)
            vals, hit = store.lookup(keys)
            prod = np.where(hit.reshape(prod.shape), vals.reshape(prod.shape).astype(np.float64), prod)
            served[layer.name] = served.get(layer.name, 0) + int(hit.sum())
        out = prod.sum(axis=1)  # (M, O)
        return out.reshape(n, ho, wo, -1).transpose(0, 3, 1, 2)

    return fn


def tabulated_layer_fn(stores: dict[str, LayerStore], served: dict):
    """``layer_fn`` using one tabulated answer per pattern key and layer (apx_bit <= 12), built on first use."""
    cache = {}

    def fn(layer: bc.Layer, x4: np.ndarray) -> np.ndarray:
        store = stores.get(layer.name)
        if store is None or store.keys.size == 0:
            import torch
            import torch.nn.functional as F

            return F.conv2d(torch.from_numpy(x4).double(), torch.from_numpy(layer.weight).double(),
                            stride=layer.stride).numpy()
        apx = store.apx_bit
        if layer.name not in cache:
            cache[layer.name] = (pair_table(store.table()), bc.operand_keys(layer.weight, apx).astype(np.uint16))
        pairs, wkey = cache[layer.name]
        out, n_served = served_conv2d(x4, bc.operand_keys(x4, apx).astype(np.uint16), layer.weight, wkey, pairs,
                                      layer.stride)
        served[layer.name] = served.get(layer.name, 0) + n_served
        return out

    return fn


def served_forward(model: nn.Module, x, stores: dict[str, LayerStore] | None, direct: bool | None = None,
                   batch_size: int = 250):
    """Inference with served multiplications. Returns ``(logits float32, served {layer: count})``.

    ``direct=None`` picks the tabulated kernel when every store has apx_bit <= 12, else the direct path."""
    stores = stores or {}
    if direct is None:
        direct = any(s.apx_bit > bc.DENSE_MAX_BITS for s in stores.values() if s.keys.size)
    served: dict[str, int] = {}
    fn = direct_layer_fn(stores, served) if direct else tabulated_layer_fn(stores, served)
    logits, _ = bc.run_network(model, x, fn, batch_size)
    return logits, served


# --------------------------------------------------------------------------- false positives (on the test histogram)


def bf_stats(store: LayerStore, count: np.ndarray) -> dict:
    """How a store answers the multiplications counted in ``count`` ((2^apx, 2^apx) from :func:`bloom_cnn.pair_counts`).

    ``stored_right``: multiplications of stored patterns answered with their own value; ``stored_wrong``: of
    stored patterns claimed by another (earlier) filter; ``false_hits``: of patterns not stored but claimed by a
    filter (false positives); ``not_stored``: all multiplications of patterns not stored; ``key_fp_rate``: the
    fraction of all possible non-stored pattern keys that some filter claims."""
    ideal = store.table(ideal=True).ravel()
    real = store.table().ravel()
    c = count.ravel()
    stored = ~np.isnan(ideal)
    hit = ~np.isnan(real)
    same = stored & hit & (ideal.view(np.uint32) == real.view(np.uint32))
    return {"stored_right": int(c[same].sum()), "stored_wrong": int(c[stored & ~same].sum()),
            "false_hits": int(c[~stored & hit].sum()), "not_stored": int(c[~stored].sum()),
            "key_fp_rate": float(hit[~stored].mean()) if (~stored).any() else 0.0}


# --------------------------------------------------------------------------- energy


def hash_energy_fj() -> float:
    """Energy of one hash function of one filter per look-up (fJ): median over the five MUL units of Table 2.4
    of CMOS energy / (k * #Out), with k and #Out from Table 2.3 -- i.e. assuming every filter has its own k hash
    circuits, decoders and output register, as the growth of the filters' cost with #patterns in Table 2.5 needs."""
    t23 = bloomreuse.THESIS_TABLE_2_3
    per = []
    for app, e in THESIS_TABLE_2_4_MUL_FJ.items():
        row = t23[(t23["app"] == app) & (t23["fu"] == "MUL")].iloc[0]
        per.append(e / (row["k"] * row["n_out"]))
    return float(median(per))


def rbv_energy_fj(m: int) -> float:
    """Resistive Bloom-vector look-up energy (fJ) from Table 2.2, at the smallest listed size >= m (an upper bound
    for sizes the table does not list, e.g. m = 32 uses the 64-bit value; above 2048 bits, the 2048-bit value)."""
    bloom.check_m(m)
    sizes = sorted(THESIS_TABLE_2_2_RBV_FJ)
    fit = [s for s in sizes if s >= m]
    return THESIS_TABLE_2_2_RBV_FJ[fit[0] if fit else sizes[-1]]


def bf_energy_fj(m: int, k: int) -> float:
    """One look-up in one filter (fJ): k hash circuits (:func:`hash_energy_fj`) + the resistive vector (Table 2.2)."""
    return bloom.check_k(k) * hash_energy_fj() + rbv_energy_fj(m)


def thesis_overhead_per_bf(m: int, k: int) -> float:
    """Filter cost per look-up as a fraction of one multiplication that Table 2.5 implies: its rows satisfy
    E_save = HR - #patterns * c, so c = least-squares slope (through 0) of HR - E_save over #patterns, from the
    rows with this (m, k) (one filter per pattern there, n = 1)."""
    t = THESIS_TABLE_2_5[(THESIS_TABLE_2_5["m"] == m) & (THESIS_TABLE_2_5["k"] == k)]
    if t.empty:
        raise ParameterError(f"Table 2.5 has no BF setting (m={m}, k={k}); settings: "
                             f"{sorted(set(zip(THESIS_TABLE_2_5['m'], THESIS_TABLE_2_5['k'])))}")
    d = (t["hit_rate_pct"] - t["e_save_pct"]) / 100
    return float((t["n_patterns"] * d).sum() / (t["n_patterns"] ** 2).sum())


def overhead_per_bf(m: int, k: int, model: str = "horowitz", mult_pj: float = HOROWITZ_FP32_MULT_PJ) -> float:
    """Look-up cost of one filter in units of one fp32 multiplication, under ``model``:

    - ``"horowitz"``: :func:`bf_energy_fj` / (``mult_pj`` * 1000), default 3.7 pJ (Horowitz 2014, 45 nm);
    - ``"thesis"``: :func:`thesis_overhead_per_bf` (Table 2.5's own ratio; its multiplier is a FloPoCo
      6-stage pipelined fp32 unit at 1.0 V, whose energy the thesis does not state).
    """
    validate.choice("energy model", model, ENERGY_MODELS)
    if model == "thesis":
        return thesis_overhead_per_bf(m, k)
    return bf_energy_fj(m, k) / (validate.number("mult_pj", mult_pj, 1e-3, 1e3) * 1000.0)


def energy_saving(served_fraction: float, bfs_per_mult: float, m: int, k: int, model: str = "horowitz",
                  mult_pj: float = HOROWITZ_FP32_MULT_PJ) -> float:
    """Multiplication energy saving, 1 - E / E_exact, as a fraction.

    E_exact = M * E_mul for M multiplications. With filters: every multiplication queries the ``bfs_per_mult``
    filters of its layer (mean over multiplications), each costing :func:`overhead_per_bf` * E_mul, and a served
    multiplication (true or false hit) skips the multiplier. So E / E_exact = (1 - served) + bfs * overhead and
    the saving is ``served - bfs_per_mult * overhead_per_bf``. Not modelled: output-register reads on a hit,
    accumulation, memory, control.
    """
    return float(served_fraction - bfs_per_mult * overhead_per_bf(m, k, model, mult_pj))


# --------------------------------------------------------------------------- the Fig. 2.11 / Table 2.5 experiment


def _pairs(name: str, values, width: int, what: str) -> list[tuple]:
    out = []
    for v in validate.as_list(name, values):
        if not isinstance(v, list | tuple) or len(v) != width:
            raise ParameterError(f"parameter {name}: {v!r} must be a list [{what}]")
        out.append(tuple(v))
    return out


def plan_runs(modes, bf_main, bf_extra, stored_value: str = "truncated", ablation_values=()) -> list[tuple]:
    """The runs of the Fig. 2.11 / Table 2.5 experiment as ``(apx_bit, n_patterns, m, k, stored_value)``
    (``m = k = 0``: ideal table, no filters): every ``[apx_bit, N]`` of ``modes`` ideal and with the filters
    ``bf_main = [m, k]`` (None: none), every ``[apx_bit, N, m, k]`` of ``bf_extra``, all with ``stored_value``;
    then every mode ideal with each value rule of ``ablation_values``."""
    validate.choice("stored_value", stored_value, STORED_VALUES)
    modes = _pairs("modes", modes, 2, "apx_bit, n_patterns")
    if not modes:
        raise ParameterError("parameter modes is empty; give [apx_bit, n_patterns] pairs, e.g. [[9, 10]]")
    for apx, n in modes:
        validate.integer("modes: apx_bit", apx, 1, bc.DENSE_MAX_BITS)
        validate.integer("modes: n_patterns", n, 1, 10_000)
    validate.unique("modes", [list(v) for v in modes])
    try:
        bf_main = check_bf(bf_main)
    except ParameterError as exc:
        raise ParameterError(f"parameter bf_main={bf_main!r} is invalid ({exc}); allowed: None or [m, k] with m a "
                             f"power of two in [{bloom.M_MIN}, {bloom.M_MAX}] and k in [{bloom.K_MIN}, {bloom.K_MAX}]"
                             ) from None
    extra = _pairs("bf_extra", bf_extra, 4, "apx_bit, n_patterns, m, k")
    for apx, n, m, k in extra:
        validate.integer("bf_extra: apx_bit", apx, 1, bc.DENSE_MAX_BITS)
        validate.integer("bf_extra: n_patterns", n, 1, 10_000)
        try:
            check_bf([m, k])
        except ParameterError as exc:
            raise ParameterError(f"parameter bf_extra: {[apx, n, m, k]} is invalid ({exc}); allowed: m a power of two "
                                 f"in [{bloom.M_MIN}, {bloom.M_MAX}], k in [{bloom.K_MIN}, {bloom.K_MAX}]") from None
    validate.unique("bf_extra", [list(v) for v in extra])
    ablation = validate.as_list("ablation_values", ablation_values)
    if ablation:
        validate.unique("ablation_values", validate.choices("ablation_values", ablation, STORED_VALUES))
    runs = [(apx, n, 0, 0, stored_value) for apx, n in modes]
    if bf_main is not None:
        runs += [(apx, n, *bf_main, stored_value) for apx, n in modes]
    runs += [(apx, n, m, k, stored_value) for apx, n, m, k in extra]
    runs += [(apx, n, 0, 0, v) for v in ablation if v != stored_value for apx, n in modes]
    return runs


def check_inference_params(n_profile: int, n_test: int, seed: int, mult_pj: float, bf_grouping: str = "pattern") -> None:
    """Validate the scalar parameters of :func:`inference_experiment`."""
    validate.integer("n_profile", n_profile, 1, 60_000)
    validate.integer("n_test", n_test, 1, 10_000)
    validate.integer("seed", seed, 0, 2**31)
    validate.number("mult_pj", mult_pj, 1e-3, 1e3)
    validate.choice("bf_grouping", bf_grouping, BF_GROUPINGS)


def _saving_or_nan(row, model: str, mult_pj: float) -> float:
    """Energy saving of a configs row, NaN for runs without filters or settings the model does not cover."""
    if not row.m:
        return np.nan
    try:
        return energy_saving(row.served_fraction, row.bfs_per_mult, row.m, row.k, model, mult_pj)
    except ParameterError:
        return np.nan


def inference_experiment(runs: list[tuple], n_profile: int, n_test: int, seed: int = 0,
                         mult_pj: float = HOROWITZ_FP32_MULT_PJ, bf_grouping: str = "pattern", model_name: str = "lenet5",
                         progress=None):
    """Run LeNet on ``n_test`` MNIST test images for every run of :func:`plan_runs`, with stores profiled on
    ``n_profile`` training images (layer-based tables, §2.5.2), plus the exact network.

    Returns ``(configs, layers, meta)``: ``configs`` one row per run (accuracy, served fraction, filters per
    multiplication, energy saving under both models of :func:`overhead_per_bf`); ``layers`` one row per (run,
    layer): served multiplications during the run, and :func:`bf_stats` on the exact network's test patterns.
    """
    from axlib.models import get_model

    check_inference_params(n_profile, n_test, seed, mult_pj, bf_grouping)
    model, info = get_model(model_name, progress=False)
    xp, xt, yt = bc.mnist_sets(n_profile, n_test, seed)
    _, prof_in = bc.exact_forward(model, xp)
    logits0, test_in = bc.exact_forward(model, xt)
    layers = bc.layers_of(model)
    mults = {lay.name: lay.mults_per_image(test_in[lay.name].shape[1:]) * n_test for lay in layers}
    total = sum(mults.values())
    cfg_rows = [{"apx_bit": 0, "n_patterns": 0, "bf": "exact", "m": 0, "k": 0, "stored_value": "exact",
                 "correct": int((logits0.argmax(1) == yt).sum()), "n_test": n_test, "served": 0, "mults": total,
                 "bfs_per_mult": 0.0}]
    layer_rows = []
    stats: dict = {}
    test_counts: dict = {}
    for apx, n, m, k, value in runs:
        bf = (m, k) if m else None
        stores = build_stores(model, prof_in, apx, n, value, bf, seed, stats, bf_grouping)
        logits, served = served_forward(model, xt, stores)
        label = "ideal" if bf is None else f"BF ({m}, {k})"
        bfs = sum(mults[nm] * s.n_bfs for nm, s in stores.items()) / total
        cfg_rows.append({"apx_bit": apx, "n_patterns": n, "bf": label, "m": m, "k": k, "stored_value": value,
                         "correct": int((logits.argmax(1) == yt).sum()), "n_test": n_test,
                         "served": sum(served.values()), "mults": total, "bfs_per_mult": bfs})
        for lay in layers:
            s = stores[lay.name]
            if (lay.name, apx) not in test_counts:
                test_counts[(lay.name, apx)] = bc.pair_counts(test_in[lay.name], lay, apx)[0]
            row = {"apx_bit": apx, "n_patterns": n, "bf": label, "stored_value": value, "layer": lay.name,
                   "served": served.get(lay.name, 0), "mults": mults[lay.name], "n_stored": int(s.keys.size),
                   "n_bfs": s.n_bfs, "max_patterns_per_bf": max(s.patterns_per_bf) if s.patterns_per_bf else 0}
            row.update(bf_stats(s, test_counts[(lay.name, apx)]))
            layer_rows.append(row)
        if progress is not None:
            progress((apx, n, m, k, value))
    configs = pd.DataFrame(cfg_rows)
    configs["accuracy"] = configs["correct"] / configs["n_test"]
    configs["served_fraction"] = configs["served"] / configs["mults"]
    for model_kind in ENERGY_MODELS:
        configs[f"e_save_{model_kind}"] = [_saving_or_nan(r, model_kind, mult_pj) for r in configs.itertuples()]
    meta = {"model_test_accuracy": info.get("test_accuracy"), "hash_energy_fj": hash_energy_fj(), "mult_pj": mult_pj,
            "n_profile": n_profile, "n_test": n_test}
    return configs, pd.DataFrame(layer_rows), meta
