"""Run-time configuration: torch device, thread counts, numba flags and seeding.

Knobs (environment): ``DEVICE`` = ``cpu`` | ``cuda`` | ``auto`` (default auto: cuda when
available), ``AXLIB_THREADS`` (torch intra-op threads; default: all cores),
``AXLIB_WORKERS`` (local sweep processes; default 1 = in-process).
"""

from __future__ import annotations

import os
import random

import numpy as np

from axlib.validate import ParameterError

#: numba options every kernel uses (kernels import these instead of hard-coding flags).
NUMBA_FLAGS = {"cache": True, "nogil": True}
NUMBA_PARALLEL_FLAGS = {**NUMBA_FLAGS, "parallel": True}

DEVICES = ("auto", "cpu", "cuda")

#: Seconds between progress-bar refreshes (long runs stay readable in logs and notebooks).
PROGRESS_INTERVAL_S = float(os.environ.get("AXLIB_PROGRESS_INTERVAL", "2"))


def device_name(requested: str | None = None) -> str:
    """Resolve the torch device from ``requested`` or the ``DEVICE`` environment variable."""
    import torch

    choice = (requested or os.environ.get("DEVICE") or "auto").lower()
    if choice not in DEVICES:
        raise ParameterError(f"DEVICE={choice!r} is not allowed; use one of {DEVICES}")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise ParameterError("DEVICE='cuda' was requested but torch sees no CUDA device")
    return choice


def device(requested: str | None = None):
    import torch

    return torch.device(device_name(requested))


def configure_threads() -> int:
    """Apply ``AXLIB_THREADS`` to torch; returns the thread count in use."""
    import torch

    n = int(os.environ.get("AXLIB_THREADS", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def sweep_workers() -> int:
    return max(1, int(os.environ.get("AXLIB_WORKERS", "1") or 1))


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) for a deterministic run."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
