"""Deterministic subsets and disjoint calibration/test splits (indices only)."""

from __future__ import annotations

import numpy as np

from axlib import validate


def subset_indices(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """``n`` distinct indices of ``range(n_total)``, sorted, the same for the same seed.

    ``n=None`` (or ``n >= n_total``) returns every index in order.
    """
    validate.integer("n_total", n_total, lo=1)
    if n is None or n >= n_total:
        return np.arange(n_total)
    validate.integer("n", n, lo=1, hi=n_total)
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n_total)[:n])


def calibration_test_split(n_total: int, n_calib: int, n_test: int | None, seed: int
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (calibration, test) index sets drawn from one permutation of ``range(n_total)``.

    The calibration set is the first ``n_calib`` of a seeded permutation, the test set the next
    ``n_test`` (``None``: all the rest). Both are returned sorted.
    """
    validate.integer("n_calib", n_calib, lo=0, hi=n_total)
    rest = n_total - n_calib
    if n_test is None:
        n_test = rest
    validate.integer("n_test", n_test, lo=1, hi=rest)
    perm = np.random.default_rng(seed).permutation(n_total)
    return np.sort(perm[:n_calib]), np.sort(perm[n_calib:n_calib + n_test])
