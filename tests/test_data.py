import time

import numpy as np
import pytest

from axlib import data
from axlib.data import MissingDataError
from axlib.validate import ParameterError
from tests.conftest import needs_cifar10, needs_mnist


def test_subset_indices_deterministic_distinct_sorted():
    a = data.subset_indices(1000, 100, seed=3)
    b = data.subset_indices(1000, 100, seed=3)
    c = data.subset_indices(1000, 100, seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(np.unique(a)) == 100 and np.all(np.diff(a) > 0) and a.max() < 1000
    assert np.array_equal(data.subset_indices(50, None, seed=0), np.arange(50))
    assert np.array_equal(data.subset_indices(50, 80, seed=0), np.arange(50))


def test_calibration_test_split_is_disjoint_and_deterministic():
    cal, test = data.calibration_test_split(1000, 200, 300, seed=7)
    cal2, test2 = data.calibration_test_split(1000, 200, 300, seed=7)
    assert np.array_equal(cal, cal2) and np.array_equal(test, test2)
    assert len(cal) == 200 and len(test) == 300 and not set(cal) & set(test)
    _, rest = data.calibration_test_split(1000, 200, None, seed=7)
    assert len(rest) == 800
    with pytest.raises(ParameterError, match="n_test"):
        data.calibration_test_split(100, 60, 50, seed=0)


def test_missing_dataset_error_names_file_place_and_remedy(tmp_path, monkeypatch):
    monkeypatch.setenv("AXLIB_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AXLIB_DOWNLOADS", str(tmp_path / "dl"))
    with pytest.raises(MissingDataError) as err:
        data.load_arrays("cifar10", "test")
    msg = str(err.value)
    assert "cifar10-uint8.npz" in msg and str(tmp_path / "empty") in msg
    assert "cifar-10-python.tar.gz" in msg and "AXLIB_DATA" in msg
    with pytest.raises(MissingDataError, match="t10k-images-idx3-ubyte"):
        data.load_arrays("mnist", "test")
    with pytest.raises(MissingDataError, match="imagenet"):
        data.imagenet_val()


def test_missing_pretrained_weights_error(tmp_path, monkeypatch):
    from axlib.models.pretrained import load_cifar_resnet_state

    monkeypatch.setenv("AXLIB_DATA", str(tmp_path))
    monkeypatch.setenv("AXLIB_DOWNLOADS", str(tmp_path / "dl"))
    with pytest.raises(MissingDataError, match="resnet20-12fca82f.th"):
        load_cifar_resnet_state(20)


def test_unknown_dataset_is_a_parameter_error():
    with pytest.raises(ParameterError, match="allowed values"):
        data.load_arrays("svhn", "test")


@needs_mnist
def test_mnist_test_split_loads():
    ds = data.load_arrays("mnist", "test")
    assert ds.images.shape == (10000, 28, 28) and ds.images.dtype == np.uint8
    assert np.bincount(ds.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    x, y = data.tensors("mnist", "test", "scale", n=64, seed=1)
    assert tuple(x.shape) == (64, 1, 28, 28) and float(x.max()) < 1.0


@needs_cifar10
def test_cifar10_cached_load_is_fast_and_canonical():
    data.load_arrays("cifar10", "test")  # decode + cache (first time only)
    t0 = time.perf_counter()
    ds = data.load_arrays("cifar10", "test")
    assert time.perf_counter() - t0 < 1.0
    assert ds.images.shape == (10000, 32, 32, 3)
    assert ds.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # canonical test_batch order
    x, _ = data.tensors("cifar10", "test", "cifar_meanstd", n=500, seed=0)
    assert abs(float(x.mean())) < 0.2
