"""Pages and page parts the book build generates from data: coverage matrix, claims figure, page summaries,
raw-run downloads, the interactive ledger table, and the clean-up of executed notebooks for display.

Everything here is computed at build time from three sources: the catalogue of the five works' figures and
tables (``book/catalogue.yml``), the claims the notebooks recorded while executing (``<build>/claims``), and
the stored raw runs. Nothing is hand-written into a generated page.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from axlib import paths
from axlib.validate import ParameterError

CATALOGUE = paths.PROJECT_ROOT / "book" / "catalogue.yml"
STATUSES = ("reproduced", "partial", "not yet", "needs data")
#: Status labels in the matrix: plain text marks that every system font has (no emoji font needed).
STATUS_MARK = {"reproduced": "✓ reproduced", "partial": "◐ partial", "not yet": "○ not yet",
               "needs data": "✗ needs data"}
_ITEM_FIELDS = {"item", "what", "notebook", "substitutions", "status", "reason"}
_OVERRIDES = {"needs-data": "needs data", "partial": "partial", "not-yet": "not yet"}
#: Lines of build logs that notebooks print and that must not reach a page.
_NOISE = re.compile(r"^\[(runs|repro|sweep)\]")


# --------------------------------------------------------------------------- catalogue

def load_catalogue(path: Path = CATALOGUE, known_notebooks: set[str] | None = None) -> pd.DataFrame:
    """The catalogue as one row per figure/table: ``work, work_title, item, what, notebook, substitutions,
    status_override, reason``. Fails with the entry named on an unknown field, a missing field, a duplicate
    notebook, an unknown status or (with ``known_notebooks``) a notebook id that has no page."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParameterError(f"catalogue {path}: cannot read it ({exc})") from None
    rows, seen = [], set()
    for work, body in (doc or {}).get("works", {}).items():
        for i, entry in enumerate(body.get("items", [])):
            where = f"catalogue {path.name}, {work} item {i + 1} ({entry.get('item', '?')})"
            unknown = set(entry) - _ITEM_FIELDS
            if unknown:
                raise ParameterError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(_ITEM_FIELDS)}")
            if not entry.get("item") or not entry.get("what"):
                raise ParameterError(f"{where}: 'item' and 'what' are required")
            nb = entry.get("notebook")
            if nb is not None:
                if nb in seen:
                    raise ParameterError(f"{where}: notebook {nb} is catalogued twice")
                seen.add(nb)
                if known_notebooks is not None and nb not in known_notebooks:
                    raise ParameterError(f"{where}: notebook {nb} has no page; pages: {sorted(known_notebooks)}")
            override = entry.get("status")
            if override is not None and override not in _OVERRIDES:
                raise ParameterError(f"{where}: status {override!r} is not one of {sorted(_OVERRIDES)}")
            if override and not entry.get("reason"):
                raise ParameterError(f"{where}: status {override!r} needs a 'reason'")
            rows.append({"work": work, "work_title": body.get("title", work), "item": entry["item"],
                         "what": entry["what"], "notebook": nb, "substitutions": entry.get("substitutions", ""),
                         "status_override": _OVERRIDES.get(override), "reason": entry.get("reason", "")})
    return pd.DataFrame(rows, columns=["work", "work_title", "item", "what", "notebook", "substitutions",
                                       "status_override", "reason"])


def claim_counts(claims_df: pd.DataFrame, notebook: str | None) -> dict[str, int]:
    """PASS/FAIL counts of one notebook (all zero for None): keys ``paper_pass, paper_fail, sanity_pass, ...``."""
    out = {f"{k}_{v}": 0 for k in ("paper", "sanity", "target") for v in ("pass", "fail")}
    if claims_df.empty or notebook is None:
        return out
    part = claims_df[claims_df["notebook"] == notebook]
    for (kind, verdict), n in part.groupby(["kind", "verdict"]).size().items():
        out[f"{kind}_{verdict.lower()}"] = int(n)
    return out


def coverage(catalogue: pd.DataFrame, claims_df: pd.DataFrame, executed: set[str]) -> pd.DataFrame:
    """Status of every catalogued figure/table (see the catalogue's header for the rule).

    ``executed`` holds the notebook ids whose page was executed in this build: a catalogued page that was not
    executed counts as *not yet*.
    """
    rows = []
    for r in catalogue.itertuples():
        counts = claim_counts(claims_df, r.notebook)
        n_paper = counts["paper_pass"] + counts["paper_fail"]
        if r.status_override == "needs data":
            status, reason = "needs data", r.reason
        elif not r.notebook or r.notebook not in executed or r.status_override == "not yet":
            status, reason = "not yet", r.reason or "no page yet"
        elif r.status_override == "partial":
            status, reason = "partial", r.reason
        elif counts["paper_fail"]:
            status, reason = "partial", f"{counts['paper_fail']} of {n_paper} paper claims fail (see the page)"
        else:
            status = "reproduced"
            reason = "" if n_paper else "descriptive: the paper states no checkable claim here"
        rows.append({"work": r.work, "item": r.item, "what": r.what, "notebook": r.notebook, "status": status,
                     "reason": reason, **counts})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- landing page

