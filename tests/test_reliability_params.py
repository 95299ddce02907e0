"""Every notebook validates every parameter before any work (reliability issue, item 3).

The validators of :mod:`axlib.methods.nbparams` are called directly with each notebook's effective
parameters (no papermill, no data, no training): the defaults of every profile pass; the cases named in
the issue, an empty list wherever an empty list makes no sense, a repeated value wherever repeats would
duplicate table rows, and a value of the wrong type all raise a ParameterError naming the parameter.
"""

from __future__ import annotations

import ast
import copy
import functools
import inspect
import re

import pytest

from axlib import repro
from axlib.methods import nbparams
from axlib.validate import ParameterError

NOTEBOOKS = {nb.id: nb for nb in repro.discover()}
IDS = sorted(NOTEBOOKS)
BOGUS = "?bogus?"

#: (notebook, list parameter) where an empty list is meaningful.
EMPTY_ALLOWED = {
    ("akhlaghi2020/fig2_11", "bf_extra"),         # no extra filter runs
    ("akhlaghi2020/fig2_11", "ablation_values"),  # no ablation
    ("axlib/bench01", "lowrank_tables"),          # no low-rank timing ("No low-rank table was selected")
}
#: (notebook, list parameter) where a repeated value is meaningful or removed by the notebook itself.
REPEAT_ALLOWED = {
    ("akhlaghi2020/fig2_7", "fractions"), ("akhlaghi2020/tab2_1", "fractions"),  # [profile share, tune share]
    ("akhlaghi2020/tab2_3", "fractions"),
    ("hanif2018/fig10", "fractions"),             # the notebook takes the sorted set
}


@functools.cache
def _effective(nb_id: str, profile: str) -> dict:
    return repro.effective_params(NOTEBOOKS[nb_id], profile)


def defaults(nb_id: str, profile: str = "default") -> dict:
    """The notebook's effective parameters (a fresh copy: validators must not see another test's edits)."""
    return copy.deepcopy(_effective(nb_id, profile))


def assert_rejected(nb_id: str, name: str, value, **more):
    params = {**defaults(nb_id), name: value, **more}
    with pytest.raises(ParameterError) as exc:
        nbparams.validate_params(nb_id, params)
    assert re.search(rf"\b{re.escape(name)}\b", str(exc.value)), f"{nb_id}: message does not name {name}: {exc.value}"
    return str(exc.value)


def list_params(nb_id: str) -> list[str]:
    return [k for k, v in defaults(nb_id).items() if isinstance(v, list)]


# --------------------------------------------------------------------------- coverage


def test_every_notebook_has_a_validator():
    assert sorted(nbparams.VALIDATORS) == IDS


@pytest.mark.parametrize("nb_id", IDS)
def test_validator_takes_exactly_the_notebook_parameters(nb_id):
    sig = inspect.signature(nbparams.VALIDATORS[nb_id])
    assert all(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in sig.parameters.values())
    assert sorted(sig.parameters) == sorted(defaults(nb_id))


@pytest.mark.parametrize("nb_id", IDS)
def test_notebook_validates_every_parameter_right_after_naming_itself(nb_id):
    """The cell after ``parameters`` calls ``nbparams.check(NB, p=p, ...)`` with every parameter, as the first
    statement after ``NB = ...`` (so nothing runs before it)."""
    nb = repro.read_notebook(NOTEBOOKS[nb_id])
    cells = [c for c in nb.cells if c.cell_type == "code"]
    i = cells.index(repro.parameter_cell(nb))
    body = ast.parse(cells[i + 1].source).body
    k = next(j for j, s in enumerate(body) if isinstance(s, ast.Assign) and getattr(s.targets[0], "id", None) == "NB")
    assert all(isinstance(s, (ast.Import, ast.ImportFrom)) for s in body[:k])
    call = body[k + 1].value if isinstance(body[k + 1], ast.Expr) else None
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "nbparams.check", ast.unparse(body[k + 1])
    assert [ast.unparse(a) for a in call.args] == ["NB"]
    assert all(isinstance(kw.value, ast.Name) and kw.value.id == kw.arg for kw in call.keywords)
    assert sorted(kw.arg for kw in call.keywords) == sorted(repro.parameter_defaults(NOTEBOOKS[nb_id]))


# --------------------------------------------------------------------------- defaults pass


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
@pytest.mark.parametrize("nb_id", IDS)
def test_profile_parameters_pass(nb_id, profile):
    nbparams.validate_params(nb_id, defaults(nb_id, profile))


