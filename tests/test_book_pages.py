"""The generated parts of the book: catalogue, coverage status, page summaries, clean-up of build noise."""

from __future__ import annotations

import nbformat
import pandas as pd
import pytest

from axlib import bookpages, claims, repro
from axlib.validate import ParameterError


def _claims(rows):
    cols = ["work", "notebook", "claim_id", "kind", "verdict", "paper_value", "value"]
    return pd.DataFrame(rows, columns=cols)


def test_catalogue_covers_every_paper_page_once():
    cat = bookpages.load_catalogue(known_notebooks={nb.id for nb in repro.discover()})
    pages = {nb.id for nb in repro.discover() if nb.paper != "axlib"}
    assert set(cat["notebook"].dropna()) == pages
    assert set(cat["work"]) == {"moons2016", "hanif2018", "delaparra2021", "akhlaghi2020", "ponzina2022"}


@pytest.mark.parametrize("entry, message", [
    ("{item: x, what: y, colour: red}", "unknown field"),
    ("{item: x}", "required"),
    ("{item: x, what: y, notebook: nowhere/fig1}", "has no page"),
    ("{item: x, what: y, status: maybe, reason: r}", "is not one of"),
    ("{item: x, what: y, status: partial}", "needs a 'reason'"),
])
def test_a_bad_catalogue_entry_is_named(tmp_path, entry, message):
    p = tmp_path / "cat.yml"
    p.write_text(f"works:\n  w:\n    items:\n      - {entry}\n")
    with pytest.raises(ParameterError, match=message):
        bookpages.load_catalogue(p, known_notebooks={"w/fig2"})


def test_status_follows_the_claims_and_the_overrides():
    cat = pd.DataFrame([
        {"work": "w", "item": "A", "what": "", "notebook": "w/a", "status_override": None, "reason": ""},
        {"work": "w", "item": "B", "what": "", "notebook": "w/b", "status_override": None, "reason": ""},
        {"work": "w", "item": "C", "what": "", "notebook": None, "status_override": None, "reason": ""},
        {"work": "w", "item": "D", "what": "", "notebook": "w/d", "status_override": "needs data", "reason": "ImageNet"},
        {"work": "w", "item": "E", "what": "", "notebook": "w/e", "status_override": None, "reason": ""},
        {"work": "w", "item": "F", "what": "", "notebook": "w/f", "status_override": None, "reason": ""},
    ])
    df = _claims([("w", "w/a", "1", "paper", "PASS", None, None), ("w", "w/a", "2", "sanity", "FAIL", None, None),
                  ("w", "w/b", "1", "paper", "PASS", None, None), ("w", "w/b", "2", "paper", "FAIL", None, None)])
    cov = bookpages.coverage(cat, df, executed={"w/a", "w/b", "w/d", "w/e"}).set_index("item")
    assert cov.loc["A", "status"] == "reproduced"  # a failing sanity check is not a paper claim
    assert cov.loc["B", "status"] == "partial" and "1 of 2" in cov.loc["B", "reason"]
    assert cov.loc["C", "status"] == "not yet"
    assert cov.loc["D", "status"] == "needs data" and cov.loc["D", "reason"] == "ImageNet"
    assert cov.loc["E", "status"] == "reproduced" and "descriptive" in cov.loc["E", "reason"]
    assert cov.loc["F", "status"] == "not yet"  # catalogued page that this build did not execute


def test_page_summary_counts_the_verdicts():
    df = _claims([("w", "w/a", "1", "paper", "PASS", None, None), ("w", "w/a", "2", "paper", "FAIL", None, None),
                  ("w", "w/a", "3", "sanity", "PASS", None, None)])
    line = bookpages.page_summary("w/a", df, "ResNet-20 for AlexNet")
    assert "1 of 2 paper claims pass, 1 fail" in line and "1/1 sanity checks pass" in line
    assert "**Substitutions:** ResNet-20 for AlexNet." in line
    assert "A project page" in bookpages.page_summary("axlib/x", df, None)


