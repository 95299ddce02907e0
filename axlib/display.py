"""How tables and figures read in the book: one number format for every page, "—" for missing values, units
in table headers, and a layout audit of every figure.

:func:`book_display` is run by ``axlib.repro`` at the top of every notebook it executes (a hidden cell), so
each page's plain and styled DataFrames use the same rules without per-page code; explicit ``Styler.format``
calls on a page still win. Plain DataFrames are shown with :func:`readable_header` applied to their column labels
and index names (``accuracy_pct`` reads "accuracy (%)"); the raw runs keep their tidy column names.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

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


#: Column-name suffixes that name a unit, and how the unit is written in a header.
UNIT_SUFFIXES = {
    "pct": "%", "pp": "pp", "x": "×", "M": "M",
    "s": "s", "ms": "ms", "us": "µs", "ns": "ns",
    "fJ": "fJ", "pJ": "pJ", "nJ": "nJ", "uJ": "µJ", "mJ": "mJ", "mj": "mJ",
    "uW": "µW", "mW": "mW", "W": "W", "um2": "µm²", "mm2": "mm²",
    "mb": "MB", "MB": "MB", "KB": "KB", "KiB": "KiB", "MiB": "MiB", "dB": "dB", "db": "dB", "dBW": "dBW",
}
#: Names ending in ``_s`` that are not seconds (e.g. the learned step size ``learn_s`` of fig4_5).
NOT_SECONDS = {"learn_s"}


def readable_header(label):
    """A column label as a reader sees it: a unit suffix becomes the unit in brackets, and then underscores
    between words become spaces (``mean_error_pct`` -> "mean error (%)", ``area_um2`` -> "area (µm²)").

    Only labels ending in a unit of :data:`UNIT_SUFFIXES` change (others may be names: ``lenet_tinydnn``); rates
    (``..._per_s``) and the names in :data:`NOT_SECONDS` are left as written, and a symbol-like stem (a part of
    one letter or digit: ``q_w_pct``) keeps its underscores, which are subscripts (-> "q_w (%)").
    Non-strings and labels with a space pass through.
    """
    if not isinstance(label, str) or " " in label or label in NOT_SECONDS:
        return label
    parts = label.split("_")
    if len(parts) < 2 or parts[-1] not in UNIT_SUFFIXES or "per" in parts or not all(parts[:-1]):
        return label
    stem = parts[:-1]
    text = "_".join(stem) if any(len(p) < 2 for p in stem) else " ".join(stem)
    return f"{text} ({UNIT_SUFFIXES[parts[-1]]})"


def readable_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with :func:`readable_header` applied to its column labels and to the names of its index levels
    (row labels are data: left as they are)."""
    out = df.rename(columns=readable_header)
    out.columns = out.columns.set_names([readable_header(n) for n in out.columns.names])
    out.index = out.index.set_names([readable_header(n) for n in out.index.names])
    return out


def _html_of_frame(df: pd.DataFrame) -> str | None:
    return readable_frame(df)._repr_html_()


def layout_audit_path(build: Path, page: str) -> Path:
    """Where the layout audit of the figures of ``page`` (a notebook id) executed into ``build`` is written."""
    return build / "layout" / f"{page}.json"


def book_display(page: str | None = None) -> None:
    """Set pandas' display options for the book (see the module docstring); with ``page`` (its notebook id) and
    ``AXLIB_BUILD`` set, record the layout problems of every figure the page draws (:func:`axlib.plotting.audit_to`)
    in :func:`layout_audit_path`."""
    if page and os.environ.get("AXLIB_BUILD"):
        from axlib import plotting

        path = layout_audit_path(Path(os.environ["AXLIB_BUILD"]), page)
        path.parent.mkdir(parents=True, exist_ok=True)
        plotting.audit_to(path)
    pd.set_option("display.float_format", format_number)
    pd.set_option("styler.format.na_rep", MISSING)
    pd.set_option("styler.format.precision", 4)
    pd.set_option("display.max_colwidth", 200)
    try:  # inside IPython: plain DataFrames are shown with readable headers
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the kernel
        return
    shell = get_ipython()
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, _html_of_frame)
