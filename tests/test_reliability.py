"""Reliability cases of the run store, the override parser, interrupts and the command line.

This module holds what a demanding user tries: damaged files, bad overrides, Ctrl-C mid-run, two
processes on one store. Every case here failed (silently or with a raw library error) before the
fix it guards; the cases of caches, datasets, kernel inputs and notebook parameters live in
``test_reliability_{caches,kernels,params}.py``. Grow it with every new finding.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from axlib import repro, runs
from axlib.validate import ParameterError

NB = "testpaper/figR"
ROOT = Path(__file__).resolve().parent.parent


def store_run(params=None, n=40):
    params = params or {"a": 1}
    with runs.create(NB, params, "smoke", seed=0) as w:
        w.save("acc", pd.DataFrame({"bits": range(n), "accuracy": [i / n for i in range(n)]}))
        w.save("other", pd.DataFrame({"x": [1, 2, 3]}))
    return runs.load(NB, params, "smoke")


# --------------------------------------------------------------------------- store: fault injection

def truncate(f: Path):
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])


def flip_byte(f: Path):
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    f.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [truncate, flip_byte, Path.unlink], ids=["truncate", "flip-byte", "delete"])
def test_a_damaged_table_is_an_error_naming_the_file(tmp_store, damage):
    run = store_run()
    damage(run.path / "acc.csv")
    with pytest.raises(runs.CorruptRunError, match=r"acc\.csv.*AXLIB_FORCE=1"):
        runs.load(NB, {"a": 1}, "smoke")


@pytest.mark.parametrize("damage", [truncate, flip_byte], ids=["truncate", "flip-byte"])
def test_a_damaged_meta_json_is_an_error_naming_it(tmp_store, damage):
    run = store_run()
    meta = run.path / "meta.json"
    if damage is flip_byte:  # a byte flip that keeps valid JSON must still be caught (here: a hash changes)
        m = json.loads(meta.read_text())
        m["tables"]["acc"]["sha256"] = "0" * 64
        meta.write_text(json.dumps(m))
    else:
        damage(meta)
    with pytest.raises(runs.CorruptRunError, match=r"(meta\.json|acc\.csv).*AXLIB_FORCE=1"):
        runs.load(NB, {"a": 1}, "smoke")


def test_cached_or_compute_refuses_a_damaged_run_and_force_recomputes_it(tmp_store, monkeypatch):
    run = store_run()
    truncate(run.path / "acc.csv")
    calls = []

    def compute(w):
        calls.append(1)
        w.save("acc", pd.DataFrame({"bits": [1]}))

    with pytest.raises(runs.CorruptRunError):
        runs.cached_or_compute(NB, {"a": 1}, "smoke", 0, compute)
    assert calls == []
    monkeypatch.setenv("AXLIB_FORCE", "1")
    fresh = runs.cached_or_compute(NB, {"a": 1}, "smoke", 0, compute)
    assert calls == [1] and fresh.table("acc")["bits"].tolist() == [1]


def test_tables_are_served_from_the_verified_bytes(tmp_store):
    run = store_run()
    (run.path / "acc.csv").write_text("bits,accuracy\n1,2\n")  # changed after loading
    assert len(run.table("acc")) == 40


def killed_writer_script(store: Path, marker: Path) -> str:
    return textwrap.dedent(f"""
        import os, pathlib, time
        os.environ["AXLIB_RUNS"] = {str(store)!r}
        import pandas as pd
        from axlib import runs
        with runs.create({NB!r}, {{"a": 9}}, "smoke", seed=0) as w:
            w.save("acc", pd.DataFrame({{"x": range(1000)}}))
            pathlib.Path({str(marker)!r}).write_text("half")
            time.sleep(60)
            w.save("other", pd.DataFrame({{"x": [1]}}))
    """)


def test_sigkill_mid_write_leaves_nothing_loadable_and_the_leftover_is_cleaned(tmp_store):
    marker = tmp_store / "marker"
    proc = subprocess.Popen([sys.executable, "-c", killed_writer_script(tmp_store / "runs", marker)], cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert marker.exists()
    finally:
        proc.kill()
        proc.wait()
    folder = tmp_store / "runs" / NB
    leftovers = [d for d in folder.iterdir() if d.name.startswith(".tmp-")]
    assert leftovers and runs.load(NB, {"a": 9}, "smoke") is None
    store_run({"a": 10})  # the next run in that folder sweeps the dead process's temporary folder
    assert not [d for d in folder.iterdir() if d.name.startswith(".")]


def publisher_script(store: Path, start: float, value: int) -> str:
    return textwrap.dedent(f"""
        import os, time
        os.environ["AXLIB_RUNS"] = {str(store)!r}
        import pandas as pd
        from axlib import runs
        for i in range(15):
            while time.time() < {start} + 0.2 * i:
                time.sleep(0.001)
            with runs.create({NB!r}, {{"a": 1}}, "smoke", seed=0) as w:
                w.save("acc", pd.DataFrame({{"x": [{value}] * 500}}))
                w.save("other", pd.DataFrame({{"y": [{value}] * 500}}))
    """)


def test_two_processes_publishing_one_run_never_expose_a_partial_run(tmp_store):
    """Two writers replace the same run 15 times each at the same instants while we read it:
    every read is a whole, verified run from one writer, and the writers never fail."""
    start = time.time() + 3.0
    procs = [subprocess.Popen([sys.executable, "-c", publisher_script(tmp_store / "runs", start, v)], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for v in (1, 2)]
    seen = set()
    while any(p.poll() is None for p in procs):
        run = runs.load(NB, {"a": 1}, "smoke")
        if run is not None:
            a, b = run.table("acc")["x"], run.table("other")["y"]
            assert len(a) == len(b) == 500 and a.nunique() == 1 and a.iloc[0] == b.iloc[0]
            seen.add(int(a.iloc[0]))
        time.sleep(0.002)
    for p in procs:
        assert p.wait() == 0, p.stderr.read()
    assert seen and runs.load(NB, {"a": 1}, "smoke") is not None
    assert not [d for d in (tmp_store / "runs" / NB).iterdir() if d.name.startswith(".")]


# --------------------------------------------------------------------------- overrides

@pytest.mark.parametrize("text", ["bits=[4,", "a=0000-01-01", "models=[lenet5] bits=[4,6", "bits=4]", "a=[1,2)", 'a="x', "a=",
                                  "bits", "=3", "a=1 a=2", "bits=[4, 6 models=[x]", "x-y=1"])
def test_every_malformed_override_is_an_error_naming_it(text):
    with pytest.raises(ParameterError, match="P:"):
        repro.parse_overrides(text)


def test_partial_overrides_are_never_kept():
    """Before the fix, ``models=[lenet5] bits=[4,6`` returned ``{'models': ['lenet5']}``."""
    with pytest.raises(ParameterError, match=r"bits=\[4,6"):
        repro.parse_overrides("models=[lenet5] bits=[4,6")


yaml_scalars = st.one_of(st.integers(-10**6, 10**6), st.booleans(), st.none(),
                         st.floats(allow_nan=False, allow_infinity=False, width=32),
                         st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters=" _-:,[]"),
                                 max_size=8))


def cli_yaml(v) -> str:
    """``v`` as a user types it after ``name=``: flow YAML, strings with whitespace or brackets quoted
    (items are separated by whitespace outside brackets, so the parser's contract is that such strings are quoted)."""
    if isinstance(v, list):
        return "[" + ", ".join(cli_yaml(x) for x in v) + "]"
    text = yaml.safe_dump(v, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()
    if isinstance(v, str) and any(ch.isspace() or ch in "[]{}()" for ch in text) and not text.startswith(("'", '"')):
        text = yaml.safe_dump(v, default_style='"', width=10**6).strip()
    return text
yaml_values = st.recursive(yaml_scalars, lambda inner: st.lists(inner, max_size=4), max_leaves=8)
names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(names, yaml_values, max_size=5))
def test_overrides_round_trip_through_yaml(params):
    text = " ".join(f"{k}={cli_yaml(v)}" for k, v in params.items())
    assert repro.parse_overrides(text) == params


def test_quoted_values_keep_their_spaces():
    assert repro.parse_overrides('a="x y" b=[\'p q\', 1]') == {"a": "x y", "b": ["p q", 1]}
    with pytest.raises(ParameterError, match="'y' is not of the form name=value"):
        repro.parse_overrides("a=x y")  # unquoted: two items, the second is not name=value


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="ab=[]{}(),' \"01:-", max_size=30))
def test_the_parser_returns_or_names_the_problem_never_anything_else(text):
    try:
        out = repro.parse_overrides(text)
    except ParameterError as exc:
        assert str(exc).startswith("P:")
        return
    assert isinstance(out, dict)
    opened = sum(text.count(c) for c in "[{(") - sum(text.count(c) for c in "]})")
    if "'" not in text and '"' not in text:
        assert opened == 0  # unbalanced brackets outside quotes always raise


