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
import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from axlib import display, paths, runs
from axlib.validate import ParameterError


class ReproError(RuntimeError):
    """A notebook failed or the book did not build; the message says which and why."""


class Interrupted(KeyboardInterrupt):
    """The user interrupted a notebook (SIGINT/SIGTERM); nothing of it was stored."""

    def __init__(self, nb_id: str):
        super().__init__(nb_id)
        self.nb_id = nb_id


#: Set by the SIGINT/SIGTERM handler of :func:`main`: a kernel that dies afterwards was interrupted.
_INTERRUPTED: list[int] = []


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


OPENERS, CLOSERS = "[{(", "]})"


def split_overrides(text: str) -> list[str]:
    """Split ``text`` at whitespace outside brackets and quotes; unbalanced brackets or quotes are errors."""
    items, stack, quote, start = [], [], None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in OPENERS:
            stack.append(ch)
        elif ch in CLOSERS:
            if not stack or OPENERS.index(stack.pop()) != CLOSERS.index(ch):
                raise ParameterError(f"P: unbalanced {ch!r} in {text[start:i + 1].strip()!r} (values are YAML, "
                                     f"e.g. P=\"bits=[4,6,8] models=[lenet5]\")")
        elif ch.isspace() and not stack:
            if text[start:i].strip():
                items.append(text[start:i].strip())
            start = i + 1
    if quote or stack:
        what = f"quote {quote}" if quote else f"{stack[-1]!r}"
        raise ParameterError(f"P: unclosed {what} in {text[start:].strip()!r} (values are YAML, "
                             f"e.g. P=\"bits=[4,6,8] models=[lenet5]\")")
    if text[start:].strip():
        items.append(text[start:].strip())
    return items


def parse_overrides(text: str | None) -> dict:
    """``"bits=[4,6,8] models=[lenet5]"`` -> ``{"bits": [4, 6, 8], "models": ["lenet5"]}`` (YAML values).

    Every item must be ``name=value`` with an identifier name and a value that parses as YAML
    (``null`` for None); anything else, a repeated name or unbalanced brackets/quotes is a
    ParameterError naming the item. Nothing is ever dropped silently. A string value that holds
    whitespace or brackets must be quoted (``name="a b"``).
    """
    if not text or not text.strip():
        return {}
    out = {}
    for item in split_overrides(text):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ParameterError(f"P: {item!r} is not of the form name=value (e.g. P=\"bits=[4,6,8]\")")
        if not value.strip():
            raise ParameterError(f"P: {key}= has no value; write a YAML value (null for None), e.g. {key}=null")
        if key in out:
            raise ParameterError(f"P: parameter {key} is given twice")
        try:
            out[key] = yaml.safe_load(value)
        except (yaml.YAMLError, ValueError, TypeError) as exc:  # ValueError: e.g. a date with year 0
            problem = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise ParameterError(f"P: value of {key} is not valid YAML: {value!r} ({problem})") from None
    return out


def effective_params(nb: Notebook, profile: str, overrides: dict | None = None) -> dict:
    """Defaults <- profiles.yml[nb][profile] <- overrides; unknown names are rejected."""
    from axlib import validate

    validate.choice("PROFILE", profile, runs.PROFILES)
    if "profile" in (overrides or {}):
        raise ParameterError("P: profile is not a parameter override; choose it with PROFILE=... or --profile")
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


#: Code whose change alters how an executed page looks, though neither its source nor its run changed.
RENDER_FILES = ("axlib/plotting.py", "axlib/display.py")


def render_sha256() -> str:
    h = hashlib.sha256()
    for rel in RENDER_FILES:
        h.update((paths.PROJECT_ROOT / rel).read_bytes())
    return h.hexdigest()


def stored_run(nb: Notebook, params: dict, profile: str | None = None):
    """The stored run that effective ``params`` (which include ``profile``) select, or None."""
    if not params:
        return None
    return runs.load(nb.id, {k: v for k, v in params.items() if k != "profile"}, profile or params["profile"])


