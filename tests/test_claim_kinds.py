"""Kinds of checks (paper claim, sanity check, project target): validation, persistence, ledger counts,
and a static scan of the notebooks that pins the checks declared as sanity checks or targets."""

from __future__ import annotations

import ast
import json
import re

import pytest

from axlib import claims, repro
from axlib.validate import ParameterError

# (notebook id, claim id as written; "{}" stands for a formatted value of an f-string id) -> kind
RECLASSIFIED = {
    ("moons2016/fig01b", "fig01b-block-law"): "sanity",
    ("moons2016/fig01b", "fig01b-rmse-per-bit"): "sanity",
    ("moons2016/fig02", "fig02a-high-bits"): "sanity",
    ("moons2016/fig04", "fig04-fewer-bits"): "sanity",
    ("moons2016/fig07", "fig07-order"): "sanity",
    ("akhlaghi2020/fig2_4", "fig2.4-grows-with-n"): "sanity",
    ("akhlaghi2020/fig2_11", "tab2.5-({},{})-costlier"): "sanity",
    ("akhlaghi2020/fig3_12", "fig3_12-more-lanes-slower"): "sanity",
    ("delaparra2021/tab01", "tab02-exact"): "sanity",
    ("ponzina2022/tab01", "tab01-exact16"): "sanity",
    ("hanif2018/fig04", "fig04-power"): "sanity",
    ("hanif2018/fig04", "fig04-zero-mean"): "sanity",
    ("hanif2018/fig04", "fig04-gaussian"): "sanity",
    ("hanif2018/fig05", "fig05-realised-snr"): "sanity",
    ("hanif2018/fig05", "fig05-snr-differ-{}"): "sanity",
    ("hanif2018/fig05", "fig05-monotone"): "sanity",
    ("hanif2018/fig06", "fig06-monotone-in-bias"): "sanity",
    ("hanif2018/fig07", "fig07-relu-mass-at-zero"): "sanity",
    ("hanif2018/fig10", "pruning-beats-random-{}"): "sanity",
    ("akhlaghi2020/fig3_9", "fig3_9-splits-disjoint"): "sanity",
    # issue 13 item 1: claims that now compare with the paper's value are paper claims
    ("moons2016/fig01b", "fig01b-gain"): "paper",
    ("moons2016/fig07", "fig07-7.5x"): "paper",
    ("akhlaghi2020/fig3_9", "tab3_4-layer-speedup"): "paper",
    ("axlib/acc01", "lut-exact-equals-fake-quant"): "target",
    ("axlib/acc01", "8bit-within-1pp"): "target",
    ("axlib/bench01", "lut-throughput"): "target",
    ("axlib/bench01", "lut-vs-torch"): "target",
    ("axlib/bench01", "lut-vs-numpy"): "target",
}
REMOVED = {("hanif2018/fig10", "fig11-better-conv124"),  # printed as a note under the claims table instead
           ("ponzina2022/tab01", "tab01-mae2-32-reading"),  # a normalisation picked after seeing the numbers: a note
           ("moons2016/fig01b", "fig01b-gain-round"), ("moons2016/fig01b", "fig01b-gain-truncate")}  # one claim now


# --------------------------------------------------------------------------- Claim / Claims


def test_kind_defaults_to_paper_and_is_validated(tmp_store):
    ledger = claims.Claims("p/nb")
    assert ledger.check("a", "s", "m", "c", True).kind == "paper"
    assert ledger.check("b", "s", "m", "c", True, "paper value", kind="sanity").kind == "sanity"
    assert ledger.sanity("c", "s", "m", "c", False).kind == "sanity"
    assert ledger.target("d", "s", "m", "c", True, "target of the project").kind == "target"
    for bad in ("claim", "Paper", "", None):
        with pytest.raises(ParameterError) as e:
            ledger.check("e", "s", "m", "c", True, kind=bad)
        assert all(k in str(e.value) for k in claims.KINDS)
    with pytest.raises(ParameterError):
        claims.Claim("p/nb", "x", "s", "m", "c", "p", True, "other")
    assert [c.claim_id for c in ledger.items] == ["a", "b", "c", "d"]  # a refused check records nothing


def test_kind_is_persisted_and_shown_in_the_notebook_table(tmp_store):
    ledger = claims.Claims("p/nb", run_key="k")
    ledger.check("a", "s", "m", "c", True)
    ledger.sanity("b", "s", "m", "c", False)
    ledger.target("c", "s", "m", "c", True)
    payload = json.loads(ledger.path().read_text())
    assert [c["kind"] for c in payload["claims"]] == ["paper", "sanity", "target"]
    t = ledger.table()
    assert list(t.columns[:2]) == ["claim", "kind"] and t["kind"].tolist() == ["paper", "sanity", "target"]
    assert claims.Claims("p/empty").table().columns.tolist() == t.columns.tolist()