def test_unknown_and_reserved_names_are_errors_listing_the_parameters():
    nb = repro.find("moons2016/fig02")
    with pytest.raises(ParameterError, match=r"unknown parameter\(s\) \['bitz'\].*parameters: \["):
        repro.effective_params(nb, "smoke", {"bitz": [4]})
    with pytest.raises(ParameterError, match="PROFILE"):
        repro.effective_params(nb, "smoke", {"profile": "paper"})


# --------------------------------------------------------------------------- command line

def test_run_without_nb_needs_all(capsys):
    assert repro.main(["run"]) == 2
    assert "--all" in capsys.readouterr().err


def test_help_lists_profiles_yaml_and_environment(capsys):
    with pytest.raises(SystemExit):
        repro.main(["run", "--help"])
    out = capsys.readouterr().out
    for word in ("smoke, default, paper", "YAML", "AXLIB_DATA", "AXLIB_FORCE", "AXLIB_RUNS", "DEVICE", "--all"):
        assert word in out
    with pytest.raises(SystemExit):
        repro.main(["run", "--nb", "x", "--profile", "fast"])
    assert "invalid choice: 'fast' (choose from 'smoke', 'default', 'paper')" in capsys.readouterr().err


# --------------------------------------------------------------------------- interrupts

SLOW_NOTEBOOK = """\
---
jupytext:
  text_representation:
    extension: .md
    format_name: myst
    format_version: 0.13
kernelspec:
  display_name: Python 3
  language: python
  name: python3
---

# slow

```{code-cell} ipython3
:tags: [parameters]

seconds = 60.0
marker = ""
profile = "default"
```

```{code-cell} ipython3
import pathlib, time
import pandas as pd
from axlib import runs

def compute(w):
    w.save("t", pd.DataFrame({"a": [1, 2]}))
    pathlib.Path(marker).write_text("started")
    time.sleep(seconds)

run = runs.cached_or_compute("testpaper/slow", {"seconds": seconds, "marker": marker}, profile, 0, compute)
```
"""