def _doc_link(nb_id: str, sources: dict[str, str], text: str, from_dir: str = "book") -> str:
    """A MyST link from a page in ``from_dir`` to the notebook page of ``nb_id``."""
    rel = Path("..") / sources[nb_id] if from_dir else Path(sources[nb_id])
    return f"[{text}]({rel.with_suffix('.ipynb').as_posix()})"


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def landing_section(cov: pd.DataFrame, claims_df: pd.DataFrame, sources: dict[str, str], figure: str | None,
                    n_numeric: int) -> str:
    """Markdown of the landing page's *Results at a glance* section."""
    counts = cov["status"].value_counts().reindex(STATUSES, fill_value=0)
    paper = claims_df[claims_df["kind"] == "paper"] if not claims_df.empty else claims_df
    n_pass = int((paper["verdict"] == "PASS").sum()) if len(paper) else 0
    lines = ["## Results at a glance", "",
             "Generated from the catalogue of every figure and table with experimental content in the five works "
             "(`book/catalogue.yml`) and from the claims the pages checked on their raw runs while this book was "
             "built. A figure counts as *reproduced* when its page exists and none of its paper claims fails, as "
             "*partial* when some fail (the page says why) or only part of it is done, as *not yet* when it has no "
             "page, and as *needs data* when it needs a dataset we do not have.", "",
             f"**{len(cov)} catalogued figures and tables:** " + ", ".join(
                 f"{n} {s}" for s, n in counts.items()) + f". **Paper claims:** {n_pass} PASS, "
             f"{len(paper) - n_pass} FAIL. Sanity checks and project targets are counted apart in the "
             "[claims ledger](claims.md).", ""]
    lines += [":::{table} Coverage: every figure and table with experimental content, its status and its claims",
              ":name: coverage-matrix", "",
              "| work | figure / table | what it shows | status | paper claims (PASS / FAIL) | note |",
              "|---|---|---|---|---|---|"]
    for r in cov.itertuples():
        item = _doc_link(r.notebook, sources, r.item) if r.notebook in sources and r.status != "not yet" else r.item
        n_claims = r.paper_pass + r.paper_fail
        score = f"{r.paper_pass} / {r.paper_fail}" if n_claims else "—"
        lines.append(f"| {r.work} | {item} | {_cell(r.what)} | {STATUS_MARK[r.status]} | {score} | "
                     f"{_cell(r.reason) or '—'} |")
    lines += [":::", "", "— in *paper claims*: the page checks no paper claim (descriptive figures, or none run).", ""]
    if figure:
        lines += ["### Paper value vs. ours", "",
                  f":::{{figure}} {figure}", ":name: claims-figure", ":alt: scatter of paper values against ours",
                  f"Every paper claim that states one number and whose page measured the same quantity "
                  f"({n_numeric} claims): the paper's value against ours, coloured by the claim's verdict; the "
                  "diagonal is agreement. A claim's verdict uses its own criterion (often a trend or a bound), so a "
                  "point off the diagonal can PASS. Claims about orderings or trends have no single number and are "
                  "only in the ledger.", ":::", ""]
    return "\n".join(lines)


def numeric_claims(claims_df: pd.DataFrame) -> pd.DataFrame:
    """Paper claims that carry one paper number and our number of the same quantity."""
    if claims_df.empty or "paper_value" not in claims_df:
        return claims_df.iloc[0:0]
    part = claims_df[(claims_df["kind"] == "paper") & claims_df["paper_value"].notna() & claims_df["value"].notna()]
    return part.astype({"paper_value": float, "value": float})


def claims_plot(claims_df: pd.DataFrame):
    """The figure of :func:`claims_figure` (paper value vs. ours per numeric claim), or None when there is none.

    Log-log axes when every value is positive, linear otherwise; the legend sits below the axes (never on data).
    """
    from axlib import plotting

    df = numeric_claims(claims_df)
    if df.empty:
        return None
    fig, ax = plotting.subplots(figsize=(plotting.COLUMN_WIDTH_IN, 4.6))
    positive = bool((df["paper_value"] > 0).all() and (df["value"] > 0).all())
    lo = float(min(df["paper_value"].min(), df["value"].min()))
    hi = float(max(df["paper_value"].max(), df["value"].max()))
    if positive:
        ax.set_xscale("log")
        ax.set_yscale("log")
        lims = (lo / 1.6, hi * 1.6)
    else:
        pad = 0.06 * (hi - lo or 1.0)
        lims = (lo - pad, hi + pad)
    ax.plot(lims, lims, color="0.5", linewidth=1, linestyle="--", label="ours = paper")
    for verdict, colour, marker in (("PASS", plotting.PALETTE[2], "o"), ("FAIL", plotting.PALETTE[1], "X")):
        part = df[df["verdict"] == verdict]
        if len(part):
            ax.plot(part["paper_value"], part["value"], marker, color=colour, linestyle="none", markersize=6,
                    alpha=0.85, label=f"{verdict} ({len(part)})")
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    ax.set_xlabel("paper's value (each claim in its own unit)")
    ax.set_ylabel("ours (same unit)")
    plotting.legend_below(ax)
    return fig


