import numpy as np
import pytest
import torch

from axlib import multipliers as mul
from axlib.kernels import dispatch, reference_conv2d


@pytest.fixture(autouse=True)
def _fresh():
    dispatch.clear()
    yield
    dispatch.clear()


def _codes(rng, lo, hi, shape):
    return torch.from_numpy(rng.integers(lo, hi + 1, size=shape))


@pytest.mark.parametrize("path", ["auto", "lut", "lowrank"])
def test_every_path_is_bit_exact_with_the_reference(path):
    m = mul.truncated(5)
    pt = dispatch.PreparedTable(m.table, name=m.name)
    rng = np.random.default_rng(0)
    x, w = _codes(rng, 0, 255, (2, 4, 7, 7)), _codes(rng, 0, 255, (6, 2, 3, 3))
    ref = reference_conv2d(x.numpy(), w.numpy(), m.table, 2, 1, 2)
    for _ in range(2):  # the second auto call uses the stored decision
        got = dispatch.conv2d(x, w, pt, stride=2, padding=1, groups=2, path=path)
        assert got.dtype == torch.int64 and np.array_equal(got.numpy(), ref)


def test_auto_records_a_measured_decision_per_shape():
    pt = dispatch.PreparedTable(mul.truncated(3).table, name="trunc3")
    rng = np.random.default_rng(1)
    w = _codes(rng, 0, 255, (4, 3, 3, 3))
    for n in (1, 2, 2):
        dispatch.conv2d(_codes(rng, 0, 255, (n, 3, 6, 6)), w, pt, padding=1, path="auto")
    d = dispatch.decisions()
    assert len(d) == 2 and set(d["path"]) <= {"lut", "lowrank"}
    assert (d["lut_ms"] > 0).all() and (d["lowrank_ms"] > 0).all() and (d["rank"] == 3).all()
    assert all(row.path == ("lowrank" if row.lowrank_ms < row.lut_ms else "lut") for row in d.itertuples())


def test_full_rank_table_falls_back_to_lut_and_refuses_forced_lowrank():
    rng = np.random.default_rng(2)
    pt = dispatch.PreparedTable(rng.integers(0, 65536, size=(256, 256)), name="random")
    x, w = _codes(rng, 0, 255, (1, 2, 5, 5)), _codes(rng, 0, 255, (3, 2, 3, 3))
    ref = reference_conv2d(x.numpy(), w.numpy(), pt.table)
    assert np.array_equal(dispatch.conv2d(x, w, pt).numpy(), ref)
    assert dispatch.decisions()["path"].tolist() == ["lut"]
    assert "no exact factorisation" in dispatch.decisions()["reason"][0]
    with pytest.raises(ValueError, match="low-rank path unavailable"):
        dispatch.conv2d(x, w, pt, path="lowrank")


def test_linear_and_bad_path():
    m = mul.sign_magnitude(mul.drum(4))
    pt = dispatch.PreparedTable(m.table, 128, 128, m.name)
    rng = np.random.default_rng(3)
    x, w = _codes(rng, -128, 127, (5, 12)), _codes(rng, -128, 127, (7, 12))
    ref = m(x.numpy()[:, None, :], w.numpy()[None, :, :]).sum(-1)
    assert np.array_equal(dispatch.linear(x, w, pt, path="lut").numpy(), ref)
    from axlib.validate import ParameterError

    with pytest.raises(ParameterError, match="path"):
        dispatch.conv2d(x[:, :, None, None], w[:, :, None, None], pt, path="fast")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_lowrank_on_cuda_is_bit_exact():
    m = mul.truncated(6)
    pt = dispatch.PreparedTable(m.table, name=m.name)
    rng = np.random.default_rng(4)
    x, w = _codes(rng, 0, 255, (4, 16, 16, 16)), _codes(rng, 0, 255, (16, 16, 3, 3))
    ref = reference_conv2d(x.numpy(), w.numpy(), m.table, 1, 1)
    got = dispatch.conv2d(x.cuda(), w.cuda(), pt, padding=1, path="lowrank")
    assert got.device.type == "cuda" and np.array_equal(got.cpu().numpy(), ref)
    assert np.array_equal(dispatch.conv2d(x.cuda(), w.cuda(), pt, padding=1, path="auto").cpu().numpy(), ref)
