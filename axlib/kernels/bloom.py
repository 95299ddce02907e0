"""Bloom filters with H3 hashing (numba), a Bloom-filter function unit, and the false-positive formula.

What this module models (Akhlaghi 2020, thesis ch. 2, §2.3): a Bloom filter (BF) is an ``m``-bit
vector and ``k`` hash functions. Inserting a key sets the ``k`` bits its hashes address; a query
reports "present" when all ``k`` addressed bits are set. A stored key is therefore always found
(no false negatives), while an absent key is reported present with a probability that Eq. (2.1)
approximates (:func:`fp_rate`).

Hashing (Fig. 2.1 of the thesis, the H3 family of Carter and Wegman): every hash function ``h``
owns one random ``log2(m)``-bit coefficient per key bit; ``h(x)`` is the XOR of the coefficients of
the bits of ``x`` that are 1. The hardware splits the key into bytes and XORs per byte; here that
is precomputed: ``tables[h, b, v]`` is the XOR of the coefficients of the set bits of byte value
``v`` at byte position ``b`` (byte 0 = least significant), so one hash is the XOR of one table entry
per key byte. Coefficients come from a seeded :class:`numpy.random.Generator`.

Bit vector: packed little-endian into ``uint64`` words; bit ``p`` is bit ``p % 64`` of word
``p // 64`` (one word when ``m < 64``; only its low ``m`` bits are used).

:class:`BloomFunctionUnit` (thesis Fig. 2.2): one BF per stored output value, all sharing the ``k``
hash functions (the key is hashed once, as the shared hash circuit of one functional unit would);
a query returns that output on a hit and flags a miss otherwise. **Multi-claim rule:** when several
BFs report a key (a false positive in at least one of them, or a key stored under two outputs),
the BF added first wins; :meth:`BloomFunctionUnit.from_profile` adds BFs in order of decreasing
profiled output frequency, so the most frequent output wins. Such keys are counted
(:attr:`BFUResult.multi_claims`).

``reference_*`` functions are plain-Python implementations (hashing bit by bit from the
coefficients, no tables, no packing) that the tests compare the kernels against.
"""

from __future__ import annotations

import functools
import math
from decimal import Decimal, localcontext
from typing import NamedTuple

import numba
import numpy as np

from axlib.config import NUMBA_FLAGS, NUMBA_PARALLEL_FLAGS
from axlib.validate import ParameterError

#: Allowed ranges of the filter parameters.
M_MIN, M_MAX = 2, 2**30          # Bloom-vector length in bits (a power of two)
K_MIN, K_MAX = 1, 32             # number of hash functions
KEY_BYTES_MIN, KEY_BYTES_MAX = 1, 8

#: Keys per parallel task of the batched query kernels.
_CHUNK = 4096
#: Smaller batches are answered by the serial kernel: starting threads costs more than it saves there
#: (and much more when another job occupies a core and the parallel region waits for it).
PARALLEL_MIN = 1 << 16

_FP_FORMS = ("eq2.1", "finite", "exact")


# --------------------------------------------------------------------------- parameter checks


def _check_int(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ParameterError(f"parameter {name}={value!r} must be an integer in [{lo}, {hi}]")
    value = int(value)
    if not lo <= value <= hi:
        raise ParameterError(f"parameter {name}={value!r} is out of range; allowed: integers in [{lo}, {hi}]")
    return value


def check_m(m) -> int:
    """``m`` as an int: a power of two in [M_MIN, M_MAX] (the hash is a ``log2(m)``-bit address)."""
    m = _check_int("m", m, M_MIN, M_MAX)
    if m & (m - 1):
        raise ParameterError(f"parameter m={m} must be a power of two (each hash is a log2(m)-bit address); "
                             f"nearest allowed: {1 << (m.bit_length() - 1)} or {1 << m.bit_length()}")
    return m


def check_k(k) -> int:
    """``k`` (number of hash functions) as an int in [K_MIN, K_MAX]."""
    return _check_int("k", k, K_MIN, K_MAX)


def check_key_bytes(key_bytes) -> int:
    return _check_int("key_bytes", key_bytes, KEY_BYTES_MIN, KEY_BYTES_MAX)


def check_keys(keys, key_bytes: int, name: str = "keys") -> np.ndarray:
    """``keys`` as a flat C-contiguous ``uint64`` array; integers in [0, 2^(8*key_bytes))."""
    x = np.asarray(keys)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.integer) or x.size == 0):
        raise ParameterError(f"{name} must be an array of unsigned integer keys (uint32/uint64), got dtype {x.dtype}")
    x = x.reshape(-1)
    if x.size == 0:
        return np.zeros(0, dtype=np.uint64)
    hi = (1 << (8 * key_bytes)) - 1
    if np.issubdtype(x.dtype, np.signedinteger) and int(x.min()) < 0:
        raise ParameterError(f"{name} must be non-negative; got minimum {int(x.min())}")
    if int(x.max()) > hi:
        raise ParameterError(f"{name} must fit in key_bytes={key_bytes} bytes (values in [0, {hi}]); "
                             f"got maximum {int(x.max())}")
    return np.ascontiguousarray(x, dtype=np.uint64)