def claims_figure(claims_df: pd.DataFrame, out: Path) -> int:
    """:func:`claims_plot` saved as SVG to ``out``; returns the number of numeric claims drawn (0: no file)."""
    from axlib import plotting

    fig = claims_plot(claims_df)
    if fig is None:
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plotting.plt.close(fig)
    return len(numeric_claims(claims_df))


# --------------------------------------------------------------------------- notebook pages

def page_summary(nb_id: str, claims_df: pd.DataFrame, substitutions: str | None) -> str:
    """The one-line verdict (and substitutions) a page opens with."""
    c = claim_counts(claims_df, nb_id)
    n_paper = c["paper_pass"] + c["paper_fail"]
    if n_paper:
        verdict = (f"**{c['paper_pass']} of {n_paper} paper claims pass**" if not c["paper_fail"] else
                   f"**{c['paper_pass']} of {n_paper} paper claims pass, {c['paper_fail']} fail** (see Differences)")
    else:
        verdict = "**no paper claim checked here**"
    extra = [f"{c[f'{k}_pass']}/{c[f'{k}_pass'] + c[f'{k}_fail']} {name} pass"
             for k, name in (("sanity", "sanity checks"), ("target", "project targets"))
             if c[f"{k}_pass"] + c[f"{k}_fail"]]
    line = "Verdict: " + verdict + ("; " + "; ".join(extra) if extra else "") + "."
    if substitutions:
        line += f" **Substitutions:** {substitutions}."
    elif substitutions is None:
        line += " A project page (not a figure of the papers)."
    return line + " [Raw runs and parameters](#raw-runs-of-this-page)."


@dataclass(frozen=True)
class RunFiles:
    """The files of one stored run, copied into the site for download."""
    run_dir: str          # run folder relative to the raw-run store
    files: list[str]      # paths relative to the page's source folder
    params: dict


def copy_run_files(run, site: Path, page: Path) -> RunFiles:
    """Copy the run's CSV tables and ``meta.json`` to ``<site>/_raw/<notebook>/<run>/`` for ``{download}``."""
    dest = site / "_raw" / run.path.relative_to(paths.runs_root())
    dest.mkdir(parents=True, exist_ok=True)
    files = []
    for f in sorted(run.path.iterdir()):
        if f.is_file() and f.suffix in (".csv", ".json"):
            shutil.copy2(f, dest / f.name)
            files.append(Path("../" * (len(page.parent.relative_to(site).parts))) / dest.relative_to(site) / f.name)
    return RunFiles(run.path.relative_to(paths.runs_root()).as_posix(), [p.as_posix() for p in files],
                    dict(run.meta.get("params", {})))


def raw_run_section(nb_id: str, profile: str, rf: RunFiles | None, params: dict) -> str:
    """Markdown of the *Raw runs of this page* section appended to a page."""
    lines = ["## Raw runs of this page", ""]
    if rf is None:
        lines += ["No stored raw run was found for these parameters.", ""]
    else:
        lines += [f"The tables this page plotted from, as stored in `data/runs/{rf.run_dir}/` (CSV), and the "
                  "run's `meta.json` (parameters, seed, code commit, package versions, machine, wall time):", ""]
        lines += [f"- {{download}}`{Path(f).name} <{f}>`" for f in rf.files]
        lines.append("")
    shown = {k: v for k, v in params.items() if k != "profile"}
    lines += [f"Parameters of this run (profile `{profile}`):", "", "| parameter | value |", "|---|---|"]
    lines += [f"| `{k}` | `{_cell(json.dumps(v))}` |" for k, v in shown.items()]
    lines += ["", f"Rerun this page with other values: `make notebook NB={nb_id} P=\"name=value ...\"` "
              "(values are YAML, e.g. `seed=1`).", ""]
    return "\n".join(lines)