DRIVER = """\
import sys
from pathlib import Path
from axlib import paths, repro
paths.PROJECT_ROOT = Path(sys.argv[1])
paths.notebooks_dir = lambda: Path(sys.argv[1]) / "notebooks"
sys.exit(repro.main(sys.argv[2:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupting_a_notebook_prints_one_line_and_leaves_nothing(tmp_store, sig):
    """Ctrl-C (SIGINT to the terminal's process group) or SIGTERM while a notebook computes."""
    project = tmp_store / "project"
    (project / "notebooks" / "testpaper").mkdir(parents=True)
    (project / "notebooks" / "testpaper" / "slow-sleep.md").write_text(SLOW_NOTEBOOK)
    marker = tmp_store / "started"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(project), "run", "--nb", "testpaper/slow",
                             "--set", f"marker={marker}", "--profile", "smoke"], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert marker.exists(), proc.communicate()
        os.killpg(proc.pid, sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, (out, err)
    assert err.strip().splitlines() == ["interrupted: testpaper/slow; nothing stored for it "
                                        "(finished sweep points stay cached and are reused)"]
    assert "Traceback" not in out + err
    build = tmp_store / "_build"
    assert not list(build.rglob("*.running.ipynb")) and not (build / "executed" / "testpaper" / "slow-sleep.ipynb").exists()
    time.sleep(1)  # the kernel is shut down by then; its temporary run folder is gone with it
    assert not (tmp_store / "runs" / "testpaper" / "slow").exists() or not any(
        (tmp_store / "runs" / "testpaper" / "slow").iterdir())
