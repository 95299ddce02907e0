"""Neuron-wise error model (delaparra2021 Eqs. 5-12), baseline Eq. 16 and AWGN: statistics against a
plain NumPy reference, injected error statistics against the collected ones (within sampling
error), the ρ = ±1 and ρ = 0 limits, removal and seeding."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from axlib import multipliers
from axlib.nn import approximate, errmodel
from axlib.validate import ParameterError


def _batches(x, size):
    return [(x[i:i + size], None) for i in range(0, len(x), size)]


def _tiny_conv(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)).eval()


def test_accumulator_matches_numpy_and_is_batch_size_invariant():
    rng = np.random.default_rng(0)
    y = rng.normal(2.0, 3.0, size=(300, 4, 2))
    e = 0.5 * (y - 2.0) + rng.normal(0.1, 1.0, size=y.shape)
    e[:, 0, 0] = 0.0                                  # an exact neuron: σ_ε = 0 -> ρ = 0
    ref_rho = np.zeros((4, 2))
    for i in range(4):
        for j in range(2):
            if e[:, i, j].std() > 0:
                ref_rho[i, j] = np.corrcoef(y[:, i, j], e[:, i, j])[0, 1]
    for size in (300, 7, 64):
        acc = errmodel.StatsAccumulator()
        for k in range(0, 300, size):
            yt = torch.tensor(y[k:k + size])
            acc.update(yt, yt + torch.tensor(e[k:k + size]))
        s = acc.result()
        assert s.n == 300 and s.shape == (4, 2)
        np.testing.assert_allclose(s.mu_y, y.mean(0), rtol=1e-10)
        np.testing.assert_allclose(s.sigma_y, y.std(0), rtol=1e-10)
        np.testing.assert_allclose(s.mu_e, e.mean(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(s.sigma_e, e.std(0), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(s.rho, ref_rho, atol=1e-10)
        assert s.rho[0, 0] == 0.0
        assert s.power_e == pytest.approx(float((e**2).mean()), rel=1e-10)
        assert s.snr_db == pytest.approx(10 * math.log10((y**2).mean() / (e**2).mean()), rel=1e-10)


def test_collect_measures_the_layers_own_error_on_exact_inputs():
    torch.manual_seed(1)
    x = torch.randn(40, 3, 6, 6)
    mult = multipliers.get("trunc6")
    model = approximate(_tiny_conv(), mult, _batches(x, 20))
    stats = errmodel.collect(model, _batches(x, 16))
    assert list(stats) == ["0", "3"] and stats["0"].shape == (4, 6, 6) and stats["3"].shape == (5,)
    conv, fc = model[0], model[3]
    with torch.no_grad():
        y1 = conv.exact_products(x)
        a1 = conv(x) - conv.layer.bias.view(1, -1, 1, 1)
        h = torch.relu(y1 + conv.layer.bias.view(1, -1, 1, 1)).flatten(1)   # local reading: exact input
        y2, a2 = fc.exact_products(h), fc(h) - fc.layer.bias
    e1 = (a1 - y1).double().numpy()
    np.testing.assert_allclose(stats["0"].mu_e, e1.mean(0), atol=1e-9)
    np.testing.assert_allclose(stats["0"].sigma_e, e1.std(0), atol=1e-9)
    np.testing.assert_allclose(stats["3"].mu_e, (a2 - y2).double().numpy().mean(0), atol=1e-9)
    assert stats["0"].power_e > 0 and stats["0"].snr_db < math.inf
    # propagated inputs (ablation) change the second layer's statistics, never the first's
    prop = errmodel.collect(model, _batches(x, 16), propagate=True)
    np.testing.assert_allclose(prop["0"].mu_e, stats["0"].mu_e, atol=1e-12)
    capped = errmodel.collect(model, _batches(x, 16), max_images=25)
    assert capped["0"].n == 25


def test_collect_checks_its_inputs():
    x = torch.randn(8, 3, 6, 6)
    with pytest.raises(ParameterError, match="no ApproxLayer"):
        errmodel.collect(_tiny_conv(), _batches(x, 4))
    model = approximate(_tiny_conv(), multipliers.get("trunc6"), _batches(x, 4))
    with pytest.raises(ParameterError, match="unknown approximated layer"):
        errmodel.collect(model, _batches(x, 4), layers=["9"])
    with pytest.raises(ParameterError, match="empty"):
        errmodel.collect(model, [])


def _linear_setup(n=4000, seed=0):
    torch.manual_seed(seed)
    lin = nn.Sequential(nn.Linear(16, 9)).eval()
    x = torch.randn(n, 16)
    model = approximate(lin, None, _batches(x, 500))
    measured = errmodel.collect(model, _batches(x, 500))["0"]           # exact: ε = 0, gives μ_y, σ_y
    rho = np.array([-1.0, -0.6, -0.2, 0.0, 0.0, 0.3, 0.7, 0.95, 1.0])
    sigma_e = np.linspace(0.05, 1.5, 9)
    mu_e = np.linspace(-0.4, 0.4, 9)
    target = errmodel.NeuronStats(measured.mu_y, measured.sigma_y, mu_e, sigma_e, rho, measured.n,
                                  measured.power_y, float(np.mean(sigma_e**2 + mu_e**2)))
    return model, x, target


def test_injected_error_statistics_match_the_model_within_sampling_error():
    model, x, target = _linear_setup()
    n = len(x)
    with errmodel.apply_error_model(model, {"0": target}, seed=3):
        got = errmodel.collect(model, _batches(x, 500))["0"]
    assert np.all(np.abs(got.mu_e - target.mu_e) <= 4 * target.sigma_e / math.sqrt(n))
    assert np.all(np.abs(got.sigma_e / target.sigma_e - 1) <= 4 / math.sqrt(2 * n))
    assert np.all(np.abs(got.rho - target.rho) <= 4 * (1 - target.rho**2) / math.sqrt(n) + 1e-6)


def test_rho_limits():
    model, x, target = _linear_setup(n=500)
    layer = model[0]
    with torch.no_grad():
        y = layer.exact_products(x).double().numpy()
    outs = []
    for seed in (0, 1):
        with errmodel.apply_error_model(model, {"0": target}, seed=seed), torch.no_grad():
            outs.append((model(x) - layer.layer.bias).double().numpy() - y)
    s1 = (y - target.mu_y) / target.sigma_y
    for k in (0, 8):                                 # ρ = -1 and +1: Ξ is a deterministic function of Y
        expected = target.sigma_e[k] * target.rho[k] * s1[:, k] + target.mu_e[k]
        np.testing.assert_allclose(outs[0][:, k], expected, atol=1e-4)
        np.testing.assert_allclose(outs[1][:, k], outs[0][:, k], atol=1e-5)
    assert not np.allclose(outs[0][:, 3], outs[1][:, 3])          # ρ = 0: fresh S2 per seed
    # ρ = 0: Ξ does not depend on Y, so the gradient w.r.t. the weights is the exact layer's
    w = layer.layer.weight
    only = {"0": errmodel.NeuronStats(target.mu_y, target.sigma_y, target.mu_e, target.sigma_e,
                                      np.zeros_like(target.rho), target.n, target.power_y, target.power_e)}
    grads = []
    for handle in (None, errmodel.apply_error_model(model, only, seed=0)):
        w.grad = None
        model(x[:64]).sum().backward()
        grads.append(w.grad.clone())
        if handle is not None:
            handle.remove()
    torch.testing.assert_close(grads[0], grads[1])
    # ρ = 1: the gradient gains the σ_ε ρ ∂S1/∂w term of Eq. (15)
    with errmodel.apply_error_model(model, {"0": target}, seed=0):
        w.grad = None
        model(x[:64]).sum().backward()
    assert not torch.allclose(w.grad, grads[0])


def test_error_model_is_removable_and_seeded():
    model, x, target = _linear_setup(n=200)
    with torch.no_grad():
        plain = model(x)
        with errmodel.apply_error_model(model, {"0": target}, seed=5):
            a = model(x)
            a2 = model(x)                               # fresh S2 each forward
        with errmodel.apply_error_model(model, {"0": target}, seed=5):
            b = model(x)
        after = model(x)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, a2)
    torch.testing.assert_close(after, plain, rtol=0, atol=0)
    bad = errmodel.NeuronStats(*(v[:3] for v in target.arrays().values()), target.n, 1.0, 1.0)
    with pytest.raises(ValueError, match="neuron shape"), errmodel.apply_error_model(model, {"0": bad}):
        model(x)


def test_relative_error_moments():
    assert errmodel.relative_error_moments(multipliers.get("exact8u")) == (0.0, 0.0)
    m = multipliers.get("trunc6")
    mu, sigma = errmodel.relative_error_moments(m)
    exact = m.exact_table().astype(float)
    rel = (m.table - exact) / np.maximum(1, np.abs(exact))
    assert mu == pytest.approx(rel.mean()) and sigma == pytest.approx(rel.std())
    assert mu < 0 < sigma                                           # truncation only loses value
    mu_lit, _ = errmodel.relative_error_moments(m, signed_mean=False)
    assert mu_lit == pytest.approx(-multipliers.error_metrics(m)["mre_pct"] / 100)


def test_weight_error_model_matches_eq16():
    torch.manual_seed(0)
    lin = nn.Sequential(nn.Linear(32, 6)).eval()
    x = torch.randn(64, 32)
    model = approximate(lin, None, _batches(x, 32))
    layer = model[0]
    with torch.no_grad():
        plain = model(x)
        with errmodel.apply_weight_error(model, 0.0, 0.0):
            torch.testing.assert_close(model(x), plain, rtol=0, atol=0)
        handle = errmodel.apply_weight_error(model, -0.05, 0.2, seed=2)
        f = torch.cat([layer.weight_error(torch.zeros(400, 32)).flatten() for _ in range(5)])
        assert float(f.mean()) == pytest.approx(0.95, abs=4 * 0.2 / math.sqrt(f.numel()))
        assert float(f.std()) == pytest.approx(0.2, rel=0.02)
        assert not torch.allclose(model(x), plain)
        handle.remove()
        assert layer.weight_error is None
        torch.testing.assert_close(model(x), plain, rtol=0, atol=0)
        # the same seed reproduces the output: Y = X (W_q ⊙ Err) Δ + b
        with errmodel.apply_weight_error(model, -0.05, 0.2, seed=2):
            layer.weight_error(torch.zeros(400, 32))
            g = torch.Generator().manual_seed(2 * 1_000_003)
            torch.randn((400, 32), generator=g)
            err = 0.95 + 0.2 * torch.randn(layer.layer.weight.shape, generator=g)
            xq, wq = layer._codes(x)
            expected = torch.nn.functional.linear(xq, wq * err) * layer.a_step * layer.w_step + layer.layer.bias
            torch.testing.assert_close(model(x), expected)
    approx_model = approximate(lin, multipliers.get("trunc6"), _batches(x, 32))
    with pytest.raises(ParameterError, match="exact path"):
        errmodel.apply_weight_error(approx_model, 0.0, 0.1)


def test_awgn_matches_the_measured_snr():
    torch.manual_seed(0)
    x = torch.randn(64, 3, 6, 6)
    approx_model = approximate(_tiny_conv(), multipliers.get("trunc5"), _batches(x, 32))
    stats = errmodel.collect(approx_model, _batches(x, 32))
    snr = errmodel.awgn_snr_db(stats)
    assert all(math.isfinite(v) for v in snr.values())
    exact_model = approximate(_tiny_conv(), None, _batches(x, 32))
    with torch.no_grad():
        plain = exact_model(x)
        with errmodel.apply_awgn(exact_model, stats, seed=1) as h:
            for _ in range(20):
                exact_model(x)
            real = h.realised()
        torch.testing.assert_close(exact_model(x), plain, rtol=0, atol=0)
    for n, s in stats.items():
        assert real[n]["noise_power"] == pytest.approx(s.power_e, rel=0.05)
        assert abs(real[n]["noise_mean"]) < 0.05 * math.sqrt(s.power_e)


def test_noise_inject_takes_one_snr_per_layer():
    from axlib.nn import noise

    torch.manual_seed(0)
    model = _tiny_conv()
    x = torch.randn(32, 3, 6, 6)
    power = {"0": 4.0, "3": 1.0}
    with torch.no_grad(), noise.inject(model, ["0", "3"], snr_db={"0": 10.0, "3": 20.0}, signal_power=power) as h:
        for _ in range(10):
            model(x)
        real = h.realised()
    assert real["0"]["noise_power"] == pytest.approx(0.4, rel=0.05)
    assert real["3"]["noise_power"] == pytest.approx(0.01, rel=0.1)
    with pytest.raises(ParameterError, match="no value for layer"):
        noise.inject(model, ["0", "3"], snr_db={"0": 10.0}, signal_power=power)


def test_collect_samples_agree_with_the_statistics():
    torch.manual_seed(2)
    x = torch.randn(30, 3, 6, 6)
    model = approximate(_tiny_conv(), multipliers.get("trunc6"), _batches(x, 15))
    stats = errmodel.collect(model, _batches(x, 10))
    picks = {"0": [0, 1, 7, 143], "3": [2]}
    samples = errmodel.collect_samples(model, _batches(x, 10), picks)
    y, e = samples["0"]
    assert y.shape == e.shape == (30, 4)
    flat_mu_e, flat_sy = stats["0"].mu_e.reshape(-1), stats["0"].sigma_y.reshape(-1)
    np.testing.assert_allclose(e.mean(0), flat_mu_e[picks["0"]], atol=1e-9)
    np.testing.assert_allclose(y.std(0), flat_sy[picks["0"]], atol=1e-9)
    with pytest.raises(ParameterError, match="neurons"):
        errmodel.collect_samples(model, _batches(x, 10), {"3": [5]})
