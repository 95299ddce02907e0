"""Bit-level carry-save array multiplier of moons2016 Fig. 1a (axlib.methods.array_multiplier)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from axlib.methods import array_multiplier as am


def test_products_exact_n4_all_pairs():
    a, b = am.all_pairs(4, 4, "lsb")
    assert len(a) == 256
    np.testing.assert_array_equal(am.simulate(a, b, 4)["product"], a * b)


def test_products_exact_n8_random():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 256, size=(2, 5000))
    a = np.concatenate([a, [0, 255, 255]])
    b = np.concatenate([b, [255, 0, 255]])
    np.testing.assert_array_equal(am.simulate(a, b, 8)["product"], a * b)


@pytest.mark.parametrize("k, expected", [(4, 20), (2, 6), (3, 13)])
def test_active_blocks_n4_lsb(k, expected):
    """moons2016 Fig. 1a: 20 -> 6 active blocks from 4 to 2 bits (k = 3 -> 13, spec §8)."""
    assert am.active_blocks(*am.all_pairs(4, k, "lsb"), 4) == expected
    a, b = am.operands(4, k, "lsb", 20000, np.random.default_rng(0))
    assert am.active_blocks(a, b, 4) == expected


def test_active_blocks_n4_msb_k2():
    assert am.active_blocks(*am.all_pairs(4, 2, "msb"), 4) == 9


def test_toggles_zero_for_constant_stream():
    a = np.full(10, 13)
    assert am.toggles_per_multiply(a, a, 4) == 0.0


def test_cell_toggles_sum_to_total():
    a, b = am.operands(4, 3, "lsb", 500, np.random.default_rng(3))
    assert am.cell_toggles(a, b, 4).sum() == pytest.approx(am.toggles_per_multiply(a, b, 4))


def test_tables_deterministic_with_seed():
    t1 = am.tables(4, [1, 2, 4], 300, seed=5)
    t2 = am.tables(4, [1, 2, 4], 300, seed=5)
    t3 = am.tables(4, [1, 2, 4], 300, seed=6)
    for name in t1:
        pd.testing.assert_frame_equal(t1[name], t2[name])
    assert not t1["toggles"].equals(t3["toggles"])
