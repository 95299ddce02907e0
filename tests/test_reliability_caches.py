"""Reliability cases of caches, datasets and multiplier tables (issue 12 items 4 and 5).

Caches are disposable: a damaged trained model (``.pt`` / ``.json``), sweep point, training
checkpoint or decoded-array ``.npy`` is discarded with a ``CacheWarning`` naming it and recomputed.
Inputs are not: a dataset or multiplier table of the wrong size or sha256 is a ``CorruptDataError``
naming the file, expected vs found, and how to get it again. Every case failed (with a raw
``EOFError``, ``JSONDecodeError``, ``BadZipFile``, mmap or reshape error, or silently) before the
fix it guards. The networks and datasets are tiny fakes written here, so the module runs in seconds.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from axlib import cachefiles, data, models, paths, sweep
from axlib.cachefiles import CacheWarning
from axlib.data import CorruptDataError, MissingDataError, integrity
from axlib.models import zoo
from axlib.validate import ParameterError
from tests.conftest import have

SHARED = Path(os.environ["AXLIB_DATA"])


def register(monkeypatch, root: Path, rel: str) -> None:
    """Make ``root/rel`` the known-good version of ``rel`` (its size and sha256)."""
    b = (root / rel).read_bytes()
    monkeypatch.setitem(integrity.KNOWN, rel, integrity.Expected(len(b), hashlib.sha256(b).hexdigest()))


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A private data root with a tiny MNIST (64 train, 32 test images, registered as intact) and
    private cache/download roots."""
    root = tmp_path / "data"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for stem, n in (("train", 64), ("t10k", 32)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        (raw / f"{stem}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{stem}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())
        for kind in ("images-idx3", "labels-idx1"):
            register(monkeypatch, root, f"MNIST/raw/{stem}-{kind}-ubyte")
    monkeypatch.setenv("AXLIB_DATA", str(root))
    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AXLIB_DOWNLOADS", str(tmp_path / "dl"))
    return root


KW = dict(epochs=1, n_train=64, batch_size=32)


def lenet(**kw):
    return models.get_model("lenet5", seed=0, progress=False, **{**KW, **kw})


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --------------------------------------------------------------------------- item 4: caches

@pytest.mark.parametrize("damage", ["zero", "truncate", "flip"])
def test_damaged_model_pt_is_discarded_and_retrained(fake, damage):
    m1, _ = lenet()
    pt = zoo.model_path("lenet5", zoo.with_overrides(models.spec("lenet5").recipe, **KW), 0)
    b = pt.read_bytes()
    pt.write_bytes({"zero": b"", "truncate": b[: len(b) // 2],
                    "flip": b[:-100] + bytes([b[-100] ^ 0xFF]) + b[-99:]}[damage])
    with pytest.warns(CacheWarning, match=rf"{pt.name}.*(sha256 of the weights|unreadable)"):
        m2, info2 = lenet()
    assert same_weights(m1, m2)  # retrained, deterministically
    assert cachefiles.sha256_file(pt) == info2["weights_sha256"]
    m3, _ = lenet()  # and cached again
    assert same_weights(m1, m3)


def test_damaged_model_pt_without_recorded_digest_is_discarded(fake):
    """Caches written before the digest was recorded: an unreadable ``.pt`` is still caught."""
    m1, _ = lenet()
    pt = zoo.model_path("lenet5", zoo.with_overrides(models.spec("lenet5").recipe, **KW), 0)
    info_path = pt.with_suffix(".json")
    info = json.loads(info_path.read_text())
    info.pop("weights_sha256", None)
    info_path.write_text(json.dumps(info))
    pt.write_bytes(b"")
    with pytest.warns(CacheWarning, match=rf"{pt.name}.*EOFError: file empty or truncated"):
        m2, _ = lenet()
    assert same_weights(m1, m2)


def test_truncated_model_json_is_discarded_and_retrained(fake):
    m1, info1 = lenet()
    info_path = zoo.model_path("lenet5", zoo.with_overrides(models.spec("lenet5").recipe, **KW), 0).with_suffix(".json")
    info_path.write_text(info_path.read_text()[:40])
    with pytest.warns(CacheWarning, match=rf"{info_path.name}.*not valid JSON"):
        m2, info2 = lenet()
    assert same_weights(m1, m2) and info2["test_accuracy"] == info1["test_accuracy"]
    json.loads(info_path.read_text())


def test_damaged_training_checkpoint_restarts_training(fake):
    m1, _ = lenet()
    pt = zoo.model_path("lenet5", zoo.with_overrides(models.spec("lenet5").recipe, **KW), 0)
    pt.unlink()
    pt.with_suffix(".json").unlink()
    partial = pt.with_name(pt.name + ".partial")
    partial.write_bytes(b"PK\x03\x04 half a checkpoint")
    with pytest.warns(CacheWarning, match=rf"{partial.name}.*unreadable training checkpoint"):
        m2, _ = lenet()
    assert same_weights(m1, m2) and not partial.exists()


@pytest.mark.parametrize("bad, field", [
    (dict(epochs=-1), "epochs"), (dict(batch_size=0), "batch_size"), (dict(lr=0.0), "lr"),
    (dict(lr=float("nan")), "lr"), (dict(momentum=-0.5), "momentum"), (dict(momentum=1.0), "momentum"),
    (dict(weight_decay=-1e-4), "weight_decay"), (dict(n_train=0), "n_train"), (dict(augment="yes"), "augment"),
    (dict(warmup_epochs=-1), "warmup_epochs"), (dict(warmup_epochs=2), "warmup_epochs"),
    (dict(epoch=3), "epoch"), (dict(extra=[1]), "extra"),
])
def test_bad_zoo_recipe_is_refused_before_any_training(fake, monkeypatch, bad, field):
    def no_work(*a, **k):
        raise AssertionError("data was loaded or a model trained before the recipe was validated")

    monkeypatch.setattr(zoo, "_train", no_work)
    monkeypatch.setattr(data, "tensors", no_work)
    with pytest.raises(ParameterError, match=rf"parameter (zoo has unknown recipe field\(s\) \['{field}'\]|"
                                             rf"{field}=.*(allowed|must))"):
        lenet(**bad)


def test_negative_zoo_seed_is_refused_before_any_training(fake, monkeypatch):
    monkeypatch.setattr(zoo, "_train", lambda *a, **k: pytest.fail("trained before the seed was validated"))
    with pytest.raises(ParameterError, match=r"parameter seed=-1 is out of range; allowed in \[0, 4294967295\]"):
        models.get_model("lenet5", seed=-1, progress=False, **KW)


@pytest.mark.parametrize("content", ['{"point": {"x": 1}, "res', "", "[]", '{"point": {"x": 1}}'])
def test_damaged_sweep_point_is_discarded_and_recomputed(tmp_store, content):
    calls = []
    fn = lambda x: calls.append(x) or {"sq": x * x}  # noqa: E731
    points = [{"x": i} for i in range(3)]
    sweep.run_grid(fn, points, name="t-damaged", progress=False)
    f = paths.sweep_cache_dir() / "t-damaged" / f"{sweep.point_key('t-damaged', points[1])}.json"
    f.write_text(content)
    with pytest.warns(CacheWarning, match=f.name):
        res = sweep.run_grid(fn, points, name="t-damaged", progress=False)
    assert [r["sq"] for r in res] == [0, 1, 4] and calls == [0, 1, 2, 1]
    assert json.loads(f.read_text())["result"] == {"sq": 1}


@pytest.mark.parametrize("which, damage", [("images", "truncate"), ("images", "zero"), ("labels", "truncate"),
                                           ("labels", "zero"), ("labels", "other length"),
                                           ("images", "other dtype")])
def test_damaged_decoded_array_cache_is_discarded_and_decoded_again(fake, which, damage):
    ref = data.load_arrays("mnist", "test")
    images, labels = np.array(ref.images), np.array(ref.labels)
    del ref
    f = data.arrays._cache_files("mnist", "test")[0 if which == "images" else 1]
    if damage.startswith("other"):
        np.save(f, labels[:-1] if which == "labels" else images.astype(np.float32))
        f = data.arrays._cache_files("mnist", "test")[1]  # the labels file is the one said not to match
    else:
        b = f.read_bytes()
        f.write_bytes(b"" if damage == "zero" else b[: len(b) - 100])
    with pytest.warns(CacheWarning, match=f.name):
        ds = data.load_arrays("mnist", "test")
    assert np.array_equal(ds.images, images) and np.array_equal(ds.labels, labels)
    assert np.array_equal(data.load_arrays("mnist", "test").images, images)


def test_cache_writes_are_atomic_with_per_process_unique_temporaries(tmp_path):
    target = tmp_path / "c" / "point.json"
    cachefiles.write_text(target, "old")
    with pytest.raises(RuntimeError), cachefiles.atomic_path(target) as tmp:
        tmp.write_text('{"half": ')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and list(target.parent.iterdir()) == [target]
    names = {cachefiles.temp_name(target).name for _ in range(50)}
    assert len(names) == 50 and all(str(os.getpid()) in n for n in names)


# --------------------------------------------------------------------------- item 5: inputs

def test_truncated_cifar10_npz_is_a_corrupt_data_error(tmp_path, monkeypatch):
    root = tmp_path / "data"
    npz = root / "cifar10" / "cifar10-uint8.npz"
    npz.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez_compressed(npz, x_train=rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
                        y_train=np.arange(20) % 10, x_test=rng.integers(0, 256, (10, 32, 32, 3), dtype=np.uint8),
                        y_test=np.arange(10))
    register(monkeypatch, root, "cifar10/cifar10-uint8.npz")
    monkeypatch.setenv("AXLIB_DATA", str(root))
    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AXLIB_DOWNLOADS", str(tmp_path / "dl"))
    good = npz.read_bytes()
    npz.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptDataError) as err:
        data.load_arrays("cifar10", "test")
    msg = str(err.value)
    assert str(npz) in msg and f"expected {len(good)} bytes, found {len(good) // 2}" in msg
    assert "cifar-10-python.tar.gz" in msg and "delete it" in msg
    assert isinstance(err.value, MissingDataError)  # callers that handle missing data handle this too
    npz.write_bytes(good)
    assert data.load_arrays("cifar10", "test").labels.tolist() == list(range(10))


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_mnist_idx_file_is_a_corrupt_data_error(fake, damage):
    f = fake / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    b = f.read_bytes()
    f.write_bytes(b[:-1000] if damage == "truncate" else b[:500] + bytes([b[500] ^ 1]) + b[501:])
    with pytest.raises(CorruptDataError) as err:
        data.load_arrays("mnist", "test")
    msg = str(err.value)
    assert str(f) in msg and "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-images-idx3-ubyte.gz" in msg
    assert (f"expected {len(b)} bytes, found {len(b) - 1000}" if damage == "truncate"
            else f"expected sha256 {integrity.KNOWN['MNIST/raw/t10k-images-idx3-ubyte'].sha256}, found") in msg


@pytest.fixture
def evo_tables(tmp_path, monkeypatch):
    """A private copy of the signed EvoApprox tables and the csv; the table caches cleared around the test."""
    evoapprox = importlib.import_module("axlib.multipliers.evoapprox")  # the package re-exports a function of that name
    wide = importlib.import_module("axlib.multipliers.wide")

    if not (have("multipliers/evoapprox_mul8s_luts.npz") and have("multipliers/evoapprox_multipliers.csv")):
        pytest.skip("EvoApprox tables not in AXLIB_DATA")
    (tmp_path / "multipliers").mkdir()
    for name in ("evoapprox_mul8s_luts.npz", "evoapprox_multipliers.csv"):
        shutil.copy(SHARED / "multipliers" / name, tmp_path / "multipliers" / name)
    monkeypatch.setenv("AXLIB_DATA", str(tmp_path))
    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path / "cache"))
    caches = (evoapprox._tables, evoapprox.published_evoapprox, wide.parts)
    for c in caches:
        c.cache_clear()
    yield tmp_path / "multipliers" / "evoapprox_mul8s_luts.npz"
    for c in caches:
        c.cache_clear()


