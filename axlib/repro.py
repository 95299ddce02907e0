"""Run the notebooks with papermill under a profile, and build the Jupyter Book.

Usage (the Makefile wraps these)::

    python -m axlib.repro list
    python -m axlib.repro run  --nb moons2016/fig02 [--set "bits=[4,6,8] models=[lenet5]"] [--profile P] [--book]
    python -m axlib.repro book [--profile P] [--all]     # execute missing/stale notebooks, build the book
    python -m axlib.repro check-runs [--profile default] # every notebook's raw run is stored (no compute)

Notebook sources are jupytext MyST files ``notebooks/<paper>/<id>-<slug>.md``; their id is
``<paper>/<id>``. Parameters = the tagged ``parameters`` cell's defaults, overridden by
``notebooks/profiles.yml`` for the profile, overridden by ``--set``. Executed notebooks go to
``<build>/executed/``, never next to the sources; the injected-parameters cell is removed from
the rendered page (the effective parameters are shown by the notebook itself).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from axlib import paths, runs
from axlib.validate import ParameterError


class ReproError(RuntimeError):
    """A notebook failed or the book did not build; the message says which and why."""


# --------------------------------------------------------------------------- notebooks

@dataclass(frozen=True)
class Notebook:
    id: str        # "moons2016/fig02"
    source: Path   # notebooks/moons2016/fig02-relative-accuracy.md

    @property
    def paper(self) -> str:
        return self.id.split("/")[0]

    @property
    def rel(self) -> Path:
        """Path relative to the project root without suffix, as listed in ``_toc.yml``."""
        return self.source.relative_to(paths.PROJECT_ROOT).with_suffix("")

    def executed(self, build: Path) -> Path:
        return build / "executed" / self.source.relative_to(paths.notebooks_dir()).with_suffix(".ipynb")


def discover() -> list[Notebook]:
    out = []
    for src in sorted(paths.notebooks_dir().glob("*/*.md")):
        nb_id = f"{src.parent.name}/{src.stem.split('-', 1)[0]}"
        out.append(Notebook(nb_id, src))
    return out


def find(nb_id: str) -> Notebook:
    nb_id = nb_id.strip().removesuffix(".md")
    for nb in discover():
        if nb_id in (nb.id, str(nb.rel.relative_to("notebooks"))):
            return nb
    raise ParameterError(f"NB={nb_id!r} is not a notebook; available: {[n.id for n in discover()]}")


def read_notebook(nb: Notebook):
    import jupytext

    return jupytext.read(nb.source)


def parameter_cell(notebook_node):
    cells = [c for c in notebook_node.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ReproError(f"expected exactly one cell tagged 'parameters', found {len(cells)}")
    return cells[0]


def parameter_defaults(nb: Notebook) -> dict:
    """Literal defaults assigned in the notebook's ``parameters`` cell."""
    tree = ast.parse(parameter_cell(read_notebook(nb)).source)
    out = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            out[stmt.targets[0].id] = ast.literal_eval(stmt.value)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            out[stmt.target.id] = ast.literal_eval(stmt.value)
    return out


def load_profiles() -> dict:
    f = paths.profiles_file()
    return yaml.safe_load(f.read_text()) or {} if f.exists() else {}


def parse_overrides(text: str | None) -> dict:
    """``"bits=[4,6,8] models=[lenet5]"`` -> ``{"bits": [4, 6, 8], "models": ["lenet5"]}`` (YAML values)."""
    if not text or not text.strip():
        return {}
    out, depth, start = {}, 0, 0
    items = []
    for i, ch in enumerate(text + " "):
        depth += ch in "[{(" and 1 or 0
        depth -= ch in "]})" and 1 or 0
        if ch.isspace() and depth == 0:
            if text[start:i].strip():
                items.append(text[start:i].strip())
            start = i + 1
    for item in items:
        if "=" not in item:
            raise ParameterError(f"P: {item!r} is not of the form name=value (e.g. P=\"bits=[4,6,8]\")")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ParameterError(f"P: value of {key!r} is not valid YAML: {value!r} ({exc})") from exc
    return out


