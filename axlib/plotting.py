"""One figure style for the book, and the overlay of the paper's stated values beside ours.

Every figure of the book is made by :func:`subplots`, which fixes its size for the book's text column
(:data:`COLUMN_WIDTH_IN` wide, so SVG output is shown at its native size on a desktop and fonts stay at
their nominal point size) and stacks the panels of a multi-panel figure in one column, so that each panel
keeps the column's full width on a phone (a 1x3 row of panels would be a third of 400 px each). The
returned axes keep the shape the caller asked for (``axes[i, j]`` of a 2x2 request is the panel 2i+j of the
stack), so plotting code does not change with the layout. Figures are emitted as SVG in notebooks.
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

#: Colour per network / series, stable across pages (colour-blind safe, Okabe-Ito).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
PAPER_STYLE = {"marker": "D", "markersize": 8, "markerfacecolor": "none", "markeredgewidth": 1.6,
               "linestyle": "none", "color": "black"}
#: Width of every figure in inches: 576 CSS px (96 px/in), inside the theme's text column (about 785 px at a
#: 1400 px window), so a desktop shows the SVG at native size; on a 400 px phone it shrinks to about 0.64.
COLUMN_WIDTH_IN = 6.0
#: Height of one panel in inches (the caller's height per row, clamped to this range).
PANEL_HEIGHT_IN = (2.4, 3.8)
#: Font size in points at native size (the SVG is drawn 1:1 in the column on a desktop; about 7 pt on a phone).
FONT_PT = 11.5


def use_style() -> None:
    mpl.rcParams.update({
        "figure.dpi": 96, "savefig.dpi": 150, "figure.figsize": (COLUMN_WIDTH_IN, 3.6),
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "font.size": FONT_PT, "axes.titlesize": FONT_PT + 0.5, "axes.labelsize": FONT_PT,
        "xtick.labelsize": FONT_PT - 1, "ytick.labelsize": FONT_PT - 1, "legend.fontsize": FONT_PT - 1,
        "legend.frameon": True, "legend.framealpha": 0.85, "legend.edgecolor": "none", "legend.loc": "best",
        "axes.prop_cycle": mpl.cycler(color=PALETTE), "lines.linewidth": 1.6, "lines.markersize": 4.5,
        "svg.fonttype": "path", "svg.hashsalt": "axrepro",  # same figure, same SVG bytes
    })
    try:  # SVG in notebooks: crisp at any zoom (no-op outside IPython)
        from matplotlib_inline.backend_inline import set_matplotlib_formats
        set_matplotlib_formats("svg", metadata={"Date": None}, bbox_inches="tight")
    except ImportError:  # pragma: no cover - matplotlib-inline ships with ipykernel
        pass


def paper_points(ax, x, y, label: str = "paper (stated value)", **kw) -> None:
    """Draw the paper's stated values as hollow black diamonds, labelled as the paper's."""
    ax.plot(x, y, label=label, **{**PAPER_STYLE, **kw})


def paper_vline(ax, x: float, text: str, color: str = "black") -> None:
    """A dotted vertical marker for a threshold the paper states (e.g. 'drops at 11 bits')."""
    ax.axvline(x, color=color, linestyle=":", linewidth=1.2)
    ax.annotate(text, (x, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=FONT_PT - 2,
                color=color, ha="right", va="bottom")


def _share(value):
    """A sharex/sharey request carried over to the one-column stack ('row'/'col' no longer mean the same)."""
    return value if isinstance(value, bool) else False


def figure_size(nrows: int, ncols: int, figsize=None) -> tuple[float, float]:
    """(width, height) in inches of a stack of ``nrows * ncols`` panels in the book column."""
    lo, hi = PANEL_HEIGHT_IN
    panel_h = float(np.clip((figsize[1] / nrows) if figsize else 3.4, lo, hi))
    return COLUMN_WIDTH_IN, panel_h * nrows * ncols


def subplots(nrows: int = 1, ncols: int = 1, *, figsize=None, sharex=False, sharey=False, squeeze: bool = True,
             gridspec_kw=None, **kw):
    """``plt.subplots`` for the book: column width, panels stacked in one column, axes in the asked shape.

    ``figsize`` only informs the panel height (its height per row); the width is always
    :data:`COLUMN_WIDTH_IN`. ``width_ratios``/``height_ratios`` are dropped (one column). The result is
    ``(fig, axes)`` with ``axes`` shaped like ``plt.subplots(nrows, ncols, squeeze=squeeze)`` would return.
    """
    use_style()
    gridspec_kw = {k: v for k, v in (gridspec_kw or {}).items() if k not in ("width_ratios", "height_ratios")}
    n = nrows * ncols
    fig, stack = plt.subplots(n, 1, figsize=figure_size(nrows, ncols, figsize), sharex=_share(sharex),
                              sharey=_share(sharey), squeeze=False, constrained_layout=True,
                              gridspec_kw=gridspec_kw or None, **kw)
    axes = stack.reshape(nrows, ncols)
    if not squeeze:
        return fig, axes
    if n == 1:
        return fig, axes[0, 0]
    if nrows == 1 or ncols == 1:
        return fig, axes.reshape(-1)
    return fig, axes
