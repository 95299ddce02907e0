"""delaparra2021 Table 3 / Figs. 3-4 statistics: the KS distance against SciPy, parameter checks, and a
tiny end-to-end point."""

import json

import numpy as np
import pytest

from axlib.methods import errstats
from axlib.validate import ParameterError
from tests.conftest import TINY_RESNET8_ZOO, needs_cifar10


def test_ks_normal_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    x = np.column_stack([rng.normal(3, 2, 400), rng.exponential(1.0, 400), rng.uniform(-1, 1, 400)])
    ours = errstats.ks_normal(x)
    for k in range(3):
        col = x[:, k]
        ref = stats.kstest(col, "norm", args=(col.mean(), col.std())).statistic
        assert ours[k] == pytest.approx(ref, abs=1e-12)
    assert ours[0] < 0.06 < ours[1]                        # a normal column is close, an exponential one is not
    assert np.isnan(errstats.ks_normal(np.ones((10, 1))))[0]


def test_bad_parameters():
    with pytest.raises(ParameterError, match="net"):
        errstats.study("vgg99", ["smapprox:3330"], 100, 10, 0)
    with pytest.raises(ParameterError, match="multipliers"):
        errstats.study("resnet8", [], 100, 10, 0)
    with pytest.raises(ParameterError, match="p="):
        errstats.study("resnet8", ["smapprox:3330"], 1, 10, 0)


@needs_cifar10
def test_tiny_study_on_resnet8(tiny_resnet8_cache):
    zoo = json.dumps(TINY_RESNET8_ZOO, sort_keys=True)
    out = errstats.study("resnet8", ["smapprox:1100", "smapprox:2222"], p=40, n_calib=20, seed=0, zoo_json=zoo,
                         n_ks=16, progress=False)
    layers = out["layers"]
    assert len(layers) == 2 * 8 and set(layers["multiplier"]) == {"smapprox:1100", "smapprox:2222"}
    assert (layers["p"] == 40).all() and layers["mean_abs_rho"].between(0, 1).all()
    assert layers["frac_significant"].between(0, 1).all()
    big = layers.groupby("multiplier")["power_e"].mean()
    assert big["smapprox:2222"] > big["smapprox:1100"]      # the larger MRE gives more error power
    assert set(out["fig4"]["layer"]) == set(layers["layer"].unique()[:3]) and len(out["fig3"]) == 8 * 3 * 40
