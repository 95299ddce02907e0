"""Tables and figures of the delaparra2021 retraining pages (Figs. 6-9, Table 7), from a saved raw run.

Everything here reads the tidy table :func:`axlib.methods.retrain.study` returns (one row per
(net, multiplier, method) point) and computes nothing new: accuracies in %, the 8-bit reference of
each (net, multiplier) and the paper's MRE grouping.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from axlib import plotting
from axlib.methods import retrain

#: Marker and legend label of each retraining method.
METHOD_STYLE = {"errmodel": ("o", "error model (Eqs. 6-12)"), "baseline": ("s", "baseline (Eq. 16)"),
                "awgn": ("^", "AWGN at the layer SNR"), "none": ("x", "not retrained"),
                "behavioral": ("D", "behavioural simulation (Eq. 13)")}
#: The paper network each of ours stands for (a stand-in shares the paper's Table 4 row).
STANDS_FOR = {"resnet8": "resnet8", "resnet14": "resnet14", "resnet20": "resnet14", "allcnn_c": "allcnn_c",
              "allcnn_c_quarter": "allcnn_c", "resnet18": "resnet18"}


def tidy(res: pd.DataFrame) -> pd.DataFrame:
    """``res`` with ``paper_mre_pct`` (Table 2), ``accuracy_pct`` and ``accuracy_8bit_pct`` added."""
    res = res.copy()
    res["paper_mre_pct"] = res["multiplier"].map(retrain.paper_mre_pct)
    res["accuracy_pct"] = 100 * res["accuracy"]
    res["accuracy_8bit_pct"] = 100 * res["accuracy_8bit"]
    return res


def reference_8bit(res: pd.DataFrame) -> pd.Series | None:
    """Exact-product 8-bit top-1 (%) of each (net, multiplier) before retraining (the ``none`` points: same
    quantization grid and test images as the retrained ones); None without ``none`` points."""
    none = res[res["method"] == "none"]
    return None if none.empty else none.set_index(["net", "multiplier"])["accuracy_8bit_pct"]


def accuracy_table(res: pd.DataFrame, methods) -> pd.DataFrame:
    """One row per (net, multiplier): both MREs, the 8-bit reference and the top-1 (%) of every method."""
    tab = res.pivot_table(index=["net", "multiplier"], columns="method", values="accuracy_pct")
    tab = tab[[m for m in methods if m in tab.columns]]
    ref = reference_8bit(res)
    if ref is not None:
        tab.insert(0, "8-bit", ref)
    first = res.groupby(["net", "multiplier"])
    tab.insert(0, "MRE % (paper Table 2)", first["paper_mre_pct"].first())
    tab.insert(1, "MRE % (ours, Eq. 2)", first["mre_eq2_pct"].first())
    return tab.sort_values(["net", "MRE % (paper Table 2)"])


def timing_sentence(res: pd.DataFrame) -> str:
    """Mean seconds of training and of collecting the error statistics per retrained point."""
    times = res[res["method"] != "none"].groupby(["net", "method"])[["train_s", "model_s"]].mean()
    return ("Mean seconds per retraining point (training, and collecting the error statistics where the method "
            "needs them): " + "; ".join(f"{n} {m} {r.train_s:.0f} s + {r.model_s:.0f} s"
                                       for (n, m), r in times.iterrows()) + ".")


def plot_by_multiplier(res: pd.DataFrame, net: str, methods, title: str):
    """Top-1 after retraining per multiplier (ordered by paper MRE), one series per method, with our 8-bit and
    8-bit − 1 pp (ε) references and the paper's 8-bit accuracy of the network it stands for."""
    sub = res[res["net"] == net].sort_values("paper_mre_pct")
    fig, ax = plotting.subplots(figsize=(6.5, 4.4))
    mults = list(dict.fromkeys(sub["multiplier"]))
    x = np.arange(len(mults))
    for m in [m for m in methods if m in set(sub["method"])]:
        s = sub[sub["method"] == m].set_index("multiplier").loc[mults]
        ax.plot(x, s["accuracy_pct"], marker=METHOD_STYLE[m][0], linestyle=":" if m == "none" else "-",
                label=METHOD_STYLE[m][1])
    ref = reference_8bit(res)
    if ref is not None:
        r8 = ref.loc[net].loc[mults]
        ax.plot(x, r8, color="0.3", linestyle="--", linewidth=1, label="ours: 8-bit, exact products")
        ax.plot(x, r8 - 1, color="0.3", linestyle=":", linewidth=1, label="ours: 8-bit − 1 pp (ε)")
    paper_net = STANDS_FOR[net]
    q8 = retrain.PAPER_TABLE4[paper_net]["q8_pct"]
    ax.axhline(q8, color="black", linewidth=0.8, alpha=0.5)
    ax.annotate(f"paper: 8-bit {paper_net} {q8:.2f} %", (0.01, q8), xycoords=("axes fraction", "data"),
                va="bottom")
    ax.set_xticks(x, [f"{m.split(':')[-1]}\n{retrain.paper_mre_pct(m):.1f} %" for m in mults])
    ax.set_xlabel("stand-in multiplier (paper MRE, Table 2)")
    ax.set_ylabel("top-1 after retraining (%)")
    ax.set_title(title)
    lo = max(0.0, float(np.nanmin(sub["accuracy_pct"])) - 3)
    hi = max(float(sub["accuracy_pct"].max()), q8) + 2
    ax.set_ylim(lo, hi + 0.08 * (hi - lo))  # room above the paper's 8-bit line for its label (clear of the title)
    plotting.legend_below(ax)  # below the x label: never over data
    return fig, ax


def pairs_text(values: pd.Series) -> str:
    """``net digits value`` for every (net, multiplier) entry of ``values`` (pp, signed)."""
    return ", ".join(f"{n} {m.split(':')[-1]} {v:+.2f} pp" for (n, m), v in values.items())


__all__ = ["METHOD_STYLE", "STANDS_FOR", "accuracy_table", "pairs_text", "plot_by_multiplier", "reference_8bit",
           "tidy", "timing_sentence"]