def test_build_noise_is_removed_and_results_kept():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="[runs] cache hit: /abs/path\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="[runs] cache hit: a\nresult 42\n"),
                    nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {},
                                                                 "text/plain": "bar"}),
                    nbformat.v4.new_output("display_data", data={"text/plain": "table"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title\n\nText."), cell]
    bookpages.clean_for_display(nb)
    assert [o.get("text", o.get("data", {}).get("text/plain")) for o in nb.cells[1].outputs] == ["result 42\n", "table"]
    bookpages.insert_after_title(nb, "Verdict: ok.")
    assert nb.cells[0].source == "# Title" and nb.cells[1].source.startswith("Verdict: ok.")
    assert "Text." in nb.cells[1].source


def test_numeric_claims_need_both_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("AXLIB_BUILD", str(tmp_path))
    c = claims.Claims("w/a")
    c.check("one", "s", "m", "c", True, paper_value=0.9, value=0.91)
    c.check("none", "s", "m", "c", False)
    with pytest.raises(ParameterError, match="both"):
        c.check("half", "s", "m", "c", True, paper_value=0.9)
    with pytest.raises(ParameterError, match="number"):
        c.check("text", "s", "m", "c", True, paper_value="high", value=1)
    df = claims.collect(tmp_path)
    num = bookpages.numeric_claims(df)
    assert list(num["claim_id"]) == ["one"] and num["value"].iloc[0] == pytest.approx(0.91)
    assert bookpages.claims_figure(df, tmp_path / "f.svg") == 1 and (tmp_path / "f.svg").read_text().startswith("<?xml")


def test_every_page_is_stored_and_matches_its_source_run_and_rendering():
    """`make book` on a fresh clone renders the committed executed pages instead of re-executing them: each one
    must match its notebook source, its default parameters, its stored raw run and the rendering code. After
    editing a notebook or axlib/plotting.py: `make book` (re-executes what changed), then
    `python -m axlib.repro store-pages`, and commit data/pages."""
    stale = {nb.id: repro.stored_page_problem(nb, repro.effective_params(nb, "default")) for nb in repro.discover()}
    stale = {k: v for k, v in stale.items() if v}
    assert not stale, stale


def test_a_fresh_build_executes_nothing_when_the_stored_pages_match(tmp_path, monkeypatch):
    def no_execution(*args, **kwargs):
        raise AssertionError("a page was executed although its stored page matches")

    monkeypatch.delenv("AXLIB_FORCE", raising=False)
    monkeypatch.setattr(repro, "execute", no_execution)
    repro._execute_missing(tmp_path, "default", stale=True)
    for nb in repro.discover():
        assert nb.executed(tmp_path).exists() and (tmp_path / "claims" / f"{nb.id}.json").exists()
        assert repro.is_current(nb, repro.effective_params(nb, "default"), tmp_path)


def test_a_stored_page_is_not_used_for_other_parameters_or_another_run(tmp_path, monkeypatch):
    nb = repro.find("moons2016/fig07")
    params = repro.effective_params(nb, "default")
    assert repro.stored_page_problem(nb, params) is None
    assert "parameters" in repro.stored_page_problem(nb, {**params, "seed": params["seed"] + 1})
    monkeypatch.setattr(repro, "run_meta_sha256", lambda nb, params: "0" * 64)
    assert "raw run" in repro.stored_page_problem(nb, params)
    monkeypatch.setattr(repro, "render_sha256", lambda: "1" * 64)
    assert "rendering code" in repro.stored_page_problem(nb, params)


def test_every_stored_page_draws_its_figures_readably():
    """The layout audit recorded when each stored page was executed (axlib.plotting.layout_problems: no text under
    11 pt, no overlapping texts, no legend over data) is clean for every figure of every page."""
    bad = {}
    for nb in repro.discover():
        layout = (repro.executed_metadata(repro.stored_page(nb)) or {}).get("figure_layout")
        if layout is None:
            bad[nb.id] = "no layout audit recorded (re-execute the page: make book, then store-pages)"
        elif layout["problems"]:
            bad[nb.id] = layout["problems"]
    assert not bad, bad


def test_the_landing_page_figure_of_all_claims_reads_well(tmp_path):
    from axlib import claims, plotting

    for nb in repro.discover():  # the claims of the stored pages, as a fresh build has them
        repro.use_stored_page(nb, tmp_path)
    fig = bookpages.claims_plot(claims.collect(tmp_path))
    assert fig is not None and plotting.layout_problems(fig) == []


def test_a_built_page_drawn_by_other_plotting_code_is_not_current(tmp_path, monkeypatch):
    nb = repro.find("moons2016/fig07")
    params = repro.effective_params(nb, "default")
    repro.use_stored_page(nb, tmp_path)
    assert repro.is_current(nb, params, tmp_path)
    monkeypatch.setattr(repro, "render_sha256", lambda: "0" * 64)  # axlib/plotting.py or display.py edited
    assert not repro.is_current(nb, params, tmp_path)
