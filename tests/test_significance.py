import numpy as np
import pytest
import torch
from torch import nn

from axlib.methods import significance as sig
from axlib.validate import ParameterError


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 5, 3)
        self.fc = nn.Linear(5 * 3 * 3, 4)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        return self.fc(torch.relu(self.conv2(x)).flatten(1))


def _setup():
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.bn1.running_mean.uniform_(-0.5, 0.5)
        net.bn1.bias.uniform_(-0.5, 0.5)
    return net, torch.randn(12, 3, 10, 10)


def test_statistics_equal_a_direct_numpy_computation():
    net, x = _setup()
    df = sig.data_aware_significance(net, "conv1", "conv2", [(x[:7], None), (x[7:], None)])
    with torch.no_grad():   # the consumer's input, computed by hand
        a = torch.max_pool2d(torch.relu(net.bn1(net.conv1(x))), 2).numpy().astype(np.float64)
    w = net.conv2.weight.detach().numpy().astype(np.float64)
    for j in range(6):
        aj, wj = a[:, j].ravel(), w[:, j].ravel()
        mu_a, sd_a, mu_w, sd_w = aj.mean(), aj.std(), wj.mean(), wj.std()
        sigma = np.sqrt(sd_a**2 * sd_w**2 + sd_a**2 * mu_w**2 + sd_w**2 * mu_a**2)   # Eq. (1)
        row = df.iloc[j]
        np.testing.assert_allclose([row.mu_a, row.sigma_a, row.mu_w, row.sigma_w], [mu_a, sd_a, mu_w, sd_w], rtol=1e-6,
                                   atol=1e-6)
        np.testing.assert_allclose([row.sigma, row.mu, row.significance], [sigma, mu_a * mu_w, 2 * sigma + mu_a * mu_w],
                                   rtol=1e-6, atol=1e-9)
        assert row.l1 == pytest.approx(np.abs(net.conv1.weight[j].detach().numpy()).sum(), rel=1e-6)
    assert sorted(df["rank_data_aware"]) == list(range(6))
    assert df.loc[df["rank_data_aware"] == 0, "significance"].item() == df["significance"].min()


def test_linear_consumer_reads_channel_blocks():
    net, x = _setup()
    df = sig.data_aware_significance(net, "conv2", "fc", [(x, None)])
    w = net.fc.weight.detach().numpy().astype(np.float64).reshape(4, 5, 9)
    np.testing.assert_allclose(df["mu_w"], w.mean(axis=(0, 2)), rtol=1e-6, atol=1e-9)


@torch.no_grad()
def test_pruning_equals_a_network_without_the_filters_and_restores():
    net, x = _setup()
    clean = net(x)
    drop = [1, 4]
    keep = [j for j in range(6) if j not in drop]
    with sig.pruned(net, "conv1", "conv2", drop):
        got = net(x)
        assert net.conv1.weight[drop].abs().sum() == 0
    small = Net().eval()   # the same network with the two filters really removed
    small.conv1 = nn.Conv2d(3, 4, 3, padding=1)
    small.bn1 = nn.BatchNorm2d(4).eval()
    small.conv2 = nn.Conv2d(4, 5, 3)
    small.conv1.weight.copy_(net.conv1.weight[keep])
    small.conv1.bias.copy_(net.conv1.bias[keep])
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(small.bn1, name).copy_(getattr(net.bn1, name)[keep])
    small.conv2.weight.copy_(net.conv2.weight[:, keep])
    small.conv2.bias.copy_(net.conv2.bias)
    small.fc.load_state_dict(net.fc.state_dict())
    torch.testing.assert_close(got, small(x), rtol=1e-5, atol=1e-6)
    assert torch.equal(net(x), clean)


def test_macs_saved_counts_both_layers():
    net, x = _setup()
    m = sig.macs_saved(net, "conv1", "conv2", x)
    assert m["per_filter_own"] == 10 * 10 * 9 * 3              # h·w·k²·x_i
    assert m["per_filter_consumer"] == 3 * 3 * 9 * 5            # consumer output 3x3, k=3, 5 filters
    assert m["producer_macs"] == 6 * m["per_filter_own"] and m["consumer_macs"] == 6 * m["per_filter_consumer"]
    m2 = sig.macs_saved(net, "conv2", "fc", x)
    assert m2["per_filter_consumer"] == 4 * 9


def test_bad_layers_and_filters():
    net, x = _setup()
    with pytest.raises(ParameterError, match="conv7"):
        sig.data_aware_significance(net, "conv7", "conv2", [(x, None)])
    with pytest.raises(ParameterError, match="filters"):
        with sig.pruned(net, "conv1", "conv2", [6]):
            pass
    with pytest.raises(ValueError, match="densely"):
        sig.data_aware_significance(net, "conv2", "conv2", [(x, None)])
