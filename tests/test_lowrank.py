import numpy as np
import pytest
import torch

from axlib import multipliers as mul
from axlib.kernels import lut_conv2d
from axlib.kernels.lowrank import factorize, lowrank_conv2d


@pytest.mark.parametrize("k", [0, 2, 4, 7])
def test_truncated_tables_are_low_rank_and_the_path_is_bit_exact(k):
    m = mul.truncated(k)
    lr = factorize(m.table)
    assert lr is not None and lr.rank == mul.error_metrics(m)["error_rank"] <= k
    rng = np.random.default_rng(k)
    for stride, padding, groups in ((1, 1, 1), (2, 0, 1), (1, 1, 2)):
        x = rng.integers(0, 256, size=(3, 4, 7, 7))
        w = rng.integers(0, 256, size=(6, 4 // groups, 3, 3))
        ref = lut_conv2d(x, w, m.table, stride=stride, padding=padding, groups=groups)
        got = lowrank_conv2d(torch.from_numpy(x), torch.from_numpy(w), lr, stride, padding, groups)
        assert np.array_equal(got.numpy(), ref)


def test_signed_offset_tables():
    m = mul.sign_magnitude(mul.truncated(3))
    lr = factorize(m.table, 128, 128)
    assert lr is not None
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(2, 3, 6, 6))
    w = rng.integers(-128, 128, size=(4, 3, 3, 3))
    ref = lut_conv2d(x, w, m.table, padding=1, a_offset=128, w_offset=128)
    got = lowrank_conv2d(torch.from_numpy(x), torch.from_numpy(w), lr, padding=1)
    assert np.array_equal(got.numpy(), ref)


def test_full_rank_table_is_refused():
    rng = np.random.default_rng(1)
    assert factorize(rng.integers(0, 65536, size=(256, 256)), max_rank=8) is None
