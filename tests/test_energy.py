"""Energy model and exact MAC/zero counting of axlib.energy (moons2016 §3.2) against brute force."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from axlib import energy
from axlib.validate import ParameterError


def _sparse(t: torch.Tensor, frac: float, gen: torch.Generator) -> torch.Tensor:
    return t * (torch.rand(t.shape, generator=gen) >= frac)


def _brute_conv(m: nn.Conv2d, x: torch.Tensor) -> tuple[int, int]:
    """Loop over every output element and every kernel tap; padding taps are zero inputs."""
    n, cin, h, w = x.shape
    cout, cin_g, kh, kw = m.weight.shape
    g, (sh, sw), (ph, pw), (dh, dw) = m.groups, m.stride, m.padding, m.dilation
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    macs = nonzero = 0
    for b, o, i, j in itertools.product(range(n), range(cout), range(ho), range(wo)):
        grp = o // (cout // g)
        for c, u, v in itertools.product(range(cin_g), range(kh), range(kw)):
            macs += 1
            r, s = i * sh - ph + u * dh, j * sw - pw + v * dw
            xin = x[b, grp * cin_g + c, r, s].item() if 0 <= r < h and 0 <= s < w else 0.0
            nonzero += (xin != 0) and (m.weight[o, c, u, v].item() != 0)
    return macs, nonzero


@pytest.mark.parametrize("kw", [dict(in_channels=3, out_channels=4, kernel_size=3, padding=1),
                                dict(in_channels=2, out_channels=3, kernel_size=(2, 3), stride=2, padding=(1, 0)),
                                dict(in_channels=4, out_channels=4, kernel_size=3, groups=2, dilation=2, padding=2)])
def test_conv_counts_match_brute_force(kw):
    gen = torch.Generator().manual_seed(1)
    m = nn.Conv2d(**kw)
    with torch.no_grad():
        m.weight.copy_(_sparse(torch.randn(m.weight.shape, generator=gen), 0.4, gen))
    x = _sparse(torch.randn(2, kw["in_channels"], 6, 7, generator=gen), 0.5, gen)
    c = energy.layer_macs(m, x)
    macs, nonzero = _brute_conv(m, x)
    assert (c["macs"], c["nonzero_macs"]) == (macs, nonzero)
    assert c["zero_inputs"] == int((x == 0).sum()) and c["inputs"] == x.numel()
    assert c["zero_weights"] == int((m.weight == 0).sum())
    assert 0 < nonzero < macs


def test_linear_counts_match_brute_force():
    gen = torch.Generator().manual_seed(2)
    m = nn.Linear(7, 5)
    with torch.no_grad():
        m.weight.copy_(_sparse(torch.randn(5, 7, generator=gen), 0.3, gen))
    x = _sparse(torch.randn(4, 7, generator=gen), 0.5, gen)
    c = energy.layer_macs(m, x)
    nonzero = sum(int(x[b, i] != 0 and m.weight[o, i] != 0) for b in range(4) for o in range(5) for i in range(7))
    assert (c["macs"], c["nonzero_macs"]) == (4 * 5 * 7, nonzero)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.fc = nn.Linear(2 * 5 * 5, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_count_macs_over_batches_sums_layers_and_sees_relu_zeros():
    torch.manual_seed(0)
    m = Tiny().eval()
    x = torch.randn(6, 1, 5, 5)
    counts = energy.count_macs(m, [(x[:4], None), (x[4:], None)])
    assert counts["layer"].tolist() == ["conv", "fc"] and (counts["images"] == 6).all()
    conv, fc = counts.iloc[0], counts.iloc[1]
    assert conv["macs"] == 6 * 2 * 25 * 9 and fc["macs"] == 6 * 3 * 50
    h = torch.relu(m.conv(x)).flatten(1)
    assert fc["zero_inputs"] == int((h == 0).sum()) > 0
    assert fc["nonzero_macs"] == energy.layer_macs(m.fc, h)["nonzero_macs"]


def test_mac_energy_normalisation_and_scaling():
    assert energy.mac_energy(16, 16) == pytest.approx(1.0)
    assert energy.multiplier_energy(16) == pytest.approx(1.0)
    assert energy.multiplier_energy(8) == pytest.approx(72 / 272)      # n(n+1) blocks, not n^2
    assert energy.multiplier_energy(4, 8) == pytest.approx((32 + 6) / 272)
    assert energy.adder_energy(8) == pytest.approx(0.5)                # linear
    s = energy.MULT_SHARE
    assert s == pytest.approx((0.2 * 272 / 72) / (0.2 * 272 / 72 + 0.1))
    assert energy.mac_energy(8, 8) == pytest.approx(s * 72 / 272 + (1 - s) * 0.5)
    assert energy.mac_energy(8, 8, mult_share=1.0) == pytest.approx(72 / 272)
    with pytest.raises(ParameterError, match="mult_share"):
        energy.mac_energy(8, 8, mult_share=1.5)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_multiplier_term_follows_fig01a_block_count(n):
    """The multiplier term is the active-block count of Fig. 1a's array multiplier (exhaustive operands)."""
    from axlib.methods import array_multiplier as am

    a, b = am.all_pairs(n, n, "lsb")
    blocks = am.active_blocks(a, b, n)
    assert blocks == n * (n + 1)
    assert energy.multiplier_blocks(n) == blocks
    assert energy.multiplier_energy(n) * energy.multiplier_blocks(16) == pytest.approx(blocks)


