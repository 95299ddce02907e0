import time

import pytest
import torch

from axlib import data, models
from axlib.validate import ParameterError
from tests.conftest import needs_cifar10, needs_mnist, needs_resnet


def test_architectures_have_the_documented_sizes():
    from axlib.models.cifarquick import CifarQuick
    from axlib.models.lenet import LeNet5Caffe
    from axlib.models.resnet_cifar import CifarResNet

    count = lambda m: sum(p.numel() for p in m.parameters())
    assert count(LeNet5Caffe()) == 431080
    assert count(CifarQuick()) == 145578
    assert count(CifarResNet(20)) == 269722  # + 1,376 BN running statistics = the 271,098 stored values
    assert CifarQuick()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert LeNet5Caffe()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_vggf_cifar_has_five_conv_and_three_fc_layers():
    from torch import nn

    from axlib.models.vggf_cifar import VGGfCifar

    m = VGGfCifar().eval()
    convs = [n for n, x in m.named_modules() if isinstance(x, nn.Conv2d)]
    fcs = [n for n, x in m.named_modules() if isinstance(x, nn.Linear)]
    assert convs == list(VGGfCifar.CONV) and fcs == list(VGGfCifar.FC)
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert models.spec("vggf_cifar").dataset == "cifar10"


def test_unknown_model_is_a_parameter_error():
    with pytest.raises(ParameterError, match="lenet5"):
        models.spec("vgg99")


@needs_resnet
@needs_cifar10
def test_pretrained_resnet20_loads_and_classifies():
    m, info = models.get_model("resnet20")
    assert info["stored_top1_pct"] == pytest.approx(91.78, abs=0.01)
    x, y = data.tensors("cifar10", "test", "imagenet_meanstd", n=1000, seed=0)
    assert models.accuracy(m, x, y) > 0.88
    from axlib import provenance

    used = provenance.models_used()["resnet20"]
    assert used["origin"] == "pretrained" and used["weights_sha256_16"] == provenance.weights_digest(m.state_dict())


@needs_mnist
def test_zoo_training_is_deterministic_and_cached(tmp_path, monkeypatch):
    kw = dict(epochs=1, n_train=512, batch_size=64)
    states = []
    for run in ("a", "b"):
        monkeypatch.setenv("AXLIB_CACHE", str(tmp_path / run))
        m, info = models.get_model("lenet5", seed=3, progress=False, **kw)
        states.append(m.state_dict())
        assert 0.0 <= info["test_accuracy"] <= 1.0
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    t0 = time.perf_counter()
    m2, info2 = models.get_model("lenet5", seed=3, progress=False, **kw)  # cache hit in run "b"
    assert time.perf_counter() - t0 < 1.0
    assert all(torch.equal(m2.state_dict()[k], states[1][k]) for k in states[1])
    m3, _ = models.get_model("lenet5", seed=4, progress=False, **kw)     # other seed: other model
    assert not torch.equal(m3.state_dict()["conv1.weight"], states[1]["conv1.weight"])
    assert not list((tmp_path / "b" / "models").glob("*.partial"))


@needs_mnist
def test_zoo_trains_even_when_called_under_no_grad(tmp_path, monkeypatch):
    """Analyses run under torch.no_grad() and may trigger a zoo model's first training."""
    from axlib import config

    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path))
    with torch.no_grad():
        m, _ = models.get_model("lenet5", seed=5, progress=False, epochs=1, n_train=256, batch_size=64)
    config.seed_everything(5)
    untrained = models.spec("lenet5").build()  # the same initial weights, before any step
    assert not torch.equal(m.state_dict()["conv1.weight"], untrained.state_dict()["conv1.weight"])
