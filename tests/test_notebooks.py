"""Every notebook runs through papermill under the smoke profile; the book builds with -W.

These tests start Jupyter kernels (about 5-10 s each) and are the slowest part of `make test`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest

from axlib import paths, repro, runs
from tests.conftest import needs_cifar10, needs_mnist, needs_resnet

pytestmark = [pytest.mark.slow, needs_mnist, needs_cifar10, needs_resnet]
NOTEBOOKS = repro.discover()


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory):
    """Execute every notebook once (smoke profile) into a private build/runs root."""
    root = tmp_path_factory.mktemp("smoke")
    env = {"AXLIB_RUNS": str(root / "runs"), "AXLIB_BUILD": str(root / "_build")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for nb in NOTEBOOKS:
            repro.execute(nb, repro.effective_params(nb, "smoke"), root / "_build")
        yield root
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def test_notebooks_are_discovered_and_listed_in_the_toc():
    assert NOTEBOOKS, "no notebooks found"
    entries = set(repro.toc_entries())
    for nb in NOTEBOOKS:
        assert str(nb.rel) in entries, f"{nb.source} is not in _toc.yml"
    for entry in entries:
        exists = (paths.PROJECT_ROOT / f"{entry}.md").exists()
        assert exists, f"_toc.yml lists {entry} but no {entry}.md exists"


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda nb: nb.id)
def test_notebook_executes_with_smoke_profile(smoke_build, nb, monkeypatch):
    out = nb.executed(smoke_build / "_build")
    node = json.loads(out.read_text())
    assert node["metadata"]["axrepro"]["profile"] == "smoke"
    injected = [c for c in node["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert injected and all("remove-cell" in c["metadata"]["tags"] for c in injected)
    errors = [o for c in node["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    params = {k: v for k, v in repro.effective_params(nb, "smoke").items() if k != "profile"}
    monkeypatch.setenv("AXLIB_RUNS", str(smoke_build / "runs"))
    assert runs.load(nb.id, params, "smoke") is not None, "the notebook stored no raw run under its key"
    claims = smoke_build / "_build" / "claims" / f"{nb.id}.json"
    assert claims.exists(), "the notebook recorded no claims"


def test_same_seed_same_parameters_give_identical_raw_tables(smoke_build, tmp_path, monkeypatch):
    """Recompute fig02 (smoke) from scratch into a second store: every table is byte-identical."""
    nb = repro.find("moons2016/fig02")
    params = repro.effective_params(nb, "smoke")
    key_params = {k: v for k, v in params.items() if k != "profile"}
    monkeypatch.setenv("AXLIB_RUNS", str(smoke_build / "runs"))
    first = runs.load(nb.id, key_params, "smoke")
    monkeypatch.setenv("AXLIB_RUNS", str(tmp_path / "runs2"))
    monkeypatch.setenv("AXLIB_FORCE", "1")  # no cached run, no cached sweep point
    repro.execute(nb, params, tmp_path / "_build")
    second = runs.load(nb.id, key_params, "smoke")
    assert first.tables == second.tables
    for name in first.tables:
        a = (first.path / f"{name}.csv").read_bytes()
        b = (second.path / f"{name}.csv").read_bytes()
        assert a == b, f"table {name} differs between two runs with the same seed"


def test_a_notebook_sweep_on_a_dask_cluster_gives_the_local_raw_run(smoke_build, tmp_path, monkeypatch):
    """fig02 (smoke) with its sweep points sent to a scheduler and two workers started from the
    ``dask`` command line: the raw run is byte-identical to the local one."""
    from tests import dask_cli

    nb = repro.find("moons2016/fig02")
    params = repro.effective_params(nb, "smoke")
    key_params = {k: v for k, v in params.items() if k != "profile"}
    monkeypatch.setenv("AXLIB_RUNS", str(smoke_build / "runs"))
    local = runs.load(nb.id, key_params, "smoke")
    with dask_cli.cluster(tmp_path) as (address, _):
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
        monkeypatch.setenv("AXLIB_RUNS", str(tmp_path / "runs-dask"))
        monkeypatch.setenv("AXLIB_FORCE", "1")  # every sweep point is computed again, on the cluster
        repro.execute(nb, params, tmp_path / "_build")
        from distributed import Client

        with Client(address) as client:
            done = client.run_on_scheduler(lambda dask_scheduler: {
                k: dict(v.state_counts) for k, v in dask_scheduler.task_prefixes.items()})
    assert done.get("call", {}).get("memory", 0) > 0, f"no sweep point ran on the cluster: {done}"
    remote = runs.load(nb.id, key_params, "smoke")
    assert remote is not None and local.tables == remote.tables
    for name in local.tables:
        assert (local.path / f"{name}.csv").read_bytes() == (remote.path / f"{name}.csv").read_bytes(), name


def test_bad_parameter_fails_fast_and_leaves_no_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AXLIB_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("AXLIB_BUILD", str(tmp_path / "_build"))
    rc = repro.main(["run", "--nb", "moons2016/fig02", "--profile", "smoke", "--set", "bits=[0]"])
    err = capsys.readouterr().err
    assert rc == 2 and "bits" in err and "[1, 32]" in err
    rc = repro.main(["run", "--nb", "moons2016/fig02", "--profile", "smoke", "--set", "models=[vgg99]"])
    err = capsys.readouterr().err
    assert rc == 2 and "vgg99" in err and "lenet5" in err
    rc = repro.main(["run", "--nb", "moons2016/fig02", "--profile", "smoke", "--set", "bitz=[4]"])
    assert rc == 2 and "bitz" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*.csv"))


@pytest.fixture(scope="module")
def smoke_book(smoke_build):
    """The book built (warnings as errors) from the smoke runs; its html folder."""
    return repro.build_book(smoke_build / "_build").parent


def test_book_builds_with_warnings_as_errors(smoke_build, smoke_book):
    html = smoke_book
    index = html / "index.html"
    assert index.exists()
    page = (html / "notebooks" / "moons2016" / "fig02-relative-accuracy.html").read_text()
    assert "<img" in page and "injected-parameters" not in page
    ledger = (html / "book" / "claims.html").read_text()
    assert "moons2016" in ledger and ("PASS" in ledger or "FAIL" in ledger)
    assert "Package versions" in (html / "book" / "provenance.html").read_text()


def test_provenance_page_shows_when_each_raw_run_was_computed(smoke_build, monkeypatch):
    """The provenance page dates each page's stored run (its meta.json), apart from when the page was executed."""
    monkeypatch.setenv("AXLIB_RUNS", str(smoke_build / "runs"))
    page = repro.provenance_page(smoke_build / "_build")
    assert "raw run computed (UTC)" in page and "page executed (UTC)" in page
    nb = repro.find("moons2016/fig02")
    params = {k: v for k, v in repro.effective_params(nb, "smoke").items() if k != "profile"}
    created = runs.load(nb.id, params, "smoke").meta["created_utc"]
    row = next(line for line in page.splitlines() if line.startswith("| moons2016/fig02 |"))
    assert row.split(" | ")[2] == created


