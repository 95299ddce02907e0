"""Error metrics of a multiplier, computed exhaustively over its truth table."""

from __future__ import annotations

import numpy as np

from axlib.multipliers.core import Multiplier


def error_matrix(m: Multiplier) -> np.ndarray:
    """``E = T - a·w`` (int64, table order)."""
    return m.table - m.exact_table()


def error_metrics(m: Multiplier) -> dict:
    """Exhaustive metrics over all operand pairs.

    - ``mre_pct``: the *all-pairs* reading of Eq. (2) of delaparra2021: the mean over every operand pair of
      ``|e| / max(1, |a·w|)``, in % (Eq. (2)'s divisor, averaged over the full operand range). The literal
      reading of Eq. (2), over magnitudes ``0..2^(bits-1)`` only, is :func:`mre_eq2_pct`; for mul8u_KEM the
      two give 0.175 % and 0.553 %.
    - ``mre_pct_evoapprox``: EvoApprox's definition, mean of ``|e| / |a·w|`` over pairs with ``a·w ≠ 0``.
    - ``mean_error``, ``error_std``: mean and standard deviation of ``e`` (product units).
    - ``worst_case_error``: ``max |e|``; ``error_probability_pct``: share of pairs with ``e ≠ 0``.
    - ``error_rank``: rank of the error matrix ``E`` (the low-rank path needs it small).
    """
    exact = m.exact_table()
    e = m.table - exact
    abs_e = np.abs(e).astype(np.float64)
    nz = exact != 0
    return {
        "multiplier": m.name,
        "mre_pct": 100.0 * float(np.mean(abs_e / np.maximum(1, np.abs(exact)))),
        "mre_pct_evoapprox": 100.0 * float(np.mean(abs_e[nz] / np.abs(exact[nz]))),
        "mean_error": float(e.mean()),
        "error_std": float(e.std()),
        "worst_case_error": int(np.abs(e).max()),
        "error_probability_pct": 100.0 * float(np.mean(e != 0)),
        "error_rank": int(np.linalg.matrix_rank(e.astype(np.float64))) if e.any() else 0,
    }


def mre_eq2_pct(m: Multiplier) -> float:
    """Eq. (2) of delaparra2021 (§3.1), read literally, in %.

    ``MRE = 1/(n·n) · Σ_{i=0..n} Σ_{j=0..n} |(i·j)_approx - i·j| / max(1, |i·j|)`` with ``n = 2^(bw-1)``,
    ``bw`` the operand width (8 for 8-bit multipliers: magnitudes 0..128, the magnitudes a sign-magnitude
    8-bit operand can take). As printed, the sum has ``(n+1)^2`` terms but is divided by ``n·n``; we keep
    that. Only unsigned tables (operand values 0..2^bw - 1, which cover 0..n) are accepted: a signed
    two's-complement table cannot represent ``+n``. Products in units of the integer product; result in %.

    This differs from ``error_metrics(m)["mre_pct"]`` (all 2^bw x 2^bw pairs): the literal reading never sees
    operands above ``n`` and so weights small products, whose relative errors are largest, more heavily.
    """
    if m.signed:
        raise ValueError(f"{m.name}: Eq. (2) is read over unsigned magnitudes 0..2^(bw-1); this table is signed")
    if m.a_bits != m.w_bits:
        raise ValueError(f"{m.name}: Eq. (2) assumes equal operand widths, got {m.a_bits} and {m.w_bits} bits")
    from axlib.multipliers.smapprox import mre_eq2  # the table-level formula; this adds the multiplier checks

    return mre_eq2(m.table, m.a_bits)
