"""How tables read in the book: one number format for every page, and "—" for missing values.

:func:`book_display` is run by ``axlib.repro`` at the top of every notebook it executes (a hidden cell), so
each page's plain and styled DataFrames use the same rules without per-page code; explicit ``Styler.format``
calls on a page still win.
"""

from __future__ import annotations

import math

import pandas as pd

#: Written where a table has no value (not measured, or not applicable to that row).
MISSING = "—"


def format_number(x: float) -> str:
    """A float for a table cell: numbers ≥ 10 000 rounded to whole units with thousands separators, others to 4 significant
    digits without trailing zeros (0.866, 99.18, 1442, 1.2e-05); NaN as :data:`MISSING`."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return MISSING
    if abs(x) >= 1e4:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def book_display() -> None:
    """Set pandas' display options for the book (see the module docstring)."""
    pd.set_option("display.float_format", format_number)
    pd.set_option("styler.format.na_rep", MISSING)
    pd.set_option("styler.format.precision", 4)
    pd.set_option("display.max_colwidth", 200)