def clean_for_display(node) -> None:
    """Drop build noise from an executed notebook in place: stderr streams (warnings, progress bars, cache
    logs), widget outputs, and ``[runs]``/``[repro]`` log lines in stdout."""
    for cell in node.cells:
        if cell.get("cell_type") != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                if out.get("name") == "stderr":
                    continue
                text = "".join(line for line in out.get("text", "").splitlines(keepends=True)
                               if not _NOISE.match(line))
                if not text.strip():
                    continue
                out["text"] = text
            data = out.get("data", {})
            if "application/vnd.jupyter.widget-view+json" in data:
                continue
            if "text/html" in data:
                data["text/html"] = _missing_as_dash_html(_text(data["text/html"]))
            if "text/markdown" in data:
                data["text/markdown"] = _missing_as_dash_md(_text(data["text/markdown"]))
            kept.append(out)
        cell["outputs"] = kept


_NA_CELL = re.compile(r"(<td[^>]*>)\s*(nan|NaN|&lt;NA&gt;|NaT)\s*(</td>)")
_NA_MD = re.compile(r"(?<=\|)\s*(nan|NaN|<NA>|NaT)\s*(?=\|)")
NA_NOTE = "— : no value (not measured, or not applicable to that row)."


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _missing_as_dash_html(text: str) -> str:
    """Table cells that say nan/<NA>/NaT read "—", with a one-line note under the table (``None`` stays: as a
    parameter value it means something)."""
    new, n = _NA_CELL.subn(r"\1—\3", text)
    return new + f'\n<p class="axr-na-note">{NA_NOTE}</p>' if n else text


def _missing_as_dash_md(text: str) -> str:
    new, n = _NA_MD.subn(" — ", text)
    return new + f"\n\n{NA_NOTE}" if n else text


def insert_after_title(node, markdown: str) -> None:
    """Insert ``markdown`` right after the page's H1 title (in the first markdown cell that has one)."""
    import nbformat

    for i, cell in enumerate(node.cells):
        if cell.get("cell_type") != "markdown":
            continue
        src = cell["source"]
        m = re.search(r"^# .*$", src, flags=re.M)
        if m:
            head, tail = src[: m.end()], src[m.end():]
            cell["source"] = head
            node.cells.insert(i + 1, nbformat.v4.new_markdown_cell(markdown + "\n" + tail))
            return
    node.cells.insert(0, nbformat.v4.new_markdown_cell(markdown))


# --------------------------------------------------------------------------- ledger table

def itables_assets(site: Path) -> tuple[str, str]:
    """Copy the DataTables bundle of ``itables`` into ``<site>/_static/itables``; return the global name the
    tables wait for and the event that announces it (itables' own offline protocol)."""
    import itables
    from itables.javascript import _itables_ready_event, _itables_underscore_version

    src = Path(itables.__file__).parent / "html"
    dest = site / "_static" / "itables"
    dest.mkdir(parents=True, exist_ok=True)
    # .mjs: Jupyter Book adds every _static/**/*.js to every page as a classic script, which an ES module is not;
    # the .css is added to every page that way, which is what the tables need.
    shutil.copy2(src / "dt_bundle.js", dest / "dt_bundle.mjs")
    shutil.copy2(src / "dt_bundle.css", dest / "dt_bundle.css")
    return _itables_underscore_version(), _itables_ready_event()


def interactive_table(df: pd.DataFrame, assets: tuple[str, str], static_prefix: str, table_id: str,
                      filter_columns: list[str]) -> str:
    """Raw HTML of an offline itables table: sortable, searchable, with list filters on ``filter_columns``.

    The DataTables bundle is loaded from the site's own ``_static`` (no network); without JavaScript the
    table shows as a plain HTML table.
    """
    import itables

    version_key, ready_event = assets
    targets = [df.columns.get_loc(c) for c in filter_columns]
    table = itables.to_html_datatable(
        df, connected=False, display_logo_when_loading=False, showIndex=False, maxBytes=0, allow_html=False,
        classes="display compact", lengthMenu=[10, 25, 50, 100, -1], pageLength=25,
        layout={"topStart": "pageLength", "topEnd": "search", "bottomStart": "info", "bottomEnd": "paging"},
        columnControl=["order"],
        columnDefs=[{"targets": targets, "columnControl": ["order", ["searchList"]]},
                    {"targets": "_all", "className": "dt-left"}],
        ordering={"indicators": False, "handler": False}, autoWidth=False, scrollX=True,
    )
    loader = ('<script type="module">\n'
              f'if (!window.{version_key}) {{\n'
              f'  window.{version_key} = import(new URL("{static_prefix}_static/itables/dt_bundle.mjs", '
              'document.baseURI).href);\n'
              f'  window.{version_key}.then(() => window.dispatchEvent(new Event("{ready_event}")));\n'
              '}\n</script>\n')
    return f'<div class="axr-interactive" id="{html.escape(table_id)}">\n{loader}{table}\n</div>'
