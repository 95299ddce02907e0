import numpy as np
import pytest
import torch
from torch import nn

from axlib import multipliers as mul
from axlib.nn import ApproxLayer, approximate, operand_table, quantize_codes
from axlib.validate import ParameterError
from tests.conftest import have


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, stride=2, padding=1, groups=2, bias=False)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.fc(x.flatten(1))


def _setup():
    torch.manual_seed(0)
    model = Small().eval()
    x = torch.randn(8, 3, 8, 8)
    return model, x, [(x, None)]


def test_quantize_codes_eq1_of_delaparra2021():
    z = torch.tensor([-3.0, -0.26, 0.24, 0.26, 5.0])
    assert quantize_codes(z, 4, 0.5).tolist() == [-6.0, -1.0, 0.0, 1.0, 7.0]          # signed: [-8, 7]
    assert quantize_codes(z, 4, 0.5, signed=False).tolist() == [0.0, 0.0, 0.0, 1.0, 10.0]  # unsigned: [0, 15]


def test_exact_table_path_equals_fake_quantized_float_path():
    model, x, calib = _setup()
    fq = approximate(model, None, calib)
    lut = approximate(model, mul.exact(8), calib)
    lut_s = approximate(model, mul.exact(8, signed=True), calib)
    with torch.no_grad():
        a, b, c = fq(x), lut(x), lut_s(x)
    assert torch.allclose(a, b, atol=1e-5)
    assert isinstance(lut.conv1, ApproxLayer) and lut.conv1.a_signed and not lut.conv2.a_signed
    # a signed circuit limits unsigned activations to 7 bits, so it differs slightly but stays close
    assert torch.allclose(a, c, atol=0.2)


def test_approximate_multiplier_changes_outputs_and_trains():
    model, x, calib = _setup()
    exact_out = approximate(model, mul.exact(8), calib)(x)
    approx_model = approximate(model, mul.truncated(8), calib)
    out = approx_model(x)
    assert not torch.allclose(out, exact_out, atol=1e-3)
    out.sum().backward()   # straight-through gradients reach every layer's weights
    for layer in (approx_model.conv1, approx_model.conv2, approx_model.fc):
        assert layer.layer.weight.grad is not None and layer.layer.weight.grad.abs().sum() > 0


def test_operand_table_sign_magnitude():
    t, a_off, w_off, conv = operand_table(mul.exact(8), a_signed=False)
    assert t.shape == (256, 256) and (a_off, w_off) == (0, 128) and "sign-magnitude" in conv
    assert t[200, -3 + 128] == -600 and t[255, -128 + 128] == 255 * -128
    t2, a2, w2, _ = operand_table(mul.exact(8), a_signed=True)
    assert t2[-5 + a2, -7 + w2] == 35 and np.array_equal(t2, mul.exact(8, signed=True).table)


def test_unknown_layer_is_rejected():
    model, _, calib = _setup()
    with pytest.raises(ParameterError, match="conv9"):
        approximate(model, None, calib, layers=["conv9"])


@pytest.mark.skipif(not all(have(p) for p in
                            ("pretrained/resnet20-12fca82f.th", "cifar10/cifar10-uint8.npz")),
                    reason="ResNet-20 weights or CIFAR-10 not in AXLIB_DATA")
def test_resnet20_exact_lut_path_matches_fake_quantized_path():
    from axlib import data, models

    m, _ = models.get_model("resnet20")
    xc, yc = data.tensors("cifar10", "train", "imagenet_meanstd", n=128, seed=1)
    xt, _ = data.tensors("cifar10", "test", "imagenet_meanstd", n=64, seed=0)
    calib = [(xc, yc)]
    with torch.no_grad():
        a = approximate(m, None, calib)(xt)
        b = approximate(m, mul.exact(8), calib)(xt)
    assert torch.equal(a.argmax(1), b.argmax(1))
    assert torch.allclose(a, b, atol=1e-4)
