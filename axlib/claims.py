"""Claim checks: a paper's statement turned into a PASS/FAIL test on our raw runs.

Each notebook records its claims with :class:`Claims`; they are written to
``<build>/claims/<paper>/<notebook>.json`` and aggregated into the ledger page of the book.
A FAIL is recorded and shown like a PASS, never dropped.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from axlib import paths


@dataclass(frozen=True)
class Claim:
    notebook: str
    claim_id: str
    statement: str   # paraphrase of the paper's claim
    measured: str    # our number(s), with units
    criterion: str   # the test applied to the measured numbers
    paper: str       # the paper's value / wording, with its location
    passed: bool

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"


class Claims:
    """Collects the claims of one notebook run and persists them after every check."""

    def __init__(self, notebook: str, run_key: str | None = None):
        self.notebook = notebook
        self.run_key = run_key
        self.items: list[Claim] = []

    def check(self, claim_id: str, statement: str, measured: str, criterion: str, passed: bool,
              paper: str = "") -> Claim:
        claim = Claim(self.notebook, claim_id, statement, measured, criterion, paper, bool(passed))
        self.items = [c for c in self.items if c.claim_id != claim_id] + [claim]
        self._write()
        return claim

    def table(self) -> pd.DataFrame:
        rows = [{"claim": c.claim_id, "statement": c.statement, "paper": c.paper, "ours": c.measured,
                 "criterion": c.criterion, "verdict": c.verdict} for c in self.items]
        return pd.DataFrame(rows)

    def path(self) -> Path:
        return paths.build_root() / "claims" / f"{self.notebook}.json"

    def _write(self) -> None:
        p = self.path()
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        payload = {"notebook": self.notebook, "run_key": self.run_key,
                   "claims": [asdict(c) | {"verdict": c.verdict} for c in self.items]}
        tmp.write_text(json.dumps(payload, indent=2))
        os.replace(tmp, p)


def collect(build_root: Path | None = None) -> pd.DataFrame:
    """Every recorded claim under ``<build>/claims`` as one table (with ``paper`` = folder name)."""
    root = (build_root or paths.build_root()) / "claims"
    rows = []
    for f in sorted(root.glob("*/*.json")):
        payload = json.loads(f.read_text())
        for c in payload["claims"]:
            rows.append({"work": f.parent.name, "run_key": payload.get("run_key"), **c})
    cols = ["work", "notebook", "claim_id", "statement", "paper", "measured", "criterion", "verdict", "run_key"]
    return pd.DataFrame(rows, columns=cols)
