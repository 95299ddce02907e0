"""What the book costs to recompute, from the records the runs themselves keep (issue 18 item 5).

Every stored raw run records the wall time of its compute step (``meta.json``: ``wall_time_s``, the
machine, the date and the commit); every shipped zoo network records its training time
(``data/zoo/<name>-<hash>.json``: ``train_time_s``). ``make reproduce`` retrains the zoo and recomputes
every run, so its cost is about the sum of both tables. A page whose expensive part sat in a training
cache when its run was stored (the ch.4/ch.5 training caches of akhlaghi2020, for instance) records
only the rest; such runs show a few seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from axlib import paths


def run_times(profile: str = "default", root: Path | None = None) -> pd.DataFrame:
    """One row per stored run of ``profile`` under ``root`` (default: the committed store
    ``<project>/data/runs``, whatever ``AXLIB_RUNS`` says): notebook, paper, wall time (s), CPU, date, commit."""
    root = paths.PROJECT_ROOT / "data" / "runs" if root is None else Path(root)
    rows = []
    for meta_path in sorted(root.glob(f"*/*/{profile}-*/meta.json")):
        meta = json.loads(meta_path.read_text())
        rows.append({"notebook": meta["notebook"], "paper": meta["notebook"].split("/")[0],
                     "wall_time_s": float(meta.get("wall_time_s", float("nan"))),
                     "cpu": meta.get("host", {}).get("cpu_model", "not recorded"),
                     "cpus": meta.get("host", {}).get("cpus"),
                     "date": meta.get("created_utc", "")[:10],
                     "commit": meta.get("git", {}).get("commit", "")[:7]})
    return pd.DataFrame(rows, columns=["notebook", "paper", "wall_time_s", "cpu", "cpus", "date", "commit"])


def training_times(root: Path | None = None) -> pd.DataFrame:
    """One row per shipped zoo network (``root``: default ``data/zoo``): name, dataset, training time (s), accuracy."""
    root = paths.shipped_models_dir() if root is None else Path(root)
    rows = []
    for meta_path in sorted(root.glob("*.json")):
        meta = json.loads(meta_path.read_text())
        rows.append({"network": meta_path.stem, "dataset": meta.get("dataset"),
                     "train_time_s": float(meta.get("train_time_s", float("nan"))),
                     "test_accuracy": meta.get("test_accuracy")})
    return pd.DataFrame(rows, columns=["network", "dataset", "train_time_s", "test_accuracy"])


def summary(runs: pd.DataFrame, training: pd.DataFrame) -> pd.DataFrame:
    """Per paper: runs, total and largest compute time (min), plus one row for zoo training and the total."""
    g = runs.groupby("paper")["wall_time_s"]
    out = pd.DataFrame({"runs": g.size(), "total_min": g.sum() / 60, "largest_min": g.max() / 60}).reset_index()
    out = pd.concat([out, pd.DataFrame([{"paper": "zoo training", "runs": len(training),
                                         "total_min": training["train_time_s"].sum() / 60,
                                         "largest_min": training["train_time_s"].max() / 60}])], ignore_index=True)
    total = {"paper": "all", "runs": int(out["runs"].sum()), "total_min": out["total_min"].sum(),
             "largest_min": out["largest_min"].max()}
    return pd.concat([out, pd.DataFrame([total])], ignore_index=True)