def _write(build, work, nb, rows):
    f = build / "claims" / work / f"{nb}.json"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"notebook": f"{work}/{nb}", "run_key": "k", "claims": rows}))


def _row(cid, verdict, kind=None):
    r = {"notebook": "x", "claim_id": cid, "statement": f"statement {cid}", "measured": "1", "criterion": "c",
         "paper": "p", "passed": verdict == "PASS", "verdict": verdict}
    return r if kind is None else r | {"kind": kind}


@pytest.fixture
def fake_build(tmp_path):
    build = tmp_path / "_build"
    _write(build, "paperA", "fig1", [_row("a1", "PASS"), _row("a2", "FAIL", "paper"), _row("a3", "PASS", "paper"),
                                     _row("a4", "PASS", "sanity"), _row("a5", "FAIL", "sanity")])
    _write(build, "paperB", "fig2", [_row("b1", "FAIL"), _row("b2", "PASS", "sanity")])  # old JSON: no kind at all
    _write(build, "axlib", "bench", [_row("t1", "PASS", "target"), _row("t2", "FAIL", "target"),
                                     _row("t3", "PASS", "target")])
    return build


def test_collect_reads_old_json_as_paper_and_counts_by_kind(fake_build):
    df = claims.collect(fake_build)
    assert df.set_index("claim_id")["kind"].to_dict() == {
        "a1": "paper", "a2": "paper", "a3": "paper", "a4": "sanity", "a5": "sanity", "b1": "paper", "b2": "sanity",
        "t1": "target", "t2": "target", "t3": "target"}
    n = claims.counts(df)
    assert n.loc["paperA", ("paper", "PASS")] == 2 and n.loc["paperA", ("paper", "FAIL")] == 1
    assert n.loc["paperA", ("sanity", "PASS")] == 1 and n.loc["paperA", ("sanity", "FAIL")] == 1
    assert n.loc["paperA", ("target", "PASS")] == 0
    assert n.loc["paperB", ("paper", "FAIL")] == 1 and n.loc["paperB", ("sanity", "PASS")] == 1
    assert n.loc["axlib", ("target", "PASS")] == 2 and n.loc["axlib", ("target", "FAIL")] == 1
    assert n.loc["axlib", ("paper", "PASS")] + n.loc["axlib", ("paper", "FAIL")] == 0
    assert int(n.to_numpy().sum()) == len(df)


def test_collect_rejects_an_unknown_kind(tmp_path):
    _write(tmp_path, "w", "nb", [_row("x", "PASS", "maybe")])
    with pytest.raises(ParameterError, match="allowed kinds"):
        claims.collect(tmp_path)


def test_ledger_page_counts_each_kind_separately(fake_build):
    page = repro.ledger_page(fake_build)
    lines = page.splitlines()
    head = next(line for line in lines if line.startswith("| work |"))
    assert [c.strip() for c in head.strip("|").split("|")] == [
        "work", "paper claims: PASS", "paper claims: FAIL", "sanity checks: PASS", "sanity checks: FAIL",
        "project targets: PASS", "project targets: FAIL"]
    assert "| paperA | 2 | 1 | 1 | 1 | 0 | 0 |" in lines
    assert "| paperB | 0 | 1 | 1 | 0 | 0 | 0 |" in lines
    assert "| axlib | 0 | 0 | 0 | 0 | 2 | 1 |" in lines
    assert "| **all** | 2 | 2 | 2 | 1 | 2 | 1 |" in lines
    # one section per kind, paper claims first, each row labelled with its kind
    sections = [line for line in lines if line.startswith("## ")]
    assert sections == ["## Counts", "## FAILs without a reason on their page", "## Paper claims (2 PASS, 2 FAIL)",
                        "## Sanity checks (2 PASS, 1 FAIL)",
                        "## Project targets (2 PASS, 1 FAIL)"]
    starts = [lines.index(s) for s in sections[2:]] + [len(lines)]
    for (kind, ids), a, b in zip((("paper", {"a1", "a2", "a3", "b1"}), ("sanity", {"a4", "a5", "b2"}),
                                  ("target", {"t1", "t2", "t3"})), starts[:-1], starts[1:], strict=True):
        rows = [line.split(" | ") for line in lines[a:b] if line.startswith("| ") and " | statement " in line]
        assert {r[1] for r in rows} == ids and all(r[2] == kind for r in rows)
    assert "| notebook | id | kind | claim |" in page


def test_ledger_page_without_claims(tmp_path):
    assert "No claims recorded yet." in repro.ledger_page(tmp_path)


