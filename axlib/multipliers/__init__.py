"""Multipliers as truth tables, with their signedness convention, metrics and published numbers.

A multiplier is the table ``T`` with ``T[a + a_offset, w + w_offset] = a ⊗ w`` over the full
operand ranges (``a``: activation, first operand; ``w``: weight). Unsigned tables have offset 0;
signed 8-bit tables use offset 128 (the EvoApprox ``mul8s`` convention). Signed products from
an unsigned circuit use sign-magnitude around it (``sign_magnitude``).

Registry names (``get(name)``): ``exact8u``, ``exact8s``, ``trunc<k>`` (broken-array, columns
below k dropped), ``drum<k>`` (DRUM with k-bit segments), ``evoapprox:<circuit>`` (tables in
``AXLIB_DATA/multipliers``), ``smapprox:<dddd>`` (digits 0-3: STAND-INS for the SMApprox 8x8
multipliers of delaparra2021, built from documented 4x4 designs; see ``axlib.multipliers.smapprox``);
user tables via ``from_npy`` / ``from_function``.

8-bit x 16-bit multipliers of ponzina2022 (``Exact16``, ``MulF6B``, ``Mul8VH``) are
:class:`ByteSlicedMultiplier` objects (8x8 tables over the bytes of the 16-bit operand), from
``get_8x16(name)``; ``axlib.nn`` uses them for "8/16" layers.
"""

from axlib.multipliers.core import (
    Multiplier,
    drum,
    exact,
    from_function,
    from_npy,
    sign_magnitude,
    truncated,
)
from axlib.multipliers.evoapprox import evoapprox, evoapprox_names, published_evoapprox
from axlib.multipliers.metrics import error_matrix, error_metrics, mre_eq2_pct
from axlib.multipliers.registry import get, names
from axlib.multipliers.wide import ByteSlicedMultiplier, get_8x16

__all__ = [
    "ByteSlicedMultiplier",
    "Multiplier",
    "drum",
    "error_matrix",
    "error_metrics",
    "evoapprox",
    "evoapprox_names",
    "exact",
    "from_function",
    "from_npy",
    "get",
    "get_8x16",
    "mre_eq2_pct",
    "names",
    "published_evoapprox",
    "sign_magnitude",
    "truncated",
]
