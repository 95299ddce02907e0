"""Error metrics of a multiplier, computed exhaustively over its truth table."""

from __future__ import annotations

import numpy as np

from axlib.multipliers.core import Multiplier


def error_matrix(m: Multiplier) -> np.ndarray:
    """``E = T - a·w`` (int64, table order)."""
    return m.table - m.exact_table()


def error_metrics(m: Multiplier) -> dict:
    """Exhaustive metrics over all operand pairs.

    - ``mre_pct``: Eq. (2) of delaparra2021, mean over all pairs of ``|e| / max(1, |a·w|)``, in %.
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