# --------------------------------------------------------------------------- static scan of the notebooks


def _id_template(node: ast.expr) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
    return None


def _declared_checks() -> dict[tuple[str, str], tuple[str, str]]:
    """(notebook id, claim id template) -> (kind, paper argument source) for every ledger call in the notebooks."""
    out = {}
    for nb in repro.discover():
        text = nb.source.read_text()
        for cell in re.findall(r"^```\{code-cell\}[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
            code = "\n".join(line for line in cell.splitlines() if not line.startswith((":", "%", "!")))
            for node in ast.walk(ast.parse(code)):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == "ledger"
                        and node.func.attr in ("check", "sanity", "target") and node.args):
                    continue
                cid = _id_template(node.args[0])
                assert cid is not None, f"{nb.id}: claim id {ast.unparse(node.args[0])} is not a string"
                kw = {k.arg: k.value for k in node.keywords}
                kind = node.func.attr
                if kind == "check":
                    kind = kw["kind"].value if "kind" in kw else "paper"
                paper = kw.get("paper", node.args[5] if len(node.args) > 5 else None)
                out[(nb.id, cid)] = (kind, ast.unparse(paper) if paper is not None else "")
    return out


def test_notebooks_declare_the_reclassified_checks_with_their_kind():
    declared = _declared_checks()
    assert len(declared) > 50, "the scan found too few checks; has the notebook layout changed?"
    for key, kind in RECLASSIFIED.items():
        assert key in declared, f"{key[0]}: check {key[1]!r} not found in the notebook source"
        assert declared[key][0] == kind, f"{key[0]}: {key[1]!r} is declared as {declared[key][0]!r}, not {kind!r}"
    for key in REMOVED:
        assert key not in declared, f"{key[0]}: {key[1]!r} must be a note, not a claim"
    assert all(kind in claims.KINDS for kind, _ in declared.values())


def test_project_pages_and_project_targets_are_targets():
    for (nb_id, cid), (kind, paper) in _declared_checks().items():
        if nb_id.startswith("axlib/") or "target of the project" in paper:
            assert kind == "target", f"{nb_id}: {cid!r} is a project target but declared as {kind!r}"



# --------------------------------------------------------------------------- Differences: every FAIL named


def test_differences_names_every_fail_with_its_reason(tmp_store):
    ledger = claims.Claims("p/nb", run_key="k")
    ledger.check("ok", "s", "m", "c", True)
    ledger.check("bad", "s", "m", "c", False)
    ledger.sanity("odd", "s", "m", "c", False)
    ledger.check("forgotten", "s", "m", "c", False)
    text = ledger.differences({"bad": "our network is smaller", "odd": "a seed effect", "ok": "not shown",
                               "forgotten": "   "})
    lines = text.splitlines()
    assert lines == ["- **bad** fails: our network is smaller", "- **odd** (sanity check) fails: a seed effect",
                     "- **forgotten** fails: **no reason given** on this page."]
    payload = json.loads(ledger.path().read_text())
    assert {c["claim_id"]: c["explained"] for c in payload["claims"]} == {
        "ok": False, "bad": True, "odd": True, "forgotten": False}
    df = claims.collect(ledger.path().parents[2])
    assert claims.unexplained_fails(df)["claim_id"].tolist() == ["forgotten"]


def test_differences_when_everything_passes(tmp_store):
    ledger = claims.Claims("p/nb")
    ledger.check("ok", "s", "m", "c", True)
    assert ledger.differences({}) == "Every claim checked on this page passes."


def test_ledger_lists_fails_without_a_reason(fake_build):
    page = repro.ledger_page(fake_build)
    section = page.split("## FAILs without a reason on their page")[1].split("\n## ")[0]
    assert "4 FAIL(s) are not explained" in section  # old JSON has no "explained": a FAIL then counts as unexplained
    assert all(f"- x: {c}" in section for c in ("a2", "a5", "b1", "t2")) and "a1" not in section
    _write(fake_build, "paperC", "fig3", [_row("c1", "FAIL") | {"explained": True}])
    assert "- x: c1" not in repro.ledger_page(fake_build)


def test_old_json_without_explained_reads_as_unexplained(fake_build):
    df = claims.collect(fake_build)
    assert df["explained"].dtype == bool and not df["explained"].any()


def test_every_notebook_with_claims_names_its_fails():
    """Static scan: a page that records claims builds its Differences list with ``ledger.differences``."""
    for nb in repro.discover():
        src = nb.source.read_text()
        if "claims.Claims(" in src:
            assert "ledger.differences(" in src, f"{nb.id}: Differences section does not use ledger.differences"
