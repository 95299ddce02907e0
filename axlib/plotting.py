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
#: Width of every figure in inches: 451 CSS px (96 px/in; about 462 px with the tight bounding box), inside the
#: theme's text column (848 px at a 1400 px window), so a desktop shows the SVG at native size; on a 400 px phone
#: (384 px of text column, axrepro.css) it shrinks to about 0.83, and :data:`MIN_FONT_PT` to 9.1 pt.
COLUMN_WIDTH_IN = 4.7
#: Height of one panel in inches (the caller's height per row, clamped to this range).
PANEL_HEIGHT_IN = (2.4, 3.8)
#: Font size in points at native size (the SVG is drawn 1:1 in the column on a desktop; about 10 pt on a phone).
FONT_PT = 12.0
#: Smallest text in a figure at native size (tick labels, legends, annotations): 9 pt as rendered on a 400 px
#: phone, where figures are shown at 9 / 11 = 0.82 of native size or more (checked in the browser, axlib.bookcheck).
MIN_FONT_PT = 11.0
#: Widest a figure may be drawn, labels included (its tight bounding box, in inches): saved with 0.1 in of padding
#: on each side it is then at most 469 px, which a 384 px phone column shows at 9 / 11 of native size or more.
MAX_WIDTH_IN = 384 / (9 / MIN_FONT_PT) / 96 - 0.2