def effective_params(nb: Notebook, profile: str, overrides: dict | None = None) -> dict:
    """Defaults <- profiles.yml[nb][profile] <- overrides; unknown names are rejected."""
    from axlib import validate

    validate.choice("PROFILE", profile, runs.PROFILES)
    defaults = parameter_defaults(nb)
    params = dict(defaults)
    for source, values in (("notebooks/profiles.yml", (load_profiles().get(nb.id) or {}).get(profile) or {}),
                           ("P", overrides or {})):
        unknown = sorted(set(values) - set(defaults))
        if unknown:
            raise ParameterError(f"{source}: unknown parameter(s) {unknown} for {nb.id}; "
                                 f"parameters: {sorted(defaults)}")
        params.update({k: like_default(defaults[k], v) for k, v in values.items()})
    params["profile"] = profile
    return params


def like_default(default, value):
    """``value`` with integers turned into floats where the default is a float (or a list of floats).

    Run keys hash the parameters as JSON, where ``0`` and ``0.0`` differ; notebooks validate numbers
    into floats, so an override ``fractions=[0, 0.5]`` must reach them, and the key, as ``[0.0, 0.5]``.
    """
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if isinstance(default, float) and is_int(value):
        return float(value)
    if (isinstance(default, list) and default and all(isinstance(d, float) for d in default)
            and isinstance(value, list)):
        return [float(v) if is_int(v) else v for v in value]
    return value


# --------------------------------------------------------------------------- execution

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def executed_metadata(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())["metadata"].get("axrepro")
    except (json.JSONDecodeError, KeyError):
        return None


def is_current(nb: Notebook, params: dict, build: Path) -> bool:
    meta = executed_metadata(nb.executed(build))
    return bool(meta) and meta.get("params") == params and meta.get("source_sha256") == _sha256(nb.source)


def execute(nb: Notebook, params: dict, build: Path, log=print) -> Path:
    """Execute ``nb`` with ``params`` through papermill into ``<build>/executed``."""
    import nbformat
    import papermill

    out = nb.executed(build)
    src_ipynb = build / "sources" / out.relative_to(build / "executed")
    src_ipynb.parent.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(read_notebook(nb), src_ipynb)
    tmp_out = out.with_name(f".{out.stem}.running.ipynb")
    env_before = os.environ.get("AXLIB_BUILD")
    os.environ["AXLIB_BUILD"] = str(build)  # the kernel records its claims under this build
    t0 = time.perf_counter()
    log(f"[repro] executing {nb.id} (profile={params['profile']})")
    try:
        papermill.execute_notebook(str(src_ipynb), str(tmp_out), parameters=params, kernel_name="python3",
                                   cwd=str(nb.source.parent), progress_bar=False, log_output=False)
    except papermill.PapermillExecutionError as exc:
        failed = out.with_name(f"{out.stem}.failed.ipynb")
        os.replace(tmp_out, failed)
        raise ReproError(f"{nb.id} failed: {exc.ename}: {exc.evalue}\n(executed notebook kept at {failed})") from None
    finally:
        if env_before is None:
            os.environ.pop("AXLIB_BUILD", None)
        else:
            os.environ["AXLIB_BUILD"] = env_before
    duration = time.perf_counter() - t0
    node = nbformat.read(tmp_out, as_version=4)
    for cell in node.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    node.metadata["axrepro"] = {
        "id": nb.id, "profile": params["profile"], "params": params, "source_sha256": _sha256(nb.source),
        "duration_s": round(duration, 1), "executed_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    nbformat.write(node, tmp_out)
    os.replace(tmp_out, out)
    out.with_name(f"{out.stem}.failed.ipynb").unlink(missing_ok=True)
    log(f"[repro] {nb.id} done in {duration:.1f} s -> {out}")
    return out


# --------------------------------------------------------------------------- book

BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")


def toc_entries() -> list[str]:
    toc = yaml.safe_load((paths.PROJECT_ROOT / "_toc.yml").read_text())
    found = []

    def walk(node):
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    found.append(node[key])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(toc)
    return found


def stage_site(build: Path) -> Path:
    """Assemble the book source: narrative pages, executed notebooks, generated pages."""
    site = build / "site"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    for name in BOOK_FILES:
        shutil.copy2(paths.PROJECT_ROOT / name, site / name)
    shutil.copytree(paths.PROJECT_ROOT / "book", site / "book")
    missing = []
    for nb in discover():
        executed = nb.executed(build)
        if not executed.exists():
            missing.append(nb.id)
            continue
        dst = site / nb.rel.with_suffix(".ipynb")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(executed, dst)
    if missing:
        raise ReproError(f"notebooks not executed yet: {missing}; run `make book` or `python -m axlib.repro book`")
    (site / "book" / "provenance.md").write_text(provenance_page(build))
    (site / "book" / "claims.md").write_text(ledger_page(build))
    return site


def build_book(build: Path, log=print) -> Path:
    """Build the staged book with Jupyter Book 1 (``-W``: warnings are errors) into ``<build>/html``."""
    site = stage_site(build)
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(site), "--path-output", str(build.parent / ".jb"),
           "-W", "-n", "--keep-going"]
    log(f"[repro] building the book: {' '.join(cmd)}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ReproError(f"jupyter-book build failed (exit {proc.returncode}):\n"
                         f"{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}")
    html_src = build.parent / ".jb" / "_build" / "html"
    html = build / "html"
    if html.exists():
        shutil.rmtree(html)
    shutil.move(str(html_src), str(html))
    shutil.rmtree(build.parent / ".jb", ignore_errors=True)
    log(f"[repro] book: {html / 'index.html'}")
    return html / "index.html"