def run_meta_sha256(nb: Notebook, params: dict) -> str | None:
    """Digest of the ``meta.json`` of the stored run these parameters select (None when there is none)."""
    run = stored_run(nb, params)
    return _sha256(run.path / "meta.json") if run else None


def is_current(nb: Notebook, params: dict, build: Path) -> bool:
    """Whether the page of ``nb`` executed in ``build`` stands for an execution with ``params`` now: same source,
    parameters, raw run and rendering code (:func:`page_problem`), so a change of axlib/plotting.py re-executes it."""
    return page_problem(nb.executed(build), build / "claims" / f"{nb.id}.json", nb, params) is None


def stored_page(nb: Notebook) -> Path:
    """Where the committed executed notebook of ``nb`` (default profile) lives."""
    return paths.pages_root() / nb.rel.relative_to("notebooks").with_suffix(".ipynb")


def page_problem(page: Path, claims_json: Path, nb: Notebook, params: dict) -> str | None:
    """Why the executed notebook ``page`` (with its claims at ``claims_json``) cannot stand for an execution of
    ``nb`` with ``params`` now (None: it can). It must exist with its claims and match the notebook source, the
    parameters, the stored run (digest of its meta.json) and the rendering code (:data:`RENDER_FILES`)."""
    meta = executed_metadata(page)
    if meta is None or not claims_json.exists():
        return "not executed (or its claims are missing)"
    checks = {"parameters": (meta.get("params"), params), "source": (meta.get("source_sha256"), _sha256(nb.source)),
              "rendering code": (meta.get("render_sha256"), render_sha256()),
              "raw run": (meta.get("run_meta_sha256"), run_meta_sha256(nb, params))}
    changed = [name for name, (have, want) in checks.items() if have != want or want is None]
    return f"differs in: {', '.join(changed)}" if changed else None


def stored_page_problem(nb: Notebook, params: dict) -> str | None:
    """Why the stored page of ``nb`` cannot stand for an execution with ``params`` (None: it can)."""
    page = stored_page(nb)
    return page_problem(page, page.with_suffix(".claims.json"), nb, params)


def use_stored_page(nb: Notebook, build: Path) -> None:
    """Copy the stored page of ``nb`` and its claims into ``build`` (as if it had been executed there)."""
    page = stored_page(nb)
    out = nb.executed(build)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(page, out)
    claims_out = build / "claims" / f"{nb.id}.json"
    claims_out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(page.with_suffix(".claims.json"), claims_out)