def test_multiplier_term_matches_fig01a_caption_scaling():
    """Fig. 1a caption: scaling a 4-bit multiplier from 4 to 2 bits drops the active blocks from 20 to 6."""
    from axlib.methods import array_multiplier as am

    counts = {k: am.active_blocks(*am.all_pairs(4, k, "lsb"), 4) for k in (2, 4)}
    assert counts == {2: 6, 4: 20}
    assert energy.multiplier_energy(4) / energy.multiplier_energy(2) == pytest.approx(counts[4] / counts[2])
    assert energy.multiplier_energy(4) / energy.multiplier_energy(2) != pytest.approx(4.0)   # not the n^2 law


def test_zero_fractions_both_readings():
    counts = pd.DataFrame({"layer_index": [0, 1], "layer": ["a", "b"], "images": [2, 2],
                           "macs": [100, 100], "nonzero_macs": [50, 20],
                           "inputs": [20, 40], "zero_inputs": [2, 30], "weights": [10, 30], "zero_weights": [0, 3]})
    z = energy.zero_fractions(counts)
    assert z["zero_input_fraction"] == pytest.approx(32 / 60)
    assert z["zero_weight_fraction"] == pytest.approx(3 / 40)
    assert z["zero_operand_fraction"] == pytest.approx((16 + 3) / (30 + 40))   # per inference: inputs/2 + weights
    assert z["zero_output_fraction"] == pytest.approx(30 / 40)                  # first layer's input (image) left out
    assert z["skipped_mac_fraction"] == pytest.approx(1 - 70 / 200)
    assert np.isnan(energy.zero_fractions(counts.iloc[:1])["zero_output_fraction"])


def test_network_energy_with_and_without_skipping():
    counts = pd.DataFrame({"layer": ["a", "b"], "macs": [100, 300], "nonzero_macs": [50, 30]})
    assert energy.network_energy(counts, 16, 16, skipping=False) == pytest.approx(1.0)
    assert energy.network_energy(counts, 16, 16, skipping=True) == pytest.approx(80 / 400)
    e = energy.network_energy(counts, {"a": 8, "b": 4}, {"a": 4, "b": 4}, skipping=True, mult_share=1.0)
    assert e == pytest.approx((50 * 38 / 272 + 30 * 20 / 272) / 400)


@pytest.mark.parametrize("mode", ["round", "truncate"])
def test_product_rmse_exact_formula_matches_enumeration(mode):
    full, n = 6, 3
    a = np.arange(2**full) / 2**full
    r = np.floor(a * 2**n) if mode == "truncate" else np.minimum(np.round(a * 2**n), 2**n - 1)
    ar = r / 2**n
    brute = np.sqrt(np.mean((np.outer(a, a) - np.outer(ar, ar)) ** 2))
    assert energy.product_rmse([n], mode, full_bits=full)[0] == pytest.approx(brute, rel=1e-12)


def test_product_rmse_halves_per_bit_and_vanishes_at_full_precision():
    r = energy.product_rmse([4, 5, 6, 7, 8], "round")
    assert np.all(np.diff(r) < 0)
    assert np.allclose(r[1:] / r[:-1], 0.5, atol=0.03)
    assert energy.product_rmse([16])[0] == 0.0


def test_table1_law_reproduces_runs_stored_before_the_block_law():
    """``law="n2"`` is the model of the raw runs stored before Fig. 1a (Figs. 6-7): n_a·n_w / 256, share 0.889."""
    assert energy.MULT_SHARE_N2 == pytest.approx(0.8 / 0.9)
    assert energy.MULT_SHARE == pytest.approx(0.2 * 272 / 72 / (0.2 * 272 / 72 + 0.1))
    # moons2016/fig07's stored energy table: LeNet-5, uniform 2 bits, no skipping = 0.02777777778
    assert energy.mac_energy(2, 2, energy.MULT_SHARE_N2, "n2") == pytest.approx(0.02777777778, rel=1e-9)
    assert energy.multiplier_energy(4, law="n2") / energy.multiplier_energy(2, law="n2") == pytest.approx(4.0)
    assert energy.mac_energy(8, 8, law="n2") != pytest.approx(energy.mac_energy(8, 8))
    with pytest.raises(ParameterError, match="multiplier_law"):
        energy.multiplier_energy(4, law="n^2")
    counts = pd.DataFrame({"layer": ["a"], "macs": [10], "nonzero_macs": [4]})
    assert energy.network_energy(counts, 8, 8, False, energy.MULT_SHARE_N2, "n2") == pytest.approx(
        energy.mac_energy(8, 8, energy.MULT_SHARE_N2, "n2"))
