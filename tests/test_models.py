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


def test_lenet_tinydnn_has_the_layers_of_thesis_fig_2_3():
    """akhlaghi2020 §2.5.1: conv, pool, conv, pool, conv, FC with average pooling; tiny-dnn's sizes and MACs."""
    from torch import nn

    from axlib.methods import bloom_cnn as bc
    from axlib.models.lenet_tinydnn import LeNetTinyDnn

    m = LeNetTinyDnn().eval()
    kinds = [type(c).__name__ for c in m.children() if isinstance(c, nn.Conv2d | nn.Linear | nn.AvgPool2d | nn.MaxPool2d)]
    assert kinds == ["Conv2d", "AvgPool2d", "Conv2d", "AvgPool2d", "Conv2d", "Linear"]
    assert sum(isinstance(c, nn.Tanh) for c in m.children()) == 3
    assert [tuple(lay.weight.shape) for lay in bc.layers_of(m)] == [(6, 1, 5, 5), (16, 6, 5, 5), (120, 16, 5, 5),
                                                                   (10, 120, 1, 1)]
    macs = bc.mults_per_image(m, (1, 28, 28))
    assert macs == {"conv1": 6 * 25 * 28 * 28, "conv2": 16 * 6 * 25 * 10 * 10, "conv3": 120 * 16 * 25, "fc": 1200}
    assert sum(macs.values()) == 406_800
    assert m(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_lenet_tinydnn_input_is_32x32_in_minus_one_to_one():
    from axlib.models.lenet_tinydnn import TinyDnnInput

    pixels = torch.tensor([0.0, 1.0, 128.0, 255.0])
    x = (pixels / 256.0).view(1, 1, 1, 4).expand(2, 1, 28, 4).reshape(2, 1, 28, 4).repeat(1, 1, 1, 7)
    y = TinyDnnInput()(x)
    assert y.shape == (2, 1, 32, 32)
    assert y.min() >= -1.0 and y.max() <= 1.0 + 1e-6
    assert (y[:, :, :2, :] == -1.0).all() and (y[:, :, :, -2:] == -1.0).all()  # padding is background
    inner = y[0, 0, 2, 2:6]
    assert inner[0] == -1.0  # black pixel exactly -1 (the background the padding uses)
    assert torch.allclose(inner, 2 * pixels / 255.0 - 1.0, atol=1e-6)
    assert abs(float(inner[3]) - 1.0) < 1e-6  # white pixel -> 1


def test_lenet_tinydnn_is_a_registered_mnist_zoo_model():
    s = models.spec("lenet_tinydnn")
    assert (s.dataset, s.normalization, s.origin) == ("mnist", "scale", "zoo")
    assert s.recipe.epochs >= 1


def test_delaparra_networks_match_table4_macs():
    """delaparra2021 Table 4: ResNet8 12M, ResNet14 27M, ALL-CNN 281M, ResNet18 1,826M MACs (±5 %)."""
    from axlib import energy

    paper = {"resnet8": 12e6, "resnet14": 27e6, "allcnn_c": 281e6, "resnet18": 1826e6}
    for name, macs in paper.items():
        m = models.spec(name).build().eval()
        size = 224 if models.spec(name).dataset == "imagenet" else 32
        ours = energy.count_macs(m, [(torch.zeros(1, 3, size, size), None)])["macs"].sum()
        assert abs(ours / macs - 1) <= 0.05, (name, ours)
    assert models.spec("resnet8").origin == "zoo" and models.spec("resnet18").origin == "torchvision"


def test_allcnn_width_and_batch_norm_options():
    from torch import nn

    from axlib.models.allcnn import AllCnnC

    full, quarter = AllCnnC(), models.spec("allcnn_c_quarter").build()
    assert [m.out_channels for m in quarter.modules() if isinstance(m, nn.Conv2d)] == [24] * 3 + [48] * 5 + [10]
    assert [m.out_channels for m in full.modules() if isinstance(m, nn.Conv2d)] == [96] * 3 + [192] * 5 + [10]
    plain = AllCnnC(0.5, batch_norm=False)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    assert all(m.bias is not None for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert quarter.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    for bad in (0, -1, 5, True, "x"):
        with pytest.raises(ValueError, match="width"):
            AllCnnC(bad)


def test_torchvision_weights_missing_offline_is_a_clear_error(tmp_path, monkeypatch):
    from axlib.data.integrity import MissingDataError
    from axlib.models import pretrained

    monkeypatch.setenv("AXLIB_DATA", str(tmp_path))
    monkeypatch.setenv("AXLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("AXLIB_OFFLINE", "1")
    with pytest.raises(MissingDataError, match="resnet18-f37072fd.pth"):
        models.get_model("resnet18")
    with pytest.raises(MissingDataError, match="available"):
        pretrained.load_torchvision_state("vgg16")
