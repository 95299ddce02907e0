"""Module-level sweep functions for the Dask cluster tests (Dask workers import them by name)."""

from __future__ import annotations

import os
import time


def slow_square(x: int, delay: float) -> dict:
    """``x²`` after ``delay`` seconds, with the worker's pid (which process computed the point)."""
    time.sleep(delay)
    return {"x": x, "square": x * x, "pid": os.getpid()}