def provenance_page(build: Path) -> str:
    lines = ["# Provenance", "",
             "Generated when the book was built: which parameters, code and packages produced each page.", ""]
    lines += ["| notebook | profile | executed (UTC) | execution (s) | raw run | run wall time (s) | commit | CPU | "
              "network weights (sha256, first 16) |",
              "|---|---|---|---|---|---|---|---|---|"]
    versions = {}
    for nb in discover():
        meta = executed_metadata(nb.executed(build)) or {}
        params = meta.get("params") or {}
        run = runs.load(nb.id, {k: v for k, v in params.items() if k != "profile"}, meta.get("profile", "default")) \
            if params else None
        run_meta = run.meta if run else {}
        versions = run_meta.get("versions", versions)
        commit = (run_meta.get("git") or {}).get("commit", "")[:10]
        run_cell = f"`{run.path.relative_to(paths.runs_root())}`" if run else "—"
        weights = ", ".join(f"{m} `{d['weights_sha256_16']}`" for m, d in (run_meta.get("models") or {}).items())
        cpu = (run_meta.get("host") or {}).get("cpu_model", "—")
        lines.append(f"| {nb.id} | {meta.get('profile', '—')} | {meta.get('executed_utc', '—')} | "
                     f"{meta.get('duration_s', '—')} | {run_cell} | {run_meta.get('wall_time_s', '—')} | {commit} | "
                     f"{cpu} | {weights or '—'} |")
    lines += ["", "Same seed and parameters give the same raw run on the same kind of machine. Across CPU types, float32 "
              "results differ in their last bits (the math libraries pick kernels of other vector widths, which sum "
              "in another order): inference with a pretrained network moves by about 1e-7 relative, and a window or an "
              "image on a knife edge may flip. Training amplifies such differences, so a zoo network trained on first "
              "use on another machine gets other weights at about the same accuracy, and runs that use it differ "
              "visibly from the stored ones. Runs record the digest of the weights they used and the CPU (columns "
              "above; runs stored before these were recorded show —); the `networks` table of each run holds the "
              "test accuracy of its zoo networks. Runs without float networks (Bloom filters, image kernels on "
              "their own inputs, integer kernels) recompute bit for bit on any machine.",
              "", "## Package versions (from the newest raw run)", "", "| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in sorted(versions.items())]
    lines += ["", f"Book built {datetime.now(UTC).isoformat(timespec='seconds')} with Python "
              f"{sys.version.split()[0]} on {os.cpu_count()} CPU(s).", ""]
    return "\n".join(lines)


def ledger_page(build: Path) -> str:
    from axlib import claims

    df = claims.collect(build)
    lines = ["# Claims ledger", "",
             "Every claim a notebook checks on its own raw runs: a paraphrase of what the paper states, "
             "the paper's value, our measurement, the criterion, and the verdict. FAILs stay listed; "
             "the notebook page explains each one.", ""]
    if df.empty:
        return "\n".join(lines + ["No claims recorded yet.", ""])
    counts = df.groupby("work")["verdict"].value_counts().unstack(fill_value=0)
    lines += ["| work | PASS | FAIL |", "|---|---|---|"]
    for work, row in counts.iterrows():
        lines.append(f"| {work} | {row.get('PASS', 0)} | {row.get('FAIL', 0)} |")
    lines += ["", "| notebook | claim | paper says | ours | criterion | verdict |", "|---|---|---|---|---|---|"]

    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")

    for _, c in df.iterrows():
        mark = "✅ PASS" if c.verdict == "PASS" else "❌ FAIL"
        lines.append(f"| {c.notebook} | {esc(c.statement)} | {esc(c.paper)} | {esc(c.measured)} | "
                     f"{esc(c.criterion)} | {mark} |")
    return "\n".join(lines + [""])


# --------------------------------------------------------------------------- CLI

def _selected(nb_ids: list[str] | None) -> list[Notebook]:
    return [find(i) for i in nb_ids] if nb_ids else discover()


def cmd_run(args) -> int:
    build = paths.build_root()
    overrides = parse_overrides(args.set)
    selected = _selected(args.nb)
    plans = [(nb, effective_params(nb, args.profile, overrides)) for nb in selected]  # validate all first
    for nb, params in plans:
        execute(nb, params, build)
    if args.book:
        _execute_missing(build, args.profile, stale=False)
        build_book(build)
    return 0


def _execute_missing(build: Path, profile: str, stale: bool, force: bool = False) -> None:
    for nb in discover():
        params = effective_params(nb, profile)
        if force or not nb.executed(build).exists() or (stale and not is_current(nb, params, build)):
            execute(nb, params, build)


def cmd_book(args) -> int:
    build = paths.build_root()
    _execute_missing(build, args.profile, stale=True, force=args.all)
    build_book(build)
    return 0


def cmd_check_runs(args) -> int:
    missing = []
    for nb in discover():
        params = effective_params(nb, args.profile)
        key_params = {k: v for k, v in params.items() if k != "profile"}
        if runs.load(nb.id, key_params, args.profile) is None:
            missing.append(f"{nb.id} -> {runs.run_dir(nb.id, key_params, args.profile)}")
    if missing:
        print("raw runs missing for profile " + args.profile + ":\n  " + "\n  ".join(missing))
        return 1
    print(f"all {len(discover())} notebooks have stored {args.profile} runs")
    return 0


def cmd_list(args) -> int:
    for nb in discover():
        print(f"{nb.id:28s} {nb.source.relative_to(paths.PROJECT_ROOT)}  params: {sorted(parameter_defaults(nb))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m axlib.repro", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    default_profile = os.environ.get("PROFILE") or "default"
    p = sub.add_parser("run", help="execute notebooks (all, or --nb ...)")
    p.add_argument("--nb", action="append", help="notebook id, e.g. moons2016/fig02 (repeatable)")
    p.add_argument("--set", default=os.environ.get("P", ""), help='overrides, e.g. "bits=[4,6,8]"')
    p.add_argument("--profile", default=default_profile)
    p.add_argument("--book", action="store_true", help="build the book afterwards")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("book", help="execute missing/stale notebooks and build the book")
    p.add_argument("--profile", default=default_profile)
    p.add_argument("--all", action="store_true", help="re-execute every notebook")
    p.set_defaults(func=cmd_book)
    p = sub.add_parser("check-runs", help="every notebook has its stored raw run for the profile")
    p.add_argument("--profile", default="default")
    p.set_defaults(func=cmd_check_runs)
    p = sub.add_parser("list", help="list notebooks and their parameters")
    p.set_defaults(func=cmd_list)
    args = ap.parse_args(argv)
    try:
        return args.func(args)
    except (ParameterError, ReproError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