def _rng(seed) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or int(seed) < 0:
        raise ParameterError(f"parameter seed={seed!r} must be a non-negative integer or a numpy Generator")
    return np.random.default_rng(int(seed))


# --------------------------------------------------------------------------- hashing


def h3_coefficients(m: int, k: int, key_bytes: int, seed=0) -> np.ndarray:
    """Random H3 coefficients, shape (k, 8*key_bytes), uint32 values in [0, m): one per hash and key bit."""
    m, k, key_bytes = check_m(m), check_k(k), check_key_bytes(key_bytes)
    return _rng(seed).integers(0, m, size=(k, 8 * key_bytes), dtype=np.uint32)


def h3_tables(coefficients: np.ndarray) -> np.ndarray:
    """Per-byte tables, shape (k, key_bytes, 256): ``t[h, b, v]`` = XOR of ``coefficients[h, 8b + j]`` over set bits j of v."""
    c = np.asarray(coefficients)
    if c.dtype.kind not in "iu" or c.ndim != 2:
        raise ParameterError(f"coefficients must be a 2-D integer array (k, 8*key_bytes), got {c.dtype} {c.shape}")
    if c.size and (int(c.min()) < 0 or int(c.max()) >= 2**32):
        raise ParameterError(f"coefficients must lie in [0, 2^32) (bit addresses), got [{int(c.min())}, {int(c.max())}]")
    coefficients = c.astype(np.uint32)
    k, nbits = coefficients.shape
    if nbits % 8:
        raise ParameterError(f"coefficients must have 8*key_bytes columns, got {nbits}")
    nb = nbits // 8
    values = np.arange(256)
    tables = np.zeros((k, nb, 256), dtype=np.uint32)
    for j in range(8):
        on = ((values >> j) & 1).astype(bool)  # byte values with bit j set
        tables[:, :, on] ^= coefficients[:, j::8][:, :nb, None]
    return tables


@numba.njit(**NUMBA_FLAGS)
def _hash(x, tables, h):  # pragma: no cover - compiled
    """H3 hash ``h`` of key ``x`` (uint64): XOR of one table entry per key byte."""
    p = np.uint32(0)
    for b in range(tables.shape[1]):
        p ^= tables[h, b, (x >> np.uint64(8 * b)) & np.uint64(255)]
    return p


@numba.njit(**NUMBA_FLAGS)
def _is_set(bits, row, p):  # pragma: no cover - compiled
    return (bits[row, p >> 6] >> np.uint64(p & 63)) & np.uint64(1)


@numba.njit(**NUMBA_FLAGS)
def _insert(keys, tables, bits, row):  # pragma: no cover - compiled
    """Set the k addressed bits of every key in ``bits[row]`` (serial: concurrent ORs into one word would race)."""
    k = tables.shape[0]
    for i in range(keys.shape[0]):
        x = keys[i]
        for h in range(k):
            p = _hash(x, tables, h)
            bits[row, p >> 6] |= np.uint64(1) << np.uint64(p & 63)


