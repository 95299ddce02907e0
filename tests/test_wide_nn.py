"""8/16 and 4/8 layers of ponzina2022: byte-sliced 8x16 multipliers through LUT passes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from axlib import multipliers as mul
from axlib.multipliers import wide
from axlib.nn import ApproxLayer, LayerConfig, approximate, approximate_layers, scheme_bits
from axlib.validate import ParameterError
from tests.conftest import have

needs_wide = pytest.mark.skipif(not have("multipliers/evoapprox_mul16u_F6B_8VH_parts.npz"),
                                reason="16-bit EvoApprox parts not in AXLIB_DATA")


def test_signed_bytes_recompose():
    x = np.array([0, 1, -1, 255, 256, -257, 32767, -32768, 65535])
    parts = wide.signed_bytes(x)
    assert np.array_equal(parts[0] + (parts[1] << 8), x)


def test_exact16_byte_passes_equal_the_product():
    m = wide.exact8x16()
    rng = np.random.default_rng(0)
    x, w = rng.integers(-32768, 32768, 5000), rng.integers(-128, 128, 5000)
    assert np.array_equal(m(x, w), x * w)
    got = sum(t[v + 255, w + 128] << s for (s, t), v in zip(m.byte_pass_tables(), wide.signed_bytes(x), strict=True))
    assert np.array_equal(got, x * w)


@needs_wide
@pytest.mark.parametrize("name", ["MulF6B", "Mul8VH"])
def test_evoapprox_8x16_passes_equal_the_16bit_circuit(name):
    m = wide.get_8x16(name)
    rng = np.random.default_rng(1)
    xm, wm = rng.integers(0, 65536, 20000), rng.integers(0, 256, 20000)
    circuit = {v: k for k, v in wide.PAPER_NAME.items()}[name]
    assert np.array_equal(m.unsigned(wm, xm), wide.mul16(circuit, wm, xm))   # 8-bit operand in the first input
    x, w = rng.integers(-32768, 32768, 20000), rng.integers(-128, 128, 20000)
    got = sum(t[v + 255, w + 128] << s for (s, t), v in zip(m.byte_pass_tables(), wide.signed_bytes(x), strict=True))
    assert np.array_equal(got, m(x, w))
    assert np.array_equal(m(x, w), np.sign(x) * np.sign(w) * wide.mul16(circuit, np.abs(w), np.abs(x)))


def _conv_reference(m, x, w, padding):
    """Plain loop: out[n, o, i, j] = Σ m(x_patch, w) with zero padding (x as activations)."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, h, wd = xp.shape
    o, _, kh, kw = w.shape
    out = np.zeros((n, o, h - kh + 1, wd - kw + 1), dtype=np.int64)
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = xp[:, None, :, i:i + kh, j:j + kw]
            out[:, :, i, j] = m(patch, w[None]).sum(axis=(2, 3, 4))
    return out


@pytest.mark.parametrize("name", ["Exact16", pytest.param("Mul8VH", marks=needs_wide)])
def test_8x16_layer_integer_products_match_a_plain_loop(name):
    m = wide.get_8x16(name)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    layer = ApproxLayer(conv, m, a_step=1.0, w_step=1.0, a_signed=True, bits=16, w_bits=8)
    rng = np.random.default_rng(2)
    x, w = rng.integers(-32768, 32768, (2, 3, 5, 5)), rng.integers(-128, 128, (4, 3, 3, 3))
    got = layer._integer_products(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    assert np.array_equal(got, _conv_reference(m, x, w, 1))
    if name == "Exact16":
        ref = F.conv2d(torch.from_numpy(x).double(), torch.from_numpy(w).double(), padding=1)
        assert np.array_equal(got, ref.long().numpy())


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1))


def test_schemes_exact16_equals_fake_quant_and_4_8_uses_4bit_weights():
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(6, 3, 6, 6)
    calib = [(x, None)]
    calib64 = [(x.double(), None)]
    with torch.no_grad():
        fq = approximate(net.double(), None, calib64, scheme="8/16")(x.double())
        lut = approximate(net.double(), wide.exact8x16(), calib64, scheme="8/16")(x.double())
    assert torch.allclose(fq, lut, rtol=0, atol=1e-9)   # float64: both exact
    net = net.float()
    m48 = approximate(net, mul.exact(8), calib, scheme="4/8")
    assert m48.conv2.w_bits == 4 and m48.conv2.bits == 8
    wq = torch.round(m48.conv2.layer.weight / m48.conv2.w_step)
    assert wq.min() >= -8 and wq.max() <= 7 and len(torch.unique(wq)) <= 16
    with torch.no_grad():
        a = approximate(net, None, calib, scheme="4/8")(x)
        b = m48(x)
    assert torch.allclose(a, b, atol=1e-5)


def test_heterogeneous_config_and_errors():
    torch.manual_seed(0)
    net = Net().eval()
    calib = [(torch.randn(4, 3, 6, 6), None)]
    cfg = {"conv1": LayerConfig(None, "8/16"), "conv2": LayerConfig(mul.exact(8), "4/8")}
    model = approximate_layers(net, calib, cfg)
    assert isinstance(model.conv1, ApproxLayer) and model.conv1.bits == 16
    assert isinstance(model.fc, nn.Linear)   # layers not in the config stay float
    assert scheme_bits("8/16") == (8, 16)
    with pytest.raises(ParameterError, match="scheme"):
        LayerConfig(None, "8-16")
    with pytest.raises(ValueError, match="8x8 multiplier"):
        approximate(net, mul.exact(8), calib, scheme="8/16")
    with pytest.raises(ValueError, match="8-bit weights by 16-bit"):
        ApproxLayer(net.conv1, wide.exact8x16(), 1.0, 1.0, True, bits=16, w_bits=12)