def test_default_profile_runs_are_committed(monkeypatch):
    """`make book` on a fresh clone must not train or sweep: every default run is stored in the repo."""
    monkeypatch.delenv("AXLIB_RUNS", raising=False)
    assert paths.runs_root() == paths.PROJECT_ROOT / "data" / "runs"
    assert repro.main(["check-runs", "--profile", "default"]) == 0
    for nb in NOTEBOOKS:
        params = {k: v for k, v in repro.effective_params(nb, "default").items() if k != "profile"}
        run = runs.load(nb.id, params, "default")
        for name in run.tables:
            assert len(pd.read_csv(run.path / f"{name}.csv")) > 0


def test_pages_carry_no_build_noise_and_offer_their_raw_runs(smoke_build, smoke_book):
    """No absolute path of this machine, cache log or progress bar on any page; every notebook page opens with
    its verdict line and links its stored tables and meta.json for download."""
    from bs4 import BeautifulSoup

    roots = {str(paths.PROJECT_ROOT), str(smoke_build), "/tmp/"}
    for page in smoke_book.rglob("*.html"):
        soup = BeautifulSoup(page.read_text(), "html.parser")
        for code in soup.select(".cell_input"):  # the (collapsed) source code may name these strings
            code.decompose()
        text = soup.get_text(" ")
        for noise in [*roots, "[runs]", "cache hit", "it/s]", "Warning:"]:
            assert noise not in text, f"{page.relative_to(smoke_book)} shows {noise!r}"
        cells = {td.get_text().strip() for td in soup.find_all("td")}
        assert not cells & {"nan", "NaN", "<NA>"}, f"{page.relative_to(smoke_book)} has a table cell reading nan"
    for nb in NOTEBOOKS:
        text = (smoke_book / nb.rel.with_suffix(".html")).read_text()
        assert "Verdict:" in text and "Raw runs of this page" in text, nb.id
        assert "meta.json" in text and "_downloads/" in text, nb.id


def test_book_in_a_real_browser(smoke_build, smoke_book, tmp_path):
    """Every page in headless Chromium at 1400 and 400 px: no console error or failed request, every image
    loads, nothing wider than the viewport at 1400 px outside a scroll container; the coverage matrix lists
    every catalogued figure; the ledger's filter keeps exactly the FAILs. Screenshots go to <build>/screenshots."""
    from axlib import bookcheck, bookpages, claims

    if not Path(bookcheck.CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{bookcheck.CHROMIUM} is missing; .ci/run installs Debian's chromium")
        pytest.skip(f"no {bookcheck.CHROMIUM} (apt install chromium)")
    report = bookcheck.check_book(smoke_book, smoke_book.parent / "screenshots")
    assert not report.problems, "\n".join(report.problems[:30])
    catalogue = bookpages.load_catalogue()
    assert report.coverage_items == list(catalogue["item"])
    df = claims.collect(smoke_build / "_build")
    before, after, not_fail = report.ledger_rows
    assert before == len(df) and after == int((df["verdict"] == "FAIL").sum()) and not_fail == 0
    shots = {p.name for p in report.screenshots.glob("*.png")}
    assert {"book__intro@1400.png", "book__intro@400.png", "book__claims@400.png"} <= shots
    assert len(shots) == 2 * len(report.pages)
