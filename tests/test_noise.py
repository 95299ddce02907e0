import math

import pytest
import torch
from torch import nn

from axlib.nn import noise
from axlib.validate import ParameterError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1))


def _setup():
    torch.manual_seed(0)
    return Net().eval(), torch.randn(16, 3, 8, 8)


@torch.no_grad()
def test_zero_noise_and_zero_bias_is_bit_exact_and_hooks_are_removed():
    net, x = _setup()
    clean = net(x)
    with noise.inject(net, ["conv1", "conv2"], power_dbw=-math.inf, bias=0.0):
        assert torch.equal(net(x), clean)
    with noise.inject(net, "conv2", power_dbw=10.0, seed=1):
        assert not torch.equal(net(x), clean)
    assert torch.equal(net(x), clean)   # removed: unchanged afterwards
    assert all(not m._forward_hooks for m in net.modules())


@torch.no_grad()
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_requested_snr_is_realised_within_half_a_db(snr_db):
    net, x = _setup()
    with noise.inject(net, ["conv1", "conv2"], snr_db=snr_db, calib=[(x, None)], seed=3) as h:
        net(x)
        for layer, r in h.realised().items():
            assert abs(r["snr_db"] - snr_db) < 0.5, (layer, r)
    with noise.inject(net, "conv2", snr_db=snr_db, calib=[(x, None)], seed=4) as h:
        net(x)
        r = h.realised()["conv2"]
    assert r["signal_power"] == pytest.approx(r["reference_power"])   # nothing upstream: seen power = calibrated
    assert abs(10 * math.log10(r["signal_power"] / r["noise_power"]) - snr_db) < 0.5


@torch.no_grad()
def test_dbw_variance_bias_and_determinism():
    net, x = _setup()
    with noise.inject(net, "conv1", power_dbw=20.0, bias=0.5, seed=7) as h:
        a = net(x)
        r = h.realised()["conv1"]
    assert abs(math.sqrt(r["noise_power"]) - 10.0) < 0.3    # 20 dBW -> sigma 10
    assert abs(r["noise_mean"] - 0.5) < 0.1
    with noise.inject(net, "conv1", power_dbw=20.0, bias=0.5, seed=7):
        b = net(x)
    with noise.inject(net, "conv1", power_dbw=20.0, bias=0.5, seed=8):
        c = net(x)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_bad_arguments():
    net, x = _setup()
    with pytest.raises(ParameterError, match="conv9"):
        noise.inject(net, "conv9", power_dbw=0.0)
    with pytest.raises(ParameterError, match="not both"):
        noise.inject(net, "conv1", power_dbw=0.0, snr_db=3.0)
    with pytest.raises(ParameterError, match="calib"):
        noise.inject(net, "conv1", snr_db=3.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@torch.no_grad()
def test_cuda_noise_is_seeded():
    net, x = _setup()
    net, x = net.cuda(), x.cuda()
    outs = []
    for _ in range(2):
        with noise.inject(net, "conv2", power_dbw=5.0, seed=2):
            outs.append(net(x))
    assert outs[0].device.type == "cuda" and torch.equal(outs[0], outs[1])