def use_style() -> None:
    mpl.rcParams.update({
        "figure.dpi": 96, "savefig.dpi": 150, "figure.figsize": (COLUMN_WIDTH_IN, 3.6),
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "font.size": FONT_PT, "axes.titlesize": FONT_PT + 0.5, "axes.labelsize": FONT_PT,
        "xtick.labelsize": MIN_FONT_PT, "ytick.labelsize": MIN_FONT_PT, "legend.fontsize": MIN_FONT_PT,
        "legend.title_fontsize": MIN_FONT_PT,
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
    ax.annotate(text, (x, 0.02), xycoords=("data", "axes fraction"), rotation=90, fontsize=MIN_FONT_PT,
                color=color, ha="right", va="bottom")


def legend_ncol(labels, width_chars: int = 44) -> int:
    """Columns for a legend of ``labels`` across the column width (about ``width_chars`` characters at
    :data:`MIN_FONT_PT` beside the handles): 1 to 3."""
    longest = max((len(str(t)) for t in labels), default=1) + 4  # handle and padding
    return int(np.clip(width_chars // longest, 1, 3))


def legend_below(ax, handles=None, labels=None, ncol: int | None = None, **kw):
    """A legend for ``ax`` under its x-axis label, outside the data (never over it); constrained layout makes room.

    Handles and labels default to the panel's own; ``ncol`` to :func:`legend_ncol`. Returns the legend.
    """
    if handles is None:
        handles, labels = ax.get_legend_handles_labels()
    ncol = ncol or legend_ncol(labels)
    leg = ax.legend(handles, labels, loc="upper center", ncol=ncol, frameon=False, borderaxespad=0.0,
                    bbox_to_anchor=(0.5, 0.0), **kw)
    _anchor_below_labels(ax, leg)
    return leg


def figure_legend(fig, ncol: int | None = None, **kw):
    """One legend for the whole figure, below all panels, with each label once (the series the panels share);
    the panels' own legends are removed. Returns the legend (None when no panel has a labelled series)."""
    seen = {}
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not seen:
        return None
    return fig.legend(list(seen.values()), list(seen), loc="outside lower center", frameon=False,
                      ncol=ncol or legend_ncol(seen), **kw)


def _anchor_below_labels(ax, leg) -> None:
    """Keep ``leg`` (anchored at the panel's bottom centre) just below the panel's tick labels and x label,
    re-measured whenever the legend is drawn or measured (constrained layout measures it through
    ``get_tightbbox``), so it never overlaps them whatever their size and the layout leaves room for it."""

    def place(renderer):
        axes_box = ax.get_window_extent(renderer)
        tight = ax.xaxis.get_tightbbox(renderer)
        below = min(axes_box.y0, tight.y0) if tight is not None else axes_box.y0
        y = (below - axes_box.y0) / max(axes_box.height, 1.0) - 0.02  # in axes fraction, a little gap
        leg.set_bbox_to_anchor((0.5, y), transform=ax.transAxes)

    def placed_first(method):
        def wrapper(renderer=None):
            if renderer is not None:
                place(renderer)
            return method(renderer)
        return wrapper

    for name in ("draw", "get_window_extent", "get_tightbbox"):
        setattr(leg, name, placed_first(getattr(leg, name)))


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
    _watch(fig)
    if not squeeze:
        return fig, axes
    if n == 1:
        return fig, axes[0, 0]
    if nrows == 1 or ncols == 1:
        return fig, axes.reshape(-1)
    return fig, axes


# --------------------------------------------------------------------------- layout audit

def _visible_texts(fig, renderer) -> list[tuple[str, str, object, object]]:
    """(name, group, text, bounding box in display px) of every visible, non-empty text a reader sees, once each.

    ``group`` names a kind of text in one panel (e.g. "panel 2 x tick labels"), for reporting font sizes once.
    """
    out, seen = [], set()

    def add(name, group, text):
        if text is None or id(text) in seen or not text.get_visible() or not text.get_text().strip():
            return
        seen.add(id(text))  # the suptitle is also one of fig.texts
        out.append((name, group, text, text.get_window_extent(renderer)))

    for name in ("_suptitle", "_supxlabel", "_supylabel"):
        add(name.strip("_"), name.strip("_"), getattr(fig, name, None))
    for t in fig.texts:
        add(f"figure text '{t.get_text()[:30]}'", "figure texts", t)
    for i, ax in enumerate(fig.axes, 1):
        if not ax.get_visible():
            continue
        where = f"panel {i}"
        for t in (ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None)):
            add(f"{where} title", f"{where} title", t)
        for axis, letter in ((ax.xaxis, "x"), (ax.yaxis, "y")):
            if not (ax.axison and axis.get_visible()):  # ax.axis("off"); the shared x axis of a twinx panel
                continue
            add(f"{where} {letter} label", f"{where} {letter} label", axis.label)
            add(f"{where} {letter} offset", f"{where} {letter} tick labels", axis.offsetText)
            for tick in axis._update_ticks():  # the ticks drawn in the view (matplotlib's own selection)
                for label in (tick.label1, tick.label2):
                    add(f"{where} {letter} tick label '{label.get_text()}'", f"{where} {letter} tick labels", label)
        for t in ax.texts:
            add(f"{where} annotation '{t.get_text()[:30]}'", f"{where} annotations", t)
    return out


def _legends(fig) -> list[tuple[str, object, object]]:
    """(name, legend, axes or None) of every visible legend."""
    found = [(f"panel {i} legend", ax.get_legend(), ax) for i, ax in enumerate(fig.axes, 1)
             if ax.get_legend() is not None and ax.get_legend().get_visible()]
    return found + [("figure legend", leg, None) for leg in fig.legends if leg.get_visible()]


def _data_points_px(ax, step_px: float = 3.0) -> list[tuple[str, np.ndarray]]:
    """(series label, N x 2 display px) of what ``ax`` plots in data coordinates: line vertices, points every
    ``step_px`` along drawn line segments, scatter points, error-bar segments and the value ends of bars."""
    series = []
    inside = ax.get_window_extent()

    def keep(label, xy):
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        xy = xy[np.isfinite(xy).all(axis=1)]
        xy = xy[(xy[:, 0] >= inside.x0) & (xy[:, 0] <= inside.x1) & (xy[:, 1] >= inside.y0) & (xy[:, 1] <= inside.y1)]
        if len(xy):
            series.append((label, xy))

    def along(xy):
        xy = np.asarray(xy, dtype=float).reshape(-1, 2)
        pts = [xy]
        for a, b in zip(xy[:-1], xy[1:], strict=False):
            n = int(np.hypot(*(b - a)) // step_px) if np.isfinite(a).all() and np.isfinite(b).all() else 0
            if n > 1:
                pts.append(a + (b - a) * np.linspace(0, 1, n)[:, None])
        return np.concatenate(pts)

    for line in ax.get_lines():
        if not line.get_visible() or line.get_transform() is not ax.transData:
            continue  # axhline/axvline references span the axes in axes coordinates: not data
        xy = line.get_transform().transform(line.get_xydata())
        if line.get_linestyle() not in ("None", "none", " ", ""):
            xy = along(xy)
        keep(line.get_label(), xy)
    for coll in ax.collections:
        if not coll.get_visible():
            continue
        offsets = coll.get_offsets()
        if len(offsets) and coll.get_offset_transform() is ax.transData and type(coll).__name__ == "PathCollection":
            keep(coll.get_label(), ax.transData.transform(offsets))
        elif type(coll).__name__ == "LineCollection" and coll.get_transform() is ax.transData:  # error bars
            for seg in coll.get_segments():
                keep(coll.get_label(), along(ax.transData.transform(seg)))
    for container in ax.containers:  # bars (BarContainer), one series each; error-bar containers are lines above
        if type(container).__name__ != "BarContainer":
            continue
        ends = []
        for patch in container.patches:
            b = patch.get_window_extent()
            if patch.get_visible() and b.width > 0 and b.height > 0:
                value_end = b.y1 if patch.get_height() >= 0 else b.y0  # the end that shows the bar's value
                ends.append(np.column_stack([np.linspace(b.x0, b.x1, 5), np.full(5, value_end)]))
        if ends:
            keep(container.get_label(), np.concatenate(ends))
    return series


def _overlap_px(a, b) -> float:
    """Area in px² where two display bounding boxes overlap (each shrunk by 1 px: touching is not overlapping)."""
    w = min(a.x1, b.x1) - max(a.x0, b.x0) - 2
    h = min(a.y1, b.y1) - max(a.y0, b.y0) - 2
    return max(w, 0.0) * max(h, 0.0)


def layout_problems(fig, renderer=None) -> list[str]:
    """What a reader of ``fig`` as drawn cannot read: a figure wider than :data:`MAX_WIDTH_IN` with its labels,
    each text smaller than :data:`MIN_FONT_PT`, texts that overlap one another or a legend (tick labels, titles,
    axis labels, annotations), and legends drawn over the data of their panel (see :func:`_data_points_px`;
    reference lines in axes coordinates do not count).

    ``renderer``: the one that drew the figure (a draw event's); by default the figure is laid out and drawn
    without output first. Returns one sentence per problem, empty when the figure reads well.
    """
    if renderer is None:
        fig.draw_without_rendering()  # lays the figure out (constrained layout) as a save would
        renderer = fig._get_renderer()
    problems = []
    width_in = fig.get_tightbbox(renderer).width  # in inches: what a tight save keeps, before its padding
    if width_in > MAX_WIDTH_IN:
        problems.append(f"figure is {width_in:.2f} in wide with its labels, over {MAX_WIDTH_IN:.2f} in: a phone shrinks "
                        f"it below 9 pt (move what sticks out: a legend beside the axes, long labels or titles)")
    texts = _visible_texts(fig, renderer)
    small: dict[str, float] = {}
    for _, group, t, _ in texts:
        if t.get_fontsize() < MIN_FONT_PT - 1e-6:
            small[group] = min(small.get(group, MIN_FONT_PT), t.get_fontsize())
    problems += [f"{group}: {size:g} pt, below {MIN_FONT_PT:g} pt" for group, size in small.items()]
    legends = _legends(fig)
    for name, leg, _ in legends:
        for t in leg.get_texts() + [leg.get_title()]:
            if t.get_text().strip() and t.get_fontsize() < MIN_FONT_PT - 1e-6:
                problems.append(f"{name} text '{t.get_text()[:30]}': {t.get_fontsize():g} pt, below {MIN_FONT_PT:g} pt")
                break
    boxes = [(name, box) for name, _, _, box in texts] + [(name, leg.get_window_extent(renderer)) for name, leg, _ in legends]
    for i, (name_a, a) in enumerate(boxes):
        for name_b, b in boxes[i + 1:]:
            if _overlap_px(a, b) > 0:
                problems.append(f"{name_a} overlaps {name_b}")
    for name, leg, ax in legends:
        box = leg.get_window_extent(renderer)
        for ax_data in ([ax] if ax is not None else fig.axes):
            for label, xy in _data_points_px(ax_data):
                covered = int(((xy[:, 0] > box.x0 + 1) & (xy[:, 0] < box.x1 - 1)
                               & (xy[:, 1] > box.y0 + 1) & (xy[:, 1] < box.y1 - 1)).sum())
                if covered:
                    series = label if label and not label.startswith("_") else "unlabelled series"
                    problems.append(f"{name} covers data of '{series}' ({covered} points)")
    return problems


_AUDIT = {"path": None, "figures": {}}


def audit_to(path) -> None:
    """Record :func:`layout_problems` of every figure :func:`subplots` makes from now on, each time it is drawn
    (the last drawing counts), as JSON in ``path``: ``{"figures": n, "problems": {"figure k": [...]}}``.
    ``axlib.repro`` calls it at the top of every page it executes and keeps the result with the page."""
    from pathlib import Path

    _AUDIT["path"] = Path(path)
    _AUDIT["figures"] = {}
    _write_audit()


def _write_audit() -> None:
    import json

    figures = _AUDIT["figures"]
    body = {"figures": len(figures), "problems": {k: v for k, v in figures.items() if v}}
    _AUDIT["path"].write_text(json.dumps(body, indent=1))


def _watch(fig) -> None:
    if _AUDIT["path"] is None:
        return
    key = f"figure {len(_AUDIT['figures']) + 1}"
    _AUDIT["figures"][key] = []

    def on_draw(event):
        try:
            _AUDIT["figures"][key] = layout_problems(fig, event.renderer)
        except Exception as exc:  # the audit must never break a page; its failure is reported as a problem
            _AUDIT["figures"][key] = [f"layout audit failed: {type(exc).__name__}: {exc}"]
        _write_audit()

    fig.canvas.mpl_connect("draw_event", on_draw)
