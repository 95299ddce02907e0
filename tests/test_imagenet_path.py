"""The dataset="imagenet" path (torchvision AlexNet + a local validation folder), on a fake folder.

ImageNet is not available here, so a tiny class-per-folder tree of random JPEGs stands in for it and
AlexNet gets random weights (its torchvision weights are not downloadable offline). What is checked is
the wiring: loading, disjoint seeded splits, and the hanif2018 and SnaPEA analyses running on it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from axlib import data, models
from axlib.methods import resilience as res
from axlib.methods import snapea
from axlib.validate import ParameterError


@pytest.fixture
def fake_imagenet(tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, wnid in enumerate(("n01440764", "n01443537", "n01484850")):
        folder = tmp_path / "imagenet" / "val" / wnid
        folder.mkdir(parents=True)
        for i in range(4):
            img = rng.integers(0, 256, size=(60 + 10 * c, 80, 3), dtype=np.uint8)
            Image.fromarray(img).save(folder / f"ILSVRC2012_val_{c:04d}{i:04d}.JPEG")
    monkeypatch.setenv("AXLIB_DATA", str(tmp_path))
    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path / "cache"))

    def random_torchvision_state(network):
        torch.manual_seed(0)
        return models.spec(network).build().state_dict()

    monkeypatch.setattr("axlib.models.pretrained.load_torchvision_state", random_torchvision_state)
    res.setup.cache_clear()
    snapea.setup.cache_clear()
    yield tmp_path
    res.setup.cache_clear()
    snapea.setup.cache_clear()


def test_evaluation_split_is_disjoint_seeded_and_224_pixels(fake_imagenet):
    (x1, y1), (x2, y2) = data.evaluation_split("imagenet", "imagenet_meanstd", 5, 4, seed=3)
    assert x1.shape == (5, 3, 224, 224) and x2.shape == (4, 3, 224, 224)
    assert set(y1.tolist()) | set(y2.tolist()) <= {0, 1, 2}
    flat = torch.cat([x1, x2]).flatten(1)
    assert len({tuple(r[:16].tolist()) for r in flat}) == 9  # nine different images: disjoint subsets
    (x1b, _), _ = data.evaluation_split("imagenet", "imagenet_meanstd", 5, 4, seed=3)
    assert torch.equal(x1, x1b)
    (x1c, _), _ = data.evaluation_split("imagenet", "imagenet_meanstd", 5, 4, seed=4)
    assert not torch.equal(x1, x1c)
    with pytest.raises(ParameterError, match="imagenet_meanstd"):
        data.evaluation_split("imagenet", "cifar_meanstd", 5, 4, seed=3)


def test_hanif_setup_runs_on_imagenet(fake_imagenet):
    s = res.setup("alexnet", 4, 5, 0)
    assert s.n_calib == 4 and s.n_test == 5
    assert s.clean_logits.shape == (5, 1000)


def test_snapea_runs_on_imagenet_alexnet(fake_imagenet):
    relu = snapea.relu_inputs("alexnet", 3, 0)
    assert list(relu["fed_by"][:5]) == ["features.0", "features.3", "features.6", "features.8", "features.10"]
    assert ((relu["negative_share"] >= 0) & (relu["negative_share"] <= 1)).all()
    s = snapea.setup("alexnet", 3, 4, 0)
    assert [sl.name for sl in s.layers] == ["features.3", "features.6", "features.8", "features.10"]
    assert len(s.opt_labels) == 3 and len(s.test_labels) == 4
    logits, ops = snapea.numba_forward(s, {}, 1)   # exact mode through the numba kernel
    with torch.no_grad():
        dense = s.net(s.test[0][0][:1])
    assert torch.allclose(logits, dense, atol=1e-3, rtol=1e-4)
    for sl in s.layers:
        assert ops[sl.name].max() <= sl.k and ops[sl.name].min() >= 1


def test_retraining_runs_on_imagenet_resnet18(fake_imagenet):
    """delaparra2021 Figs. 8-9: the ImageNet path of retrain.point (a seeded split of the validation folder)."""
    from axlib.methods import retrain

    retrain._data.cache_clear()
    try:
        out = retrain.point("resnet18", "smapprox:3330", "errmodel", n_train=6, epochs=1, lr=1e-4, batch_size=3, p=6,
                            n_test=4, n_calib=3, seed=0, progress=False)
    finally:
        retrain._data.cache_clear()
    assert out["n_test"] == 4 and out["steps"] == 2 and out["model_s"] > 0
    assert 0.0 <= out["accuracy"] <= 1.0 and 0.0 <= out["accuracy_8bit"] <= 1.0
