import pytest
import torch
from torch import nn

from axlib import quant
from axlib.models.resnet_cifar import CifarResNet
from axlib.validate import ParameterError


@pytest.mark.parametrize("value, exponent", [(1.0, 0), (0.5, -1), (0.6, 0), (3.0, 2), (4.0, 2), (4.01, 3),
                                             (0.0625, -4), (0.07, -3), (0.0, 0), (200.0, 8)])
def test_pow2_exponent_rounds_up_to_power_of_two(value, exponent):
    assert quant.pow2_exponent(value) == exponent


def test_quantize_known_values_and_clipping():
    # 4 bits over [-1, 1): step 1/8, codes -8..7 -> values -1.0 .. 0.875
    x = torch.tensor([0.1, 0.0624, 0.0625, 0.1875, -2.0, 5.0, 0.875, -1.0, -0.3])
    q = quant.quantize(x, bits=4, exponent=0)
    expected = torch.tensor([0.125, 0.0, 0.0, 0.25, -1.0, 0.875, 0.875, -1.0, -0.25])  # ties go to even codes
    assert torch.equal(q, expected)


def test_quantize_range_and_grid():
    lo, hi, step = quant.representable_range(8, 2)
    assert (lo, hi, step) == (-4.0, 4.0 - 2.0**-5, 2.0**-5)
    x = torch.linspace(-10, 10, 10001)
    q = quant.quantize(x, 8, 2)
    assert q.min() == lo and q.max() == hi
    assert torch.all(torch.remainder(q / step, 1) == 0)
    assert len(torch.unique(q)) == 256
    inside = (x >= lo) & (x <= hi)
    assert (q[inside] - x[inside]).abs().max() <= step / 2 + 1e-7


@pytest.mark.parametrize("bits", [0, 33, -1])
def test_quantize_rejects_bad_bits(bits):
    with pytest.raises(ParameterError, match="bits"):
        quant.quantize(torch.zeros(3), bits, 0)


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def _model_and_batches():
    torch.manual_seed(0)
    m = TwoLayer().eval()
    with torch.no_grad():
        m.conv.weight.mul_(3.0)   # conv weights up to ~1.0, fc weights small
        m.fc.weight.mul_(0.1)
    x = torch.randn(16, 1, 6, 6) * 5
    return m, [(x[:8], None), (x[8:], None)]


def test_calibrate_records_max_abs_per_layer():
    m, batches = _model_and_batches()
    r = quant.calibrate(m, batches)
    assert list(r) == ["conv", "fc"]
    x = torch.cat([b[0] for b in batches])
    assert r["conv"]["input_max_abs"] == pytest.approx(x.abs().max().item())
    assert r["fc"]["weight_max_abs"] == pytest.approx(m.fc.weight.abs().max().item())
    with torch.no_grad():
        h = torch.relu(m.conv(x)).flatten(1)
    assert r["fc"]["input_max_abs"] == pytest.approx(h.abs().max().item(), rel=1e-6)


def test_plan_global_vs_per_layer_exponents():
    ranges = {"a": {"input_max_abs": 3.0, "weight_max_abs": 0.4}, "b": {"input_max_abs": 0.2, "weight_max_abs": 0.05}}
    g = quant.plan(ranges, "global", 8, 6)
    assert {q.input_exponent for q in g.values()} == {2} and {q.weight_exponent for q in g.values()} == {2}
    p = quant.plan(ranges, "per_layer", {"a": 5}, 6)
    assert (p["a"].input_exponent, p["a"].weight_exponent, p["b"].input_exponent, p["b"].weight_exponent) == (2, -1, -2, -4)
    assert p["a"].input_bits == 5 and p["b"].input_bits is None and p["b"].weight_bits == 6
    with pytest.raises(ParameterError, match="unknown layer"):
        quant.plan(ranges, "per_layer", {"zz": 4}, 4)
    with pytest.raises(ParameterError, match="mode"):
        quant.plan(ranges, "bogus", 4, 4)


def test_quantized_context_applies_and_restores():
    m, batches = _model_and_batches()
    x = batches[0][0]
    w0 = m.conv.weight.detach().clone()
    with torch.no_grad():
        ref = m(x)
        p = quant.plan(quant.calibrate(m, batches), "per_layer", 2, 2)
        with quant.quantized(m, p):
            coarse = m(x)
            assert len(torch.unique(m.conv.weight)) <= 4
        p24 = quant.plan(quant.calibrate(m, batches), "per_layer", 24, 24)
        with quant.quantized(m, p24):
            fine = m(x)
        after = m(x)
    assert torch.equal(m.conv.weight, w0)
    assert torch.equal(after, ref)
    assert not torch.allclose(coarse, ref, atol=1e-2)
    assert torch.allclose(fine, ref, atol=1e-4)


def test_fold_batchnorm_keeps_the_function():
    torch.manual_seed(1)
    m = CifarResNet(20).eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    folded = quant.fold_batchnorm(m)
    assert not any(isinstance(x, nn.BatchNorm2d) for x in folded.modules())
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(folded(x), m(x), atol=1e-4, rtol=1e-4)
    assert any(isinstance(x, nn.BatchNorm2d) for x in m.modules())  # original untouched
