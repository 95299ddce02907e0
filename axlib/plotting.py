"""One figure style for the book, and the overlay of the paper's stated values beside ours."""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt

#: Colour per network / series, stable across pages (colour-blind safe, Okabe-Ito).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
PAPER_STYLE = {"marker": "D", "markersize": 8, "markerfacecolor": "none", "markeredgewidth": 1.6,
               "linestyle": "none", "color": "black"}


def use_style() -> None:
    mpl.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 150, "figure.figsize": (7.0, 4.2),
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8.5,
        "legend.frameon": False, "axes.prop_cycle": mpl.cycler(color=PALETTE),
        "lines.linewidth": 1.6, "lines.markersize": 4.5,
    })


def paper_points(ax, x, y, label: str = "paper (stated value)", **kw) -> None:
    """Draw the paper's stated values as hollow black diamonds, labelled as the paper's."""
    ax.plot(x, y, label=label, **{**PAPER_STYLE, **kw})


def paper_vline(ax, x: float, text: str, color: str = "black") -> None:
    """A dotted vertical marker for a threshold the paper states (e.g. 'drops at 11 bits')."""
    ax.axvline(x, color=color, linestyle=":", linewidth=1.2)
    ax.annotate(text, (x, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=8,
                color=color, ha="right", va="bottom")


def subplots(nrows: int = 1, ncols: int = 1, **kw):
    use_style()
    return plt.subplots(nrows, ncols, constrained_layout=True, **kw)