def cmd_store_pages(args) -> int:
    """Store the build's executed default-profile pages under data/pages (to commit), with their claims."""
    build = paths.build_root()
    stored, problems = 0, []
    for nb in discover():
        params = effective_params(nb, "default")
        claims_json = build / "claims" / f"{nb.id}.json"
        problem = page_problem(nb.executed(build), claims_json, nb, params)
        if problem:
            problems.append(f"{nb.id} in {build}: {problem} (re-execute it with the default parameters)")
            continue
        dst = stored_page(nb)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(nb.executed(build), dst)
        shutil.copy2(claims_json, dst.with_suffix(".claims.json"))
        stored += 1
    print(f"stored {stored} pages under {paths.pages_root()}")
    if problems:
        print("not stored:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def kernel_stderr_to(log: Path):
    """Send file descriptor 2 to ``log`` while a kernel is started and runs.

    The kernel process inherits it: its start-up warnings and the tracebacks it prints when it is
    shut down after an interrupt go to the log instead of the terminal (cell outputs, errors
    included, are still captured in the executed notebook).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log, "wb") as f:
            os.dup2(f.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _read_layout(path: Path) -> dict:
    """The page's figure layout audit (axlib.plotting.audit_to) or, when the kernel wrote none, why."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return {"figures": None, "problems": {"page": [f"no layout audit was recorded ({type(exc).__name__})"]}}


def execute(nb: Notebook, params: dict, build: Path, log=print) -> Path:
    """Execute ``nb`` with ``params`` through papermill into ``<build>/executed``."""
    import nbformat
    import papermill

    out = nb.executed(build)
    src_ipynb = build / "sources" / out.relative_to(build / "executed")
    src_ipynb.parent.mkdir(parents=True, exist_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    source_node = read_notebook(nb)
    layout_json = display.layout_audit_path(build, nb.id)  # written by the kernel (figure layout audit)
    layout_json.unlink(missing_ok=True)
    style = nbformat.v4.new_code_cell(f"from axlib.display import book_display\nbook_display(page={nb.id!r})",
                                      metadata={"tags": ["remove-cell", "axrepro-display"]})
    source_node.cells.insert(0, style)  # the book's table formats (axlib.display), hidden on the page
    nbformat.write(source_node, src_ipynb)
    tmp_out = out.with_name(f".{out.stem}.{os.getpid()}-{time.monotonic_ns()}.running.ipynb")  # per process
    env_before = os.environ.get("AXLIB_BUILD")
    os.environ["AXLIB_BUILD"] = str(build)  # the kernel records its claims under this build
    t0 = time.perf_counter()
    log(f"[repro] executing {nb.id} (profile={params['profile']})")
    kernel_log = build / "logs" / out.relative_to(build / "executed").with_suffix(".kernel.log")
    try:
        with kernel_stderr_to(kernel_log):
            papermill.execute_notebook(str(src_ipynb), str(tmp_out), parameters=params, kernel_name="python3",
                                       cwd=str(nb.source.parent), progress_bar=False, log_output=False)
    except papermill.PapermillExecutionError as exc:
        failed = out.with_name(f"{out.stem}.failed.ipynb")
        os.replace(tmp_out, failed)
        raise ReproError(f"{nb.id} failed: {exc.ename}: {exc.evalue}\n(executed notebook kept at {failed})") from None
    except KeyboardInterrupt:
        tmp_out.unlink(missing_ok=True)
        raise Interrupted(nb.id) from None
    except Exception as exc:  # the kernel died (DeadKernelError after a signal), a timeout, ...
        tmp_out.unlink(missing_ok=True)
        if _INTERRUPTED:
            raise Interrupted(nb.id) from None
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ReproError(f"{nb.id} failed: {type(exc).__name__}: {first_line} "
                         f"(the kernel stopped; no raw run was stored; kernel log: {kernel_log})") from None
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
        "render_sha256": render_sha256(), "run_meta_sha256": run_meta_sha256(nb, params),
        "duration_s": round(duration, 1), "executed_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "figure_layout": _read_layout(layout_json),
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
    """Assemble the book source: narrative pages, executed notebooks (cleaned of build noise, opened with their
    verdict line, closed with their raw-run downloads), and the generated pages (landing-page results, ledger,
    provenance)."""
    import nbformat

    from axlib import bookpages, claims

    site = build / "site"
    if site.exists():
        shutil.rmtree(site)
    site.mkdir(parents=True)
    for name in BOOK_FILES:
        shutil.copy2(paths.PROJECT_ROOT / name, site / name)
    shutil.copytree(paths.PROJECT_ROOT / "book", site / "book", ignore=shutil.ignore_patterns("_static"))
    shutil.copytree(paths.PROJECT_ROOT / "book" / "_static", site / "_static")
    notebooks = discover()
    catalogue = bookpages.load_catalogue(known_notebooks={nb.id for nb in notebooks})
    substitutions = dict(zip(catalogue["notebook"], catalogue["substitutions"], strict=True))
    missing = [nb.id for nb in notebooks if not nb.executed(build).exists()]
    if missing:
        raise ReproError(f"notebooks not executed yet: {missing}; run `make book` or `python -m axlib.repro book`")
    claims_df = claims.collect(build)
    for nb in notebooks:
        dst = site / nb.rel.with_suffix(".ipynb")
        dst.parent.mkdir(parents=True, exist_ok=True)
        node = nbformat.read(nb.executed(build), as_version=4)
        meta = node.metadata.get("axrepro") or {}
        params = meta.get("params") or {}
        profile = meta.get("profile", "default")
        run = stored_run(nb, params, profile)
        files = bookpages.copy_run_files(run, site, dst) if run else None
        bookpages.clean_for_display(node)
        bookpages.insert_after_title(node, bookpages.page_summary(nb.id, claims_df, substitutions.get(nb.id)))
        node.cells.append(nbformat.v4.new_markdown_cell(bookpages.raw_run_section(nb.id, profile, files, params)))
        nbformat.write(node, dst)
    sources = {nb.id: nb.rel.as_posix() for nb in notebooks}
    cov = bookpages.coverage(catalogue, claims_df, executed=set(sources))
    n_numeric = bookpages.claims_figure(claims_df, site / "book" / "_generated" / "claims-vs-paper.svg")
    intro = (site / "book" / "intro.md").read_text()
    figure = "_generated/claims-vs-paper.svg" if n_numeric else None
    (site / "book" / "intro.md").write_text(intro.rstrip() + "\n\n" + bookpages.landing_section(
        cov, claims_df, sources, figure, n_numeric))
    assets = bookpages.itables_assets(site)
    (site / "book" / "provenance.md").write_text(provenance_page(build))
    (site / "book" / "claims.md").write_text(ledger_page(build, assets))
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
             "Generated when the book was built: which parameters, code and packages produced each page. *Raw run "
             "computed* is when the stored run's numbers were computed (from its `meta.json`); *page executed* is "
             "when this build re-executed the page on that stored run.", ""]
    lines += ["| notebook | profile | raw run computed (UTC) | page executed (UTC) | execution (s) | raw run | "
              "run wall time (s) | commit | CPU | network weights (sha256, first 16) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    versions = {}
    for nb in discover():
        meta = executed_metadata(nb.executed(build)) or {}
        params = meta.get("params") or {}
        run = stored_run(nb, params, meta.get("profile", "default"))
        run_meta = run.meta if run else {}
        versions = run_meta.get("versions", versions)
        commit = (run_meta.get("git") or {}).get("commit", "")[:10]
        run_cell = f"`{run.path.relative_to(paths.runs_root())}`" if run else "—"
        weights = ", ".join(f"{m} `{d['weights_sha256_16']}`" for m, d in (run_meta.get("models") or {}).items())
        cpu = (run_meta.get("host") or {}).get("cpu_model", "—")
        if not weights and cpu != "—":  # a run that records its CPU also records every network it used: none here
            weights = "none used"
        lines.append(f"| {nb.id} | {meta.get('profile', '—')} | {run_meta.get('created_utc', '—')} | "
                     f"{meta.get('executed_utc', '—')} | "
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


def ledger_page(build: Path, assets: tuple[str, str] | None = None) -> str:
    from axlib import bookpages, claims

    df = claims.collect(build)
    lines = ["# Claims ledger", "",
             "Every check a notebook makes on its own raw runs: a paraphrase of the statement, the paper's value, "
             "our measurement, the criterion, and the verdict. FAILs stay listed; the notebook page explains each one.",
             "", "Checks are of three kinds, counted separately:", "",
             "- **paper claims**: a statement of the paper, compared with the paper's value;",
             "- **sanity checks**: true by construction or a test of our own setup (a noise generator has the "
             "requested power, an exact multiplier makes no error); they are not counted as paper claims;",
             "- **project targets**: this project's own engineering targets (the `axlib` pages), not statements of "
             "a paper.", ""]
    if df.empty:
        return "\n".join(lines + ["No claims recorded yet.", ""])
    counts = claims.counts(df)
    titles = claims.KIND_TITLES
    head = " | ".join(f"{titles[k]}: {v}" for k in claims.KINDS for v in ("PASS", "FAIL"))
    lines += ["## Counts", "", f"| work | {head} |", "|---|" + "---|" * (2 * len(claims.KINDS))]
    for work, row in list(counts.iterrows()) + [("**all**", counts.sum())]:
        cells = " | ".join(str(int(row[(k, v)])) for k in claims.KINDS for v in ("PASS", "FAIL"))
        lines.append(f"| {work} | {cells} |")
    lines.append("")
    missing = claims.unexplained_fails(df)
    lines += ["## FAILs without a reason on their page", ""]
    if missing.empty:
        lines += ["None: every FAIL is named, with its reason, in its page's Differences section.", ""]
    else:
        lines += [f"{len(missing)} FAIL(s) are not explained in their page's Differences section:", ""]
        lines += [f"- {c.notebook}: {c.claim_id}" for c in missing.itertuples()]
        lines.append("")

    def esc(s):
        return str(s).replace("|", "\\|").replace("\n", " ")

    if assets is not None:
        n_pass = int((df["verdict"] == "PASS").sum())
        lines += [f"## Every check ({n_pass} PASS, {len(df) - n_pass} FAIL)", "",
                  "Sort by any column; filter with the search box or with the list under the *work*, *kind* and "
                  "*verdict* headers (the table works offline; without JavaScript it shows in full).", ""]
        table = pd_ledger_table(df)
        lines += ["```{raw} html", bookpages.interactive_table(table, assets, "../", "claims-ledger",
                                                              ["work", "kind", "verdict"]), "```", ""]
        return "\n".join(lines)

    for kind in claims.KINDS:
        part = df[df["kind"] == kind]
        if part.empty:
            continue
        n_pass = int((part["verdict"] == "PASS").sum())
        lines += [f"## {titles[kind].capitalize()} ({n_pass} PASS, {len(part) - n_pass} FAIL)", ""]
        if kind == "sanity":
            lines += ["True by construction or tests of our setup; listed to make the setup explicit, "
                      "not evidence for a paper's claim.", ""]
        elif kind == "target":
            lines += ["Engineering targets of this project, not statements of a paper.", ""]
        lines += ["| notebook | id | kind | claim | paper says | ours | criterion | verdict |",
                  "|---|---|---|---|---|---|---|---|"]
        for _, c in part.iterrows():
            mark = "✅ PASS" if c.verdict == "PASS" else "❌ FAIL"
            lines.append(f"| {c.notebook} | {esc(c.claim_id)} | {kind} | {esc(c.statement)} | {esc(c.paper)} | "
                         f"{esc(c.measured)} | {esc(c.criterion)} | {mark} |")
        lines.append("")
    return "\n".join(lines)


def pd_ledger_table(df):
    """The ledger's rows for the interactive table: one per check, readable column names."""
    out = df[["work", "notebook", "claim_id", "kind", "statement", "paper", "measured", "criterion", "verdict"]].copy()
    out["verdict"] = out["verdict"].map({"PASS": "✓ PASS", "FAIL": "✗ FAIL"})
    return out.rename(columns={"claim_id": "id", "statement": "claim", "paper": "paper says", "measured": "ours"})


# --------------------------------------------------------------------------- CLI

def _selected(nb_ids: list[str] | None) -> list[Notebook]:
    return [find(i) for i in nb_ids] if nb_ids else discover()


def cmd_run(args) -> int:
    build = paths.build_root()
    if not args.nb and not args.all:
        raise ParameterError("run: name the notebooks with --nb <paper>/<id> (repeatable), or pass --all to run every "
                             f"notebook; available: {[n.id for n in discover()]}")
    overrides = parse_overrides(args.set)
    selected = _selected(args.nb)
    plans = [(nb, effective_params(nb, args.profile, overrides)) for nb in selected]  # validate all first
    for nb, params in plans:
        execute(nb, params, build)
    if args.book:
        _execute_missing(build, args.profile, stale=False)
        build_book(build)
    return 0


def book_jobs() -> int:
    """How many notebooks the book build executes at once (``AXLIB_BOOK_JOBS``, default: the CPU count, at
    most 4). Re-executing a page on its stored run is mostly kernel start-up and imports, which run on one core
    each, so two at a time on 2 cores nearly halve the time."""
    raw = os.environ.get("AXLIB_BOOK_JOBS", "")
    if raw.strip():
        try:
            jobs = int(raw)
        except ValueError:
            raise ParameterError(f"AXLIB_BOOK_JOBS={raw!r} is not an integer; give the number of notebooks "
                                 "to execute at once (1 or more)") from None
        if jobs < 1:
            raise ParameterError(f"AXLIB_BOOK_JOBS={raw!r}: at least 1")
        return jobs
    return max(1, min(4, os.cpu_count() or 1))


def _execute_by_id(nb_id: str, params: dict, build: str) -> str:
    return str(execute(find(nb_id), params, Path(build)))


def _execute_missing(build: Path, profile: str, stale: bool, force: bool = False) -> None:
    todo = []
    for nb in discover():
        params = effective_params(nb, profile)
        if force or not nb.executed(build).exists() or (stale and not is_current(nb, params, build)):
            if not force and not runs.force_recompute() and stored_page_problem(nb, params) is None:
                use_stored_page(nb, build)  # the committed executed page of exactly this run
                continue
            todo.append((nb, params))
    jobs = min(book_jobs(), len(todo))
    if runs.force_recompute() or jobs <= 1:  # recomputing raw runs: one notebook at a time (each uses every core)
        for nb, params in todo:
            execute(nb, params, build)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_execute_by_id, nb.id, params, str(build)) for nb, params in todo]
        try:
            for f in futures:
                f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise


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


def committed_zoo_models(profile: str = "default") -> dict[str, dict]:
    """The zoo networks behind the stored runs of ``profile``.

    Keyed by the model file name (``<name>-<hash12>.pt``); each value holds ``name``, ``recipe``
    (a :class:`~axlib.models.zoo.Recipe`), ``seed`` and ``digests``: weights digest
    (``weights_sha256_16``) -> the notebook ids whose runs used it. More than one digest for one file
    means runs computed from different trainings of the same recipe (training on another CPU family
    gives other weights): only one of them can be shipped.
    """
    from axlib.models import zoo

    found: dict[str, dict] = {}
    for nb in discover():
        params = {k: v for k, v in effective_params(nb, profile).items() if k != "profile"}
        run = runs.load(nb.id, params, profile)
        for name, rec in ((run.meta.get("models") or {}) if run else {}).items():
            if rec.get("origin") != "zoo":
                continue
            recipe = zoo.Recipe(**rec["recipe"])
            file = zoo.model_path(name, recipe, rec["seed"]).name
            entry = found.setdefault(file, {"name": name, "recipe": recipe, "seed": rec["seed"], "digests": {}})
            entry["digests"].setdefault(rec["weights_sha256_16"], []).append(nb.id)
    return found


def _digest_of(pt: Path) -> str:
    import torch

    from axlib import provenance

    return provenance.weights_digest(torch.load(pt, map_location="cpu", weights_only=True))


def cmd_ship_weights(args) -> int:
    """Copy the cached zoo weights behind the committed default runs into data/zoo/ (to commit).

    A file is shipped only when every run naming it recorded the digest of the cached weights; each
    file that cannot be shipped is reported with the runs to recompute (exit status 1).
    """
    from axlib.models import zoo

    problems = []
    for file, m in sorted(committed_zoo_models("default").items()):
        src = zoo.model_path(m["name"], m["recipe"], m["seed"])
        shipped = paths.shipped_models_dir() / file
        users = "; ".join(f"{', '.join(nbs)} used {d}" for d, nbs in sorted(m["digests"].items()))
        if len(m["digests"]) > 1:
            problems.append(f"{file}: runs disagree on its weights ({users}): recompute one side")
            continue
        (want, nbs), = m["digests"].items()
        have = shipped if shipped.exists() else src
        if not have.exists():
            problems.append(f"{file}: neither cached nor in data/zoo ({users}): "
                            "recompute those runs after training it here")
            continue
        digest = _digest_of(have)
        if digest != want:
            problems.append(f"{have}: weights {digest}, but {users}: recompute those runs with these weights")
            continue
        if have == src:
            try:
                zoo.ship(m["name"], m["recipe"], m["seed"])
            except ValueError as exc:
                problems.append(str(exc))
                continue
        print(f"shipped {file} ({digest}; {len(nbs)} notebooks)")
    if problems:
        print("not shipped:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    return 0


def cmd_list(args) -> int:
    for nb in discover():
        print(f"{nb.id:28s} {nb.source.relative_to(paths.PROJECT_ROOT)}  params: {sorted(parameter_defaults(nb))}")
    return 0


ENVIRONMENT_HELP = """\
environment variables:
  PROFILE                 smoke | default | paper (default: default); --profile overrides it
  P                       default of --set (the Makefile's P="...")
  AXLIB_DATA              datasets, pretrained weights and multiplier tables (default data/datasets)
  AXLIB_OFFLINE=1         never download; a missing file is an error naming it
  AXLIB_FORCE=1           recompute raw runs and sweep points even when stored
  AXLIB_RETRAIN=1         train zoo networks here instead of loading the shipped weights in data/zoo
  AXLIB_RUNS              raw-run store (default data/runs)
  AXLIB_CACHE             caches: trained models, decoded datasets, sweep points (default data/)
  AXLIB_BUILD             executed notebooks and the book (default _build)
  AXLIB_WORKERS           local processes for sweeps (default 1)
  AXLIB_THREADS           torch threads (default: all cores)
  AXLIB_APPROX_PATH       auto | lut | lowrank: kernel for approximate-multiplier layers
  AXLIB_PROGRESS_INTERVAL seconds between progress-bar updates (default 2)
  DEVICE                  auto | cpu | cuda
  DASK_SCHEDULER_ADDRESS  tcp://host:8786: run sweep points on that Dask cluster

Overrides (--set, P) are name=value items separated by spaces; values are YAML:
  --set "bits=[4,6,8] models=[lenet5] n_test=null"
"""


def _on_signal(signum, frame):
    _INTERRUPTED.append(signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m axlib.repro", description=__doc__.split("\n\n")[0],
                                 epilog=ENVIRONMENT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    default_profile = os.environ.get("PROFILE") or "default"
    profile_help = f"parameter set, one of {', '.join(runs.PROFILES)} (default: $PROFILE or default)"

    def subparser(name, help_text):
        return sub.add_parser(name, help=help_text, description=help_text, epilog=ENVIRONMENT_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)

    p = subparser("run", "execute notebooks: --nb ... (repeatable), or --all")
    p.add_argument("--nb", action="append", help="notebook id, e.g. moons2016/fig02 (repeatable; see `list`)")
    p.add_argument("--all", action="store_true", help="execute every notebook (needed when no --nb is given)")
    p.add_argument("--set", default=os.environ.get("P", ""),
                   help='parameter overrides, name=value with YAML values, e.g. "bits=[4,6,8] models=[lenet5]"')
    p.add_argument("--profile", default=default_profile, choices=runs.PROFILES, help=profile_help)
    p.add_argument("--book", action="store_true", help="build the book afterwards")
    p.set_defaults(func=cmd_run)
    p = subparser("book", "execute missing/stale notebooks and build the book")
    p.add_argument("--profile", default=default_profile, choices=runs.PROFILES, help=profile_help)
    p.add_argument("--all", action="store_true", help="re-execute every notebook")
    p.set_defaults(func=cmd_book)
    p = subparser("check-runs", "every notebook has its stored raw run for the profile (computes nothing)")
    p.add_argument("--profile", default="default", choices=runs.PROFILES, help=profile_help)
    p.set_defaults(func=cmd_check_runs)
    p = subparser("ship-weights", "copy the zoo weights behind the committed default runs into data/zoo/ "
                                  "(checks each against the digest its runs recorded)")
    p.set_defaults(func=cmd_ship_weights)
    p = subparser("store-pages", "store the build's executed default pages (and claims) under data/pages/ to commit")
    p.set_defaults(func=cmd_store_pages)
    p = subparser("list", "list notebooks and their parameters")
    p.set_defaults(func=cmd_list)
    args = ap.parse_args(argv)
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return args.func(args)
    except (ParameterError, ReproError, runs.CorruptRunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # nbclient's cell task dies with the kernel; asyncio would log "Task exception was never
        # retrieved" with a DeadKernelError traceback when it is collected at exit: not news after an interrupt.
        logging.getLogger("asyncio").disabled = True
        what = exc.nb_id if isinstance(exc, Interrupted) else "axlib.repro"
        print(f"interrupted: {what}; nothing stored for it (finished sweep points stay cached and are reused)",
              file=sys.stderr)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _INTERRUPTED.clear()


if __name__ == "__main__":
    sys.exit(main())
