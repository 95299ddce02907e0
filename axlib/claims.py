"""Claim checks: a paper's statement turned into a PASS/FAIL test on our raw runs.

Each notebook records its claims with :class:`Claims`; they are written to
``<build>/claims/<paper>/<notebook>.json`` and aggregated into the ledger page of the book.
A FAIL is recorded and shown like a PASS, never dropped.

Every check has a *kind*, counted separately in the ledger:

``paper``
    a statement of the paper, compared with the paper's value (the default);
``sanity``
    a check that is true by construction or that tests our own setup (a noise generator has
    the requested power, an exact multiplier makes no error); it is labelled as such and is not
    counted as a paper claim;
``target``
    an engineering target of this project (the ``axlib/*`` pages: kernel throughput, exact-table
    LUT inference equals fake-quant).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from axlib import paths
from axlib.validate import ParameterError

KINDS = ("paper", "sanity", "target")
KIND_TITLES = {"paper": "paper claims", "sanity": "sanity checks", "target": "project targets"}


def check_kind(kind) -> str:
    if kind not in KINDS:
        raise ParameterError(f"claim kind {kind!r} is not allowed; allowed kinds: {list(KINDS)}")
    return kind


@dataclass(frozen=True)
class Claim:
    notebook: str
    claim_id: str
    statement: str   # paraphrase of the paper's claim
    measured: str    # our number(s), with units
    criterion: str   # the test applied to the measured numbers
    paper: str       # the paper's value / wording, with its location
    passed: bool
    kind: str = "paper"  # one of KINDS
    paper_value: float | None = None  # the paper's one number for this claim, when it states one
    value: float | None = None        # ours, of the same quantity in the same unit

    def __post_init__(self):
        check_kind(self.kind)
        for name in ("paper_value", "value"):
            v = getattr(self, name)
            if v is not None:
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    raise ParameterError(f"claim {self.claim_id}: {name} must be a number or None, not {v!r}") from None
                object.__setattr__(self, name, v)
        if (self.paper_value is None) != (self.value is None):
            raise ParameterError(f"claim {self.claim_id}: give both paper_value and value, or neither")

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


class Claims:
    """Collects the claims of one notebook run and persists them after every check."""

    def __init__(self, notebook: str, run_key: str | None = None):
        self.notebook = notebook
        self.run_key = run_key
        self.items: list[Claim] = []
        self.explained: dict[str, str] = {}  # claim id -> the page's reason for its FAIL

    def check(self, claim_id: str, statement: str, measured: str, criterion: str, passed: bool,
              paper: str = "", kind: str = "paper", paper_value: float | None = None,
              value: float | None = None) -> Claim:
        """Record one check. ``paper_value``/``value``: when the paper states one number for the claim and we
        measured the same quantity in the same unit, both numbers (they feed the paper-vs-ours figure of the
        landing page; the verdict still comes from ``passed``)."""
        claim = Claim(self.notebook, claim_id, statement, measured, criterion, paper, bool(passed), check_kind(kind),
                      paper_value, value)
        self.items = [c for c in self.items if c.claim_id != claim_id] + [claim]
        self._write()
        return claim

    def sanity(self, claim_id: str, statement: str, measured: str, criterion: str, passed: bool,
               paper: str = "") -> Claim:
        """A check true by construction or of our own setup: shown, but not counted as a paper claim."""
        return self.check(claim_id, statement, measured, criterion, passed, paper, kind="sanity")

    def target(self, claim_id: str, statement: str, measured: str, criterion: str, passed: bool,
               paper: str = "") -> Claim:
        """An engineering target of this project (not a statement of a paper)."""
        return self.check(claim_id, statement, measured, criterion, passed, paper, kind="target")

    def differences(self, why: dict[str, str]) -> str:
        """Markdown for a page's Differences section: every FAIL named, with its reason from ``why``.

        ``why`` maps claim ids to the page's explanation. A FAIL without an entry is still listed, marked
        **no reason given**, and the ledger counts it as unexplained (``collect()``'s ``explained`` column),
        so a page can never hide a FAIL by forgetting it. Reasons for claims that pass are not shown.
        """
        fails = [c for c in self.items if not c.passed]
        self.explained = {c.claim_id: why[c.claim_id] for c in fails if why.get(c.claim_id, "").strip()}
        self._write()
        if not fails:
            return "Every claim checked on this page passes."
        lines = []
        for c in fails:
            reason = self.explained.get(c.claim_id)
            tag = f" ({c.kind} check)" if c.kind != "paper" else ""
            lines.append(f"- **{c.claim_id}**{tag} fails: " + (reason or "**no reason given** on this page."))
        return "\n".join(lines)

    def table(self) -> pd.DataFrame:
        rows = [{"claim": c.claim_id, "kind": c.kind, "statement": c.statement, "paper": c.paper,
                 "ours": c.measured, "criterion": c.criterion, "verdict": c.verdict} for c in self.items]
        return pd.DataFrame(rows, columns=["claim", "kind", "statement", "paper", "ours", "criterion", "verdict"])

    def path(self) -> Path:
        return paths.build_root() / "claims" / f"{self.notebook}.json"

    def _write(self) -> None:
        p = self.path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        payload = {"notebook": self.notebook, "run_key": self.run_key,
                   "claims": [asdict(c) | {"verdict": c.verdict, "explained": c.claim_id in self.explained}
                              for c in self.items]}
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, p)


def collect(build_root: Path | None = None) -> pd.DataFrame:
    """Every recorded claim under ``<build>/claims`` as one table (with ``work`` = folder name).

    Claims written before kinds existed have no ``kind`` and read as ``"paper"``.
    """
    root = (build_root or paths.build_root()) / "claims"
    rows = []
    for f in sorted(root.glob("*/*.json")):
        payload = json.loads(f.read_text())
        for c in payload["claims"]:
            row = {"work": f.parent.name, "run_key": payload.get("run_key"), **c}
            row["kind"] = check_kind(c.get("kind") or "paper")
            row["explained"] = bool(c.get("explained", False))
            rows.append(row)
    cols = ["work", "notebook", "claim_id", "kind", "statement", "paper", "measured", "criterion", "verdict", "explained",
            "run_key", "paper_value", "value"]
    return pd.DataFrame(rows, columns=cols)


def unexplained_fails(df: pd.DataFrame) -> pd.DataFrame:
    """The FAILs whose page gives no reason for them (see :meth:`Claims.differences`)."""
    if df.empty:
        return df
    return df[(df["verdict"] == "FAIL") & ~df["explained"].astype(bool)]


def counts(df: pd.DataFrame) -> pd.DataFrame:
    """PASS/FAIL counts per work and kind: one row per work, columns ``(kind, verdict)`` for every kind."""
    cols = pd.MultiIndex.from_product([KINDS, ["PASS", "FAIL"]], names=["kind", "verdict"])
    if df.empty:
        return pd.DataFrame(columns=cols)
    kinds = df["kind"].fillna("paper") if "kind" in df else pd.Series("paper", index=df.index)
    t = pd.crosstab(df["work"], [kinds.rename("kind"), df["verdict"]])
    return t.reindex(columns=cols, fill_value=0).astype(int)