@numba.njit(**NUMBA_FLAGS)
def _query_one_range(keys, tables, bits, row, out, start, stop):  # pragma: no cover - compiled
    """out[i] = all k addressed bits of keys[i] are set in bits[row], for start <= i < stop.

    ``tables`` are the H3 byte tables padded with zero tables to 4 or 8 key bytes (:func:`padded_tables`;
    a key's missing high bytes are 0 and byte value 0 maps to 0, so the hashes are unchanged), which lets
    the byte loop be written out. Branch-free: every key computes all k hashes and ANDs their bits; the
    earlier loop that stopped at the first clear bit ran at about half the speed (one unpredictable
    branch per hash; benchmarks/bloom_query.py)."""
    k = tables.shape[0]
    w = bits[row]
    m8 = np.uint64(255)
    if tables.shape[1] == 4:
        for i in range(start, stop):
            x = keys[i]
            b0, b1, b2, b3 = x & m8, (x >> np.uint64(8)) & m8, (x >> np.uint64(16)) & m8, (x >> np.uint64(24)) & m8
            hit = np.uint64(1)
            for h in range(k):
                t = tables[h]
                p = t[0, b0] ^ t[1, b1] ^ t[2, b2] ^ t[3, b3]
                hit &= w[p >> 6] >> np.uint64(p & 63)
            out[i] = hit & np.uint64(1)
    else:
        for i in range(start, stop):
            x = keys[i]
            b0, b1, b2, b3 = x & m8, (x >> np.uint64(8)) & m8, (x >> np.uint64(16)) & m8, (x >> np.uint64(24)) & m8
            b4, b5, b6, b7 = ((x >> np.uint64(32)) & m8, (x >> np.uint64(40)) & m8, (x >> np.uint64(48)) & m8,
                              x >> np.uint64(56))
            hit = np.uint64(1)
            for h in range(k):
                t = tables[h]
                p = t[0, b0] ^ t[1, b1] ^ t[2, b2] ^ t[3, b3] ^ t[4, b4] ^ t[5, b5] ^ t[6, b6] ^ t[7, b7]
                hit &= w[p >> 6] >> np.uint64(p & 63)
            out[i] = hit & np.uint64(1)


def padded_tables(tables: np.ndarray) -> np.ndarray:
    """H3 byte tables (k, key_bytes, 256) padded with zero tables to 4 (key_bytes <= 4) or 8 key bytes."""
    k, nb, _ = tables.shape
    out = np.zeros((k, 4 if nb <= 4 else 8, 256), dtype=np.uint32)
    out[:, :nb] = tables
    return out