def test_unknown_notebook_is_a_parameter_error():
    with pytest.raises(ParameterError, match="no parameter validator"):
        nbparams.check("nobody/fig00")


# --------------------------------------------------------------------------- the cases


def test_acc01_empty_multipliers():
    assert "empty" in assert_rejected("axlib/acc01", "multipliers", [])


def test_acc01_unknown_and_repeated_multipliers():
    msg = assert_rejected("axlib/acc01", "multipliers", ["exact8u", "evoapprox:mul8u_NOPE"])
    assert "mul8u_NOPE" in msg and "mul8u_KEM" in msg
    assert "trunc<k>" in assert_rejected("axlib/acc01", "multipliers", ["nope"])
    assert_rejected("axlib/acc01", "multipliers", ["exact8u", "exact8u"])


def test_fig2_7_empty_fu_scales():
    assert "empty" in assert_rejected("akhlaghi2020/fig2_7", "fu_scales", [])


def test_fig3_4_model_and_layer():
    assert "resnet20" in assert_rejected("akhlaghi2020/fig3_4", "model", "resnet21")
    assert "lenet5" not in assert_rejected("akhlaghi2020/fig3_4", "model", "lenet5").split("allowed")[1]
    msg = assert_rejected("akhlaghi2020/fig3_4", "layer", "layer9.conv1")
    assert "layer9.conv1" in msg and "layer2.1.conv1" in msg
    assert "conv3" in assert_rejected("akhlaghi2020/fig3_4", "layer", "layer2.1.conv1", model="cifarquick")
    nbparams.check("akhlaghi2020/fig3_4", **{**defaults("akhlaghi2020/fig3_4"), "model": "cifarquick", "layer": "conv3"})


def test_hanif_fig05_layers():
    nb = "hanif2018/fig05"
    msg = assert_rejected(nb, "layers", {"resnet20": ["conv1", "layer9.conv1"]})
    assert "layer9.conv1" in msg and "layer1.0.conv1" in msg
    assert_rejected(nb, "layers", {"resnet20": []})
    assert_rejected(nb, "layers", {"resnet20": ["conv1", "conv1"]})
    assert_rejected(nb, "layers", {"resnet21": "all"})
    assert_rejected(nb, "layers", ["conv5"], models=["vggf_cifar", "lenet5"])   # lenet5 has two convs
    assert_rejected(nb, "layers", "some")
    nbparams.check(nb, **{**defaults(nb), "layers": "all"})
    nbparams.check(nb, **{**defaults(nb), "layers": ["conv1"], "models": ["vggf_cifar", "lenet5"]})


def test_other_layer_parameters_are_checked_against_the_definition():
    assert "conv5" in assert_rejected("hanif2018/fig04", "layer", "conv9")
    assert_rejected("hanif2018/fig04", "layer", "features.6")             # an AlexNet layer, not VGG-f's
    assert_rejected("hanif2018/fig07", "producer", "fc1")
    assert "conv3" in assert_rejected("hanif2018/fig07", "consumer", "conv4")   # does not read conv2
    assert_rejected("hanif2018/fig07", "channels", [0, 10_000])
    assert_rejected("hanif2018/fig07", "channels", [])
    nbparams.check("hanif2018/fig07", **{**defaults("hanif2018/fig07"), "channels": [0, 1, 2, 3]})
    msg = assert_rejected("hanif2018/fig10", "producers", {"resnet20": ["conv1"]})  # feeds a residual add
    assert "layer1.0.conv1" in msg


# --------------------------------------------------------------------------- generic cases


@pytest.mark.parametrize("nb_id", IDS)
def test_empty_lists_are_rejected(nb_id):
    for name in list_params(nb_id):
        if (nb_id, name) in EMPTY_ALLOWED:
            nbparams.validate_params(nb_id, {**defaults(nb_id), name: []})
        else:
            assert_rejected(nb_id, name, [])


@pytest.mark.parametrize("nb_id", IDS)
def test_repeated_values_are_rejected(nb_id):
    for name in list_params(nb_id):
        value = defaults(nb_id)[name]
        if not value or (nb_id, name) in REPEAT_ALLOWED:
            continue
        assert_rejected(nb_id, name, [value[0], *value])


@pytest.mark.parametrize("nb_id", IDS)
def test_values_of_the_wrong_type_are_rejected(nb_id):
    for name in defaults(nb_id):
        assert BOGUS in assert_rejected(nb_id, name, BOGUS)
