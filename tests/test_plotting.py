"""The book's figure style and its layout audit (axlib.plotting): each problem kind is found, a clean figure passes."""

from __future__ import annotations

import io
import json

import matplotlib
import numpy as np
import pytest

matplotlib.use("svg")

from axlib import plotting  # noqa: E402

X = np.linspace(0, 1, 40)


def test_a_clean_figure_has_no_layout_problems():
    fig, ax = plotting.subplots()
    ax.plot(X, X, label="rising")
    ax.set_xlabel("x (units)")
    ax.set_title("title")
    ax.legend(loc="upper left")  # the rising line is at the bottom there
    assert plotting.layout_problems(fig) == []


def test_a_legend_over_the_data_is_found():
    fig, ax = plotting.subplots()
    ax.plot(X, np.full_like(X, 0.95), label="flat high")
    ax.plot(X, X, label="rising")
    ax.legend(loc="upper left")
    problems = plotting.layout_problems(fig)
    assert any("covers data of 'flat high'" in p for p in problems), problems


def test_a_legend_over_the_top_of_a_bar_is_found_and_reference_lines_do_not_count():
    fig, ax = plotting.subplots()
    ax.bar([0, 1, 2, 3], [1, 1, 1, 1], label="bars")
    ax.axhline(0.95, color="k", label="reference")  # spans the axes in axes coordinates: not data
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left")
    problems = plotting.layout_problems(fig)
    assert any("covers data of 'bars'" in p for p in problems), problems
    assert not any("reference" in p for p in problems), problems


def test_small_text_and_overlapping_tick_labels_are_found():
    fig, ax = plotting.subplots()
    ax.bar(range(12), range(12), label="b")
    ax.set_xticks(range(12), [f"a long label {i}" for i in range(12)])
    ax.annotate("note", (1, 5), fontsize=7)
    problems = plotting.layout_problems(fig)
    assert "panel 1 annotations: 7 pt, below 11 pt" in problems, problems
    assert any("tick label 'a long label 0' overlaps panel 1 x tick label 'a long label 1'" in p for p in problems)


def test_the_suptitle_is_not_reported_overlapping_itself():
    fig, axes = plotting.subplots(1, 2)
    for ax in axes:
        ax.plot(X, X)
    fig.suptitle("one title")
    assert plotting.layout_problems(fig) == []


def test_the_audit_records_each_drawn_figure(tmp_path):
    out = tmp_path / "layout.json"
    plotting.audit_to(out)
    fig, ax = plotting.subplots()
    ax.plot(X, X, label="a")
    ax.legend(loc="center")
    fig2, ax2 = plotting.subplots()
    ax2.plot(X, X)
    for f in (fig, fig2):
        f.savefig(io.StringIO(), format="svg", bbox_inches="tight")
    got = json.loads(out.read_text())
    assert got["figures"] == 2 and list(got["problems"]) == ["figure 1"]
    assert "covers data of 'a'" in got["problems"]["figure 1"][0]


@pytest.fixture(autouse=True)
def _no_audit_left_on():
    yield
    plotting._AUDIT.update(path=None, figures={})


@pytest.mark.parametrize("label, shown", [
    ("accuracy_pct", "accuracy (%)"), ("area_um2", "area (µm²)"), ("train_time_s", "train time (s)"),
    ("dram_saving_x", "dram saving (×)"), ("q_w_pct", "q_w (%)"),  # a symbol's underscore is a subscript
    ("lenet_tinydnn", "lenet_tinydnn"), ("mean_q_w", "mean_q_w"),  # no unit: may be a name, left alone
    ("numba_G_lookups_per_s", "numba_G_lookups_per_s"), ("learn_s", "learn_s"),  # a rate; a step size
    ("MRE % (ours)", "MRE % (ours)"), (3, 3),
])
def test_table_headers_get_their_units(label, shown):
    from axlib.display import readable_header

    assert readable_header(label) == shown


def test_a_frame_is_shown_with_readable_headers_and_its_row_labels_kept():
    import pandas as pd

    from axlib.display import readable_frame

    df = pd.DataFrame({"energy_nJ": [1.0, 2.0]}, index=pd.Index(["vggf_cifar", "lenet_tinydnn"], name="model_MB"))
    out = readable_frame(df)
    assert list(out.columns) == ["energy (nJ)"] and out.index.name == "model (MB)"
    assert list(out.index) == ["vggf_cifar", "lenet_tinydnn"] and list(df.columns) == ["energy_nJ"]


def test_a_legend_below_an_upper_panel_leaves_room_for_the_next_panel():
    fig, axes = plotting.subplots(2, 1)
    for ax in axes:
        ax.plot(X, X, label="a series with a long enough name")
        ax.plot(X, 1 - X, label="another series")
        ax.set_xlabel("x (units)")
        ax.set_title("a title")
        plotting.legend_below(ax)
    assert plotting.layout_problems(fig) == []


def test_a_figure_made_wider_than_the_column_by_its_legend_is_found():
    fig, ax = plotting.subplots()
    ax.plot(X, X, label="a series whose legend is placed beside the axes")
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5))
    problems = plotting.layout_problems(fig)
    assert any(p.startswith("figure is ") and "wide with its labels" in p for p in problems), problems