@numba.njit(**NUMBA_PARALLEL_FLAGS)
def _query_one(keys, tables, bits, row, out):  # pragma: no cover - compiled
    """:func:`_query_one_range` over all keys, in parallel chunks."""
    n = keys.shape[0]
    for c in numba.prange((n + _CHUNK - 1) // _CHUNK):
        _query_one_range(keys, tables, bits, row, out, c * _CHUNK, min(n, (c + 1) * _CHUNK))


@numba.njit(**NUMBA_FLAGS)
def _query_all_range(keys, tables, bits, first, claims, start, stop):  # pragma: no cover - compiled
    """For keys[start:stop]: hash once, test every row of ``bits``; first[i] = first claiming row (-1: none),
    claims[i] = number of claiming rows."""
    k = tables.shape[0]
    rows = bits.shape[0]
    pos = np.empty(k, dtype=np.uint32)
    for i in range(start, stop):
        x = keys[i]
        for h in range(k):
            pos[h] = _hash(x, tables, h)
        f = -1
        cnt = 0
        for r in range(rows):
            hit = True
            for h in range(k):
                if _is_set(bits, r, pos[h]) == 0:
                    hit = False
                    break
            if hit:
                cnt += 1
                if f < 0:
                    f = r
        first[i] = f
        claims[i] = cnt


@numba.njit(**NUMBA_PARALLEL_FLAGS)
def _query_all(keys, tables, bits, first, claims):  # pragma: no cover - compiled
    """:func:`_query_all_range` over all keys, in parallel chunks."""
    n = keys.shape[0]
    for c in numba.prange((n + _CHUNK - 1) // _CHUNK):
        _query_all_range(keys, tables, bits, first, claims, c * _CHUNK, min(n, (c + 1) * _CHUNK))


@numba.njit(**NUMBA_FLAGS)
def _positions(keys, tables, out):  # pragma: no cover - compiled
    k = tables.shape[0]
    for i in range(keys.shape[0]):
        for h in range(k):
            out[i, h] = _hash(keys[i], tables, h)


def _words(m: int) -> int:
    return max(1, m // 64)


def _unpack(words: np.ndarray, m: int) -> np.ndarray:
    """Packed uint64 words -> bool array of m bits (bit p = bit p%64 of word p//64)."""
    as_bytes = np.ascontiguousarray(words, dtype="<u8").view(np.uint8)
    return np.unpackbits(as_bytes, bitorder="little")[:m].astype(bool)


# --------------------------------------------------------------------------- Bloom filter


class BloomFilter:
    """An ``m``-bit Bloom filter with ``k`` H3 hash functions over keys of ``key_bytes`` bytes.

    Args:
        m: Bloom-vector length in bits, a power of two in [2, 2^30].
        k: number of hash functions, in [1, 32].
        key_bytes: key width in bytes, in [1, 8]; keys must lie in [0, 2^(8*key_bytes)).
        seed: int >= 0 or a numpy Generator; draws the H3 coefficients.

    Raises:
        ParameterError (a ValueError) naming the parameter, its value and the allowed range.
    """

    def __init__(self, m: int, k: int, key_bytes: int = 4, seed=0):
        self.m, self.k, self.key_bytes = check_m(m), check_k(k), check_key_bytes(key_bytes)
        self.coefficients = h3_coefficients(self.m, self.k, self.key_bytes, seed)
        self.tables = h3_tables(self.coefficients)
        self.words = np.zeros((1, _words(self.m)), dtype=np.uint64)
        self.n_inserted = 0

    def insert(self, keys) -> None:
        """Add every key of the array (repeats allowed; ``n_inserted`` counts them all)."""
        keys = check_keys(keys, self.key_bytes)
        _insert(keys, self.tables, self.words, 0)
        self.n_inserted += int(keys.size)

    @functools.cached_property
    def _query_tables(self) -> np.ndarray:
        return padded_tables(self.tables)

    def query(self, keys) -> np.ndarray:
        """Bool array of the keys' shape: True where all k addressed bits are set ("maybe present")."""
        shape = np.shape(keys)
        keys = check_keys(keys, self.key_bytes)
        out = np.empty(keys.size, dtype=np.bool_)  # every entry is written
        if keys.size >= PARALLEL_MIN:
            _query_one(keys, self._query_tables, self.words, 0, out)
        elif keys.size:
            _query_one_range(keys, self._query_tables, self.words, 0, out, 0, keys.size)
        return out.reshape(shape)

    def __contains__(self, key) -> bool:
        return bool(self.query(np.array([key]))[0])

    def positions(self, keys) -> np.ndarray:
        """The k addressed bit positions of every key, shape (N, k), uint32."""
        keys = check_keys(keys, self.key_bytes)
        out = np.zeros((keys.size, self.k), dtype=np.uint32)
        _positions(keys, self.tables, out)
        return out

    def bits(self) -> np.ndarray:
        """The Bloom vector as a bool array of length m."""
        return _unpack(self.words[0], self.m)

    @property
    def fill(self) -> float:
        """Fraction of set bits; an absent key with independent uniform hashes is a false positive w.p. fill**k."""
        return float(np.unpackbits(self.words[0].view(np.uint8)).sum()) / self.m

    def expected_fp_rate(self, form: str = "eq2.1") -> float:
        """:func:`fp_rate` for this filter's m, k and the number of inserted keys."""
        return fp_rate(self.m, self.n_inserted, self.k, form)

    def __repr__(self) -> str:
        return f"BloomFilter(m={self.m}, k={self.k}, key_bytes={self.key_bytes}, n_inserted={self.n_inserted})"


# --------------------------------------------------------------------------- function unit


class BFUResult(NamedTuple):
    """Result of :meth:`BloomFunctionUnit.query`, arrays of the keys' shape."""

    values: np.ndarray   # stored output of the winning BF; ``fill`` where missed
    hit: np.ndarray      # bool: some BF claimed the key
    index: np.ndarray    # int64: winning BF (order of addition), -1 on a miss
    claims: np.ndarray   # int64: number of BFs that claimed the key

    @property
    def hit_rate(self) -> float:
        return float(self.hit.mean()) if self.hit.size else 0.0

    @property
    def multi_claims(self) -> int:
        """Keys claimed by more than one BF (resolved by the first-added-BF rule)."""
        return int((self.claims > 1).sum())


class BloomFunctionUnit:
    """A set of Bloom filters, one per stored output value, sharing ``k`` H3 hash functions (thesis Fig. 2.2).

    Every BF has the same ``m`` and ``k``; BFs are kept in the order they were added, and that order
    is the priority when several claim a key (the first wins). Parameters as :class:`BloomFilter`.
    """

    def __init__(self, m: int, k: int, key_bytes: int = 4, seed=0):
        self.m, self.k, self.key_bytes = check_m(m), check_k(k), check_key_bytes(key_bytes)
        self.coefficients = h3_coefficients(self.m, self.k, self.key_bytes, seed)
        self.tables = h3_tables(self.coefficients)
        self.words = np.zeros((0, _words(self.m)), dtype=np.uint64)
        self.outputs: list = []
        self.n_stored: list[int] = []

    def __len__(self) -> int:
        return len(self.outputs)

    def add_output(self, value, keys) -> int:
        """Append a BF holding ``keys`` (input patterns) for output ``value``; returns its index (its priority)."""
        keys = check_keys(keys, self.key_bytes)
        self.words = np.concatenate([self.words, np.zeros((1, self.words.shape[1]), dtype=np.uint64)])
        _insert(keys, self.tables, self.words, len(self.outputs))
        self.outputs.append(value)
        self.n_stored.append(int(np.unique(keys).size))
        return len(self.outputs) - 1

    @classmethod
    def from_profile(cls, keys, outputs, n_outputs: int, inputs_per_output: int, m: int, k: int,
                     key_bytes: int = 4, seed=0) -> BloomFunctionUnit:
        """Build from profiled (key, output) pairs, the selection of thesis §2.4.2.

        The ``n_outputs`` most frequent outputs get a BF each, added in order of decreasing frequency
        (ties: smaller output first); each BF stores the ``inputs_per_output`` keys most frequently seen
        with its output (ties: smaller key first).
        """
        n_outputs = _check_int("n_outputs", n_outputs, 1, 2**31)
        inputs_per_output = _check_int("inputs_per_output", inputs_per_output, 1, 2**31)
        keys = check_keys(keys, check_key_bytes(key_bytes))
        outputs = np.asarray(outputs).reshape(-1)
        if outputs.size != keys.size:
            raise ParameterError(f"keys and outputs must have the same length, got {keys.size} and {outputs.size}")
        unit = cls(m, k, key_bytes, seed)
        vals, counts = np.unique(outputs, return_counts=True)
        order = np.lexsort((vals, -counts))[:n_outputs]  # decreasing count, then increasing value
        for v in vals[order]:
            ks, kc = np.unique(keys[outputs == v], return_counts=True)
            top = ks[np.lexsort((ks, -kc))[:inputs_per_output]]
            unit.add_output(v, top)
        return unit

    def query(self, keys, fill=0) -> BFUResult:
        """Look every key up in all BFs; the first claiming BF (order of addition) gives the value."""
        shape = np.shape(keys)
        keys = check_keys(keys, self.key_bytes)
        first = np.full(keys.size, -1, dtype=np.int64)
        claims = np.zeros(keys.size, dtype=np.int64)
        if keys.size >= PARALLEL_MIN and len(self):
            _query_all(keys, self.tables, self.words, first, claims)
        elif keys.size and len(self):
            _query_all_range(keys, self.tables, self.words, first, claims, 0, keys.size)
        table = np.asarray(self.outputs) if len(self) else np.zeros(0)
        hit = first >= 0
        values = np.full(keys.size, fill, dtype=np.result_type(table.dtype, np.asarray(fill).dtype))
        values[hit] = table[first[hit]]
        return BFUResult(values.reshape(shape), hit.reshape(shape), first.reshape(shape), claims.reshape(shape))

    def bits(self) -> np.ndarray:
        """Bloom vectors as a bool array of shape (number of BFs, m)."""
        return np.array([_unpack(w, self.m) for w in self.words]).reshape(len(self), self.m)


# --------------------------------------------------------------------------- false-positive rate


def fp_rate(m, n, k, form: str = "eq2.1") -> float:
    """False-positive probability of an ``m``-bit BF with ``k`` hash functions holding ``n`` keys.

    Forms (all assume ideal hashing: the k*n addressed positions independent and uniform):

    - ``"eq2.1"``: Eq. (2.1) of the thesis, ``(1 - exp(-k n / m))^k``;
    - ``"finite"``: ``(1 - (1 - 1/m)^(k n))^k``, the form Eq. (2.1) approximates (fill probability of one bit,
      raised to the k-th power);
    - ``"exact"``: the exact probability ``E[(X/m)^k]`` over the number ``X`` of set bits (Bose et al.
      2008), computed as ``sum_j S(k, j) m!/(m-j)! / m^k * P(j given bits all set)`` with Stirling numbers
      of the second kind and inclusion-exclusion, in 60-digit decimal arithmetic. The two other forms
      slightly underestimate it when m is small.
    """
    m = _check_int("m", m, 1, 2**62)
    n = _check_int("n", n, 0, 2**62)
    k = check_k(k)
    if form == "eq2.1":
        return (1.0 - math.exp(-k * n / m)) ** k
    if form == "finite":
        return (1.0 - (1.0 - 1.0 / m) ** (k * n)) ** k
    if form == "exact":
        return _fp_exact(m, n, k)
    raise ParameterError(f"parameter form={form!r} is not allowed; allowed values: {list(_FP_FORMS)}")


def _stirling2(k: int) -> list[int]:
    """S(k, j) for j = 0..k."""
    row = [1]
    for i in range(1, k + 1):
        new = [0] * (i + 1)
        for j in range(1, i + 1):
            new[j] = j * (row[j] if j < len(row) else 0) + row[j - 1]
        row = new
    return row


def _fp_exact(m: int, n: int, k: int) -> float:
    t = k * n
    s = _stirling2(k)
    with localcontext() as ctx:
        ctx.prec = 60
        dm = Decimal(m)
        total = Decimal(0)
        falling = Decimal(1)
        for j in range(1, k + 1):
            falling *= dm - (j - 1)
            if falling == 0:
                break
            # probability that j given distinct bits are all set after t uniform throws
            all_set = sum((Decimal(-1) ** i) * math.comb(j, i) * ((dm - i) / dm) ** t for i in range(j + 1))
            total += s[j] * falling / dm ** k * all_set
        return float(total)


# --------------------------------------------------------------------------- plain-Python references


def reference_h3(key: int, coefficients_h) -> int:
    """One H3 hash: XOR of the coefficients of the set bits of ``key`` (bit i -> coefficients_h[i])."""
    p = 0
    for i, c in enumerate(coefficients_h):
        if (int(key) >> i) & 1:
            p ^= int(c)
    return p


def reference_bloom_bits(keys, coefficients, m: int) -> list[bool]:
    """The m-bit vector after inserting ``keys``, hashing bit by bit from the coefficients."""
    bits = [False] * m
    for key in keys:
        for coeffs in coefficients:
            bits[reference_h3(key, coeffs)] = True
    return bits


def reference_bloom_query(bits: list[bool], keys, coefficients) -> list[bool]:
    """Membership answers of a Bloom vector ``bits`` (from :func:`reference_bloom_bits`) for ``keys``."""
    return [all(bits[reference_h3(key, coeffs)] for coeffs in coefficients) for key in keys]


def reference_bfu_query(stored: list, keys, coefficients, m: int) -> list[tuple[int, int]]:
    """``(first claiming BF or -1, number of claiming BFs)`` per key; ``stored`` lists the key sets of the BFs in order."""
    vectors = [reference_bloom_bits(s, coefficients, m) for s in stored]
    out = []
    for key in keys:
        claimed = [i for i, v in enumerate(vectors) if reference_bloom_query(v, [key], coefficients)[0]]
        out.append((claimed[0] if claimed else -1, len(claimed)))
    return out
