"""Parameter handling of axlib.repro (no kernels started)."""

from axlib import repro, runs


def test_integer_overrides_of_float_parameters_become_floats():
    assert repro.like_default([0.0, 0.1], [0, 0.5]) == [0.0, 0.5]
    assert all(isinstance(v, float) for v in repro.like_default([0.0, 0.1], [0, 1]))
    assert isinstance(repro.like_default(10.0, 20), float)
    assert repro.like_default([1, 2], [3, 4]) == [3, 4] and isinstance(repro.like_default([1, 2], [3])[0], int)
    assert repro.like_default(0.5, True) is True        # booleans are not numbers here
    assert repro.like_default(0.5, None) is None
    assert repro.like_default(["a"], [0]) == [0]        # non-float defaults leave values alone


def test_profile_overrides_reach_the_run_key_as_the_notebook_validates_them():
    """hanif2018/fig10 validates `fractions` into floats; its smoke override [0, 0.5] must key like [0.0, 0.5]."""
    nb = repro.find("hanif2018/fig10")
    params = repro.effective_params(nb, "smoke", {"fractions": [0, 0.5]})
    assert params["fractions"] == [0.0, 0.5] and isinstance(params["fractions"][0], float)
    key = {k: v for k, v in params.items() if k != "profile"}
    assert runs.run_key(nb.id, key, "smoke") == runs.run_key(nb.id, {**key, "fractions": [0.0, 0.5]}, "smoke")