def test_altered_multiplier_table_is_a_corrupt_data_error(evo_tables):
    from axlib import multipliers as mul

    b = evo_tables.read_bytes()
    evo_tables.write_bytes(b[:1000] + bytes([b[1000] ^ 0x10]) + b[1001:])
    with pytest.raises(CorruptDataError) as err:
        mul.evoapprox("mul8s_1KV8")
    msg = str(err.value)
    assert str(evo_tables) in msg and "expected sha256 9e1625f3d91c" in msg and "evoapproxlib" in msg
    evo_tables.write_bytes(b)
    assert mul.evoapprox("mul8s_1KV8").table[128 + 3, 128 - 5] == -15


def test_input_sha256_is_computed_once_per_file_version(fake, monkeypatch):
    f = fake / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    calls = []
    real = cachefiles.sha256_file
    monkeypatch.setattr(cachefiles, "sha256_file", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        integrity.check(f, "MNIST/raw/t10k-labels-idx1-ubyte")
    assert len(calls) == 1  # the stamp remembers (path, size, mtime)
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new version: hashed again
    integrity.check(f, "MNIST/raw/t10k-labels-idx1-ubyte")
    assert len(calls) == 2
    (stamp,) = list(paths.integrity_dir().glob("*.json"))
    stamp.write_text('{"path": ')
    with pytest.warns(CacheWarning, match=stamp.name):
        integrity.check(f, "MNIST/raw/t10k-labels-idx1-ubyte")
    assert len(calls) == 3


def test_damaged_pretrained_weights_are_a_corrupt_data_error(tmp_path, monkeypatch):
    from axlib.models.pretrained import load_cifar_resnet_state

    name = "resnet20-12fca82f.th"
    if not have(f"pretrained/{name}"):
        pytest.skip("ResNet-20 weights not in AXLIB_DATA")
    (tmp_path / "pretrained").mkdir()
    (tmp_path / "pretrained" / name).write_bytes((SHARED / "pretrained" / name).read_bytes()[:5000])
    monkeypatch.setenv("AXLIB_DATA", str(tmp_path))
    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CorruptDataError, match=rf"{name} is damaged: expected sha256 12fca82f\.\.\., found .*"
                                                rf"akamaster"):
        load_cifar_resnet_state(20)


def test_known_sizes_and_digests_match_the_shared_data():
    """The table in axlib.data.integrity matches the shared files (size of each; sha256 of the small ones)."""
    present = [k for k in integrity.KNOWN if have(k)]
    if not present:
        pytest.skip("no known input files in AXLIB_DATA")
    for rel in present:
        exp = integrity.KNOWN[rel]
        assert (SHARED / rel).stat().st_size == exp.size, rel
        if exp.size < 10_000_000:
            assert cachefiles.sha256_file(SHARED / rel) == exp.sha256, rel
