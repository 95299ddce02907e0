"""Parameter/memory counts, the DRAM-access model and the DCT code-size study of akhlaghi2020 ch. 5.

- Counts (Tables 5.1, 5.4, 5.5, 5.7) are taken from the converted networks themselves
  (:func:`axlib.nn.slicegen.convert`, :func:`~axlib.nn.slicegen.count_parameters`): trainable
  parameters, ``A`` left out for a pre-trained CSG. BSG sizes in 16-bit words (§5.6.2): inference
  = the rest + ⌈n_c/16⌉ words per code + ⌈n_c/16⌉ for the base vector; training = the rest + n_c
  floats per code (the base vector is fixed). The thesis's values beside ours come from its tables.
- DRAM model (Tables 5.6 "energy saving of DRAM"; spec §7): energy ∝ words moved per image. The
  BSG design moves its inference parameters ``S(n_c)`` plus the feature maps at the pipeline-group
  boundaries ``F``; the original moves ``X`` words (parameters re-fetched per input partition: not
  published, fitted). Saving = X / (S + F).
- DCT study (§5.4.3, Eqs. 5.2-5.3): orthonormal 4-D DCT-II of pretrained slices, one global
  magnitude threshold, PSNR* of each slice after rescaling slice and reconstruction to [0, 1] with
  the slice's own min/max.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from axlib import validate
from axlib.models.mobilenetv2_cifar import MobileNetV2Cifar
from axlib.models.resnet_cifar import CifarResNet
from axlib.nn import slicegen as sg

#: Networks of ch. 5 available here: builder and the rule for the convs it replaces (§5.7.1, §5.7.7).
NETWORKS = {
    **{f"resnet{d}": ((lambda d=d: CifarResNet(d)), "all_but_first") for d in (20, 32, 44, 56, 110)},
    "mobilenetv2": (MobileNetV2Cifar, "first_pointwise"),
}
#: Pretrained CIFAR ResNets (akamaster) used for the SVD initialisation and the DCT study.
PRETRAINED = ("resnet20", "resnet32", "resnet44", "resnet56")

#: Table 5.1 / 5.4 rows reproducible here: (network, kind, slice shape, n_c, pre-trained CSG) →
#: (# parameters, printed ratio). The DenseNet and ShuffleNet rows have no definition here (spec §9).
PAPER_COUNTS = [
    ("resnet56", None, None, None, False, 853_018, 1.00, "Table 5.1"),
    ("resnet56", "csg", (16, 16, 3, 3), 128, False, 347_162, 2.45, "Tables 5.1, 5.4"),
    ("resnet56", "csg", (12, 12, 3, 3), 72, False, 160_450, 5.31, "Tables 5.1, 5.4"),
    ("resnet56", "csg", (16, 16, 3, 3), 128, True, 52_250, 16.3, "Table 5.1 (CSG pre-trained on ResNet-20)"),
    ("mobilenetv2", None, None, None, False, 2_296_922, 1.00, "Table 5.1"),
    ("mobilenetv2", "csg", (16, 16, 1, 1), 16, False, 1_595_322, 1.44, "Table 5.1"),
]
#: Our ResNet-20 rows (no thesis value): the network trained on the default pages.
OWN_COUNTS = [
    ("resnet20", None, None, None, False),
    ("resnet20", "csg", (16, 16, 3, 3), 128, False),
    ("resnet20", "csg", (12, 12, 3, 3), 72, False),
]
#: Table 5.5 (ResNet-56, BSG [16,16,3,3]): n_c → (train K words, inference K words, printed ratio, accuracy %).
TABLE_5_5 = {256: (99, 11, 77.2, 88.14), 512: (193, 17, 50.3, 90.33), 1024: (382, 29, 29.7, 91.52),
             2048: (759, 52, 16.3, 92.26)}
TABLE_5_5_ORIGINAL = {"size_k": 853, "accuracy_pct": 93.19}
#: Table 5.7 (MobileNetV2, BSG [16,16,1,1] on the first pointwise conv of each block): printed label
#: n_c → (train M words, inference M words, printed ratio, accuracy %).
TABLE_5_7 = {32: (1.73, 1.56, 1.48, 91.29), 64: (1.92, 1.57, 1.46, 91.67), 128: (2.30, 1.59, 1.44, 92.19)}
TABLE_5_7_ORIGINAL = {"size_m": 2.30, "accuracy_pct": 93.33}
#: Table 5.6 (ResNet-56 on xc7z020, Vivado HLS / XPE / DRAMPower): published constants, not modelled
#: here except the DRAM saving. Keys: "original" and n_c.
TABLE_5_6 = {
    "latency_ms": {"original": 28.8, 256: 24.25, 512: 24.54, 1024: 27.09, 2048: 29.2},
    "fpga_energy_mj": {"original": 50.11, 256: 40.25, 512: 41.22, 1024: 46.05, 2048: 47.30},
    "dram_saving_x": {"original": 1.0, 256: 35.38, 512: 32.48, 1024: 27.9, 2048: 21.77},
    "bram": {"original": 39, 256: 35, 512: 35, 1024: 36, 2048: 38},
    "dsp": {"original": 6, 256: 6, 512: 6, 1024: 6, 2048: 6},
    "ff": {"original": 20345, 256: 13697, 512: 14763, 1024: 16888, 2048: 19131},
    "lut": {"original": 48994, 256: 43435, 512: 45842, 1024: 49802, 2048: 53214},
}
#: Table 5.8 (MobileNetV2 on xc7z020): published constants; keys "original" and the printed n_c labels.
TABLE_5_8 = {
    "latency_ms": {"original": 200.4, 32: 189.23, 64: 190.2, 128: 191.3},
    "fpga_energy_mj": {"original": 358.71, 32: 323.59, 64: 336.65, 128: 340.51},
    "dram_saving_pct": {32: 44.24, 64: 43.87, 128: 43.13},
    "bram": {"original": 131, 32: 130, 64: 130, 128: 130},
    "dsp": {"original": 35, 32: 35, 64: 35, 128: 35},
    "ff": {"original": 16209, 32: 14399, 64: 14645, 128: 15295},
    "lut": {"original": 45219, 32: 44154, 64: 44234, 128: 45103},
}
#: xc7z020-clg484 resources (the percentages of Tables 5.6/5.8 refer to these).
XC7Z020 = {"lut": 53_200, "ff": 106_400, "bram": 280, "dsp": 220}


def check_network(network: str) -> str:
    return validate.choice("network", network, list(NETWORKS))


def build(network: str, device: str = "cpu") -> nn.Module:
    """The untrained network definition (``device="meta"``: shapes only, no memory)."""
    check_network(network)
    with torch.device(device):
        return NETWORKS[network][0]()


def check_fits(network: str, slice_shape, n_c: int) -> None:
    """Slice shape and n_c valid for every replaced conv of ``network`` (no weights built)."""
    sg.check_n_c(n_c)
    net = build(network, "meta")
    for name in sg.target_convs(net, NETWORKS[network][1]):
        sg.grid(net.get_submodule(name).weight.shape, slice_shape, name)


def convert(model: nn.Module, network: str, kind: str, slice_shape, n_c: int, init: str = "scratch", seed: int = 0):
    """:func:`axlib.nn.slicegen.convert` with the network's layer rule."""
    return sg.convert(model, kind, slice_shape, n_c, layers=NETWORKS[network][1], init=init, seed=seed)


def count(network: str, kind: str | None = None, slice_shape=None, n_c: int | None = None,
          pretrained_generator: bool = False) -> dict:
    """Parameters of ``network`` (original when ``kind`` is None, else its CSG/BSG form) counted on the
    converted network: ``params`` (trainable, Table 5.1), ``slices``, and BSG 16-bit word sizes."""
    net = build(network)
    original = sg.count_parameters(net)
    if kind is None:
        return {"network": network, "kind": "original", "params": original, "slices": 0, "ratio": 1.0,
                "original_params": original}
    conv, info = convert(net, network, kind, slice_shape, n_c)
    params = sg.count_parameters(conv, pretrained_generator)
    row = {"network": network, "kind": kind, "slice_shape": str(list(slice_shape)), "n_c": n_c,
           "pretrained_generator": pretrained_generator, "params": params, "slices": info["n_slices"],
           "ratio": original / params, "original_params": original}
    if kind == "bsg":
        words = math.ceil(n_c / 16)
        rest = params - info["n_slices"] * n_c
        row.update(rest=rest, train_words=params, inference_words=rest + info["n_slices"] * words + words,
                   inference_ratio=original / (rest + info["n_slices"] * words + words))
    return row


def printed_match(ours: float, printed: float) -> bool:
    """``ours`` agrees with a printed value to its last digit (rounded or truncated: the thesis's
    tables do both, e.g. 2.4571 printed 2.45 but 1.4398 printed 1.44)."""
    text = f"{printed}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    unit = 10.0 ** -decimals
    return abs(ours - printed) < unit + 1e-12


def count_table() -> pd.DataFrame:
    """Tables 5.1/5.4 rows (ours beside the thesis's) and our ResNet-20 rows."""
    rows = []
    for network, kind, shape, n_c, pre, params, ratio, source in PAPER_COUNTS:
        r = count(network, kind, shape, n_c, pre)
        rows.append({**r, "paper_params": params, "paper_ratio": ratio, "source": source,
                     "params_equal": r["params"] == params, "ratio_matches": printed_match(r["ratio"], ratio)})
    for network, kind, shape, n_c, pre in OWN_COUNTS:
        rows.append({**count(network, kind, shape, n_c, pre), "source": "ours (default pages)"})
    return pd.DataFrame(rows)


def bsg_table(network: str, n_cs, slice_shape, paper: dict, unit: float, label_factor: int = 1) -> pd.DataFrame:
    """BSG sizes for printed labels ``n_cs`` (counted at ``label_factor``·label) against ``paper``
    (label → (train, inference, ratio, accuracy)) in units of ``unit`` words."""
    rows = []
    for label in n_cs:
        r = count(network, "bsg", slice_shape, label * label_factor)
        row = {"network": network, "label_n_c": label, "counted_n_c": label * label_factor, "slices": r["slices"],
               "rest": r["rest"], "train_words": r["train_words"], "inference_words": r["inference_words"],
               "inference_ratio": r["inference_ratio"]}
        if label in paper:
            pt, pi, pr, acc = paper[label]
            row.update(paper_train=pt, paper_inference=pi, paper_ratio=pr, paper_accuracy_pct=acc,
                       train_matches=printed_match(r["train_words"] / unit, pt),
                       inference_matches=printed_match(r["inference_words"] / unit, pi),
                       ratio_matches=printed_match(r["inference_ratio"], pr))
        rows.append(row)
    return pd.DataFrame(rows)


#: The BSG experiments of §5.7.7: (network, printed n_c labels, slice shape).
BSG_RESNET56 = ("resnet56", (256, 512, 1024, 2048), (16, 16, 3, 3))
BSG_MOBILENETV2 = ("mobilenetv2", (32, 64, 128), (16, 16, 1, 1))
#: The two readings of Table 5.7's code sizes: (factor applied to the printed label, name).
TABLE_5_7_READINGS = ((1, "printed labels"), (2, "labels × 2"))


def bsg_tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 5.5 (ResNet-56, K words) and Table 5.7 (MobileNetV2, M words, both readings) against the thesis."""
    t55 = bsg_table(*BSG_RESNET56, TABLE_5_5, 1000)
    t57 = pd.concat([bsg_table(*BSG_MOBILENETV2, TABLE_5_7, 1e6, f).assign(reading=r) for f, r in TABLE_5_7_READINGS],
                    ignore_index=True)
    return t55, t57


def eq5_6_check(network: str, slice_shape, n_c: int, seed: int = 0, rows: int = 64) -> dict:
    """Eq. 5.5 against Eq. 5.6 (packed bits) on the first replaced layer's codes of a freshly
    converted BSG ``network``: ``rows`` weights per code."""
    net, _ = convert(build(network), network, "bsg", tuple(slice_shape), n_c, "scratch", seed)
    layer = next(iter(sg.sliced_layers(net).values()))
    base, codes = net.slice_generator.base, layer.codes.detach()
    w55 = sg.bsg_weights(base, codes, rows).numpy().astype(np.int64)
    bw, cw = sg.pack_bits(base.numpy()), sg.pack_bits(torch.where(codes >= 0, 1.0, -1.0).numpy())
    return {"n_c": n_c, "weights_compared": int(w55.size),
            "eq5_6_equal": bool(np.array_equal(sg.bsg_weights_xor(bw, cw, n_c, rows), w55)),
            "eq5_6_as_printed_is_negation": bool(np.array_equal(sg.bsg_weights_xor(bw, cw, n_c, rows, True), -w55))}


# --------------------------------------------------------------------------- DRAM model


def boundary_feature_words(network: str) -> dict[str, int]:
    """Words of the feature maps crossing DRAM per 32x32 image (ResNets): the image is read once;
    each stage's output is written and read back by the next stage, the last one written once
    (three pipeline groups = the three stages, the stem in the first). Spec §7: 56,320 for every
    CIFAR ResNet."""
    check_network(network)
    if not network.startswith("resnet"):
        raise validate.ParameterError(f"the DRAM feature-map model is defined for the CIFAR ResNets, not {network!r}")
    net = build(network, "meta").eval()
    sizes = {}
    hooks = [getattr(net, s).register_forward_hook(lambda m, i, o, s=s: sizes.__setitem__(s, o[0].numel()))
             for s in ("layer1", "layer2", "layer3")]
    with torch.no_grad():
        net(torch.empty(1, 3, 32, 32, device="meta"))
    for h in hooks:
        h.remove()
    return {"image": 3 * 32 * 32, "layer1_out (write+read)": 2 * sizes["layer1"],
            "layer2_out (write+read)": 2 * sizes["layer2"], "layer3_out (write)": sizes["layer3"]}


def dram_model(sizes: dict[int, int], savings: dict[int, float], fm_words: int) -> pd.DataFrame:
    """Saving = X / (S + F) with F = ``fm_words``. Three fits: X from the largest n_c alone (the spec's
    reading), X leave-one-out (each column predicted from the other three) and a free least-squares
    fit of (X, F) on all columns (1/saving = S/X + F/X). ``sizes``: n_c → inference words."""
    n_cs = sorted(sizes)
    s = np.array([sizes[n] for n in n_cs], float)
    y = np.array([savings[n] for n in n_cs], float)
    x_from_last = y[-1] * (s[-1] + fm_words)
    rows = []
    for i, n in enumerate(n_cs):
        others = [j for j in range(len(n_cs)) if j != i]
        # least squares of X on the other columns: minimise Σ (X/(S_j+F) - y_j)^2
        t = 1.0 / (s[others] + fm_words)
        x_loo = float((t * y[others]).sum() / (t * t).sum())
        rows.append({"n_c": n, "inference_words": int(s[i]), "paper_saving_x": y[i],
                     "pred_fit_on_largest": x_from_last / (s[i] + fm_words),
                     "pred_leave_one_out": x_loo / (s[i] + fm_words)})
    out = pd.DataFrame(rows)
    design = np.stack([s, np.ones_like(s)], axis=1)
    coef, *_ = np.linalg.lstsq(design, 1.0 / y, rcond=None)
    x_free, f_free = 1.0 / coef[0], coef[1] / coef[0]
    out["pred_free_fit"] = x_free / (s + f_free)
    out.attrs.update(x_from_largest=x_from_last, x_free=x_free, f_free=f_free, fm_words=fm_words)
    for c in ("pred_fit_on_largest", "pred_leave_one_out", "pred_free_fit"):
        out[c.replace("pred", "err_pct")] = 100 * (out[c] / out["paper_saving_x"] - 1)
    return out


def dram_free_fit(sizes: dict[int, int], savings: dict[int, float]) -> pd.DataFrame:
    """Both constants free: 1/saving = S/X + F/X fitted by least squares on all columns, and for every
    column on the others only (its prediction ``pred_leave_one_out``; needs ≥ 3 columns). For a
    design whose feature-map traffic F is not derived here (MobileNetV2, Table 5.8)."""
    n_cs = sorted(sizes)
    if len(n_cs) < 3:
        raise validate.ParameterError("a free fit with one column held out needs at least 3 columns")
    s = np.array([sizes[n] for n in n_cs], float)
    y = np.array([savings[n] for n in n_cs], float)

    def fit(idx):
        coef, *_ = np.linalg.lstsq(np.stack([s[idx], np.ones(len(idx))], axis=1), 1.0 / y[idx], rcond=None)
        return 1.0 / coef[0], coef[1] / coef[0]

    x_all, f_all = fit(list(range(len(n_cs))))
    rows = []
    for i, n in enumerate(n_cs):
        x_i, f_i = fit([j for j in range(len(n_cs)) if j != i])
        rows.append({"n_c": n, "inference_words": int(s[i]), "paper_saving_x": y[i],
                     "pred_free_fit": x_all / (s[i] + f_all), "pred_leave_one_out": x_i / (s[i] + f_i),
                     "x_leave_one_out": x_i, "f_leave_one_out": f_i})
    out = pd.DataFrame(rows)
    out["err_pct_leave_one_out"] = 100 * (out["pred_leave_one_out"] / out["paper_saving_x"] - 1)
    out.attrs.update(x_free=x_all, f_free=f_all)
    return out


def saving_pct_to_x(pct: float) -> float:
    """A DRAM energy saving in percent (Table 5.8) as a ratio old/new (Table 5.6's ×)."""
    return 1.0 / (1.0 - pct / 100.0)


def resnet56_dram() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table 5.6's DRAM column from the BSG ResNet-56 sizes and its group-boundary feature maps:
    the :func:`dram_model` table and one row with its fitted constants and the F terms."""
    network, n_cs, shape = BSG_RESNET56
    fm = boundary_feature_words(network)
    sizes = {n: count(network, "bsg", shape, n)["inference_words"] for n in n_cs}
    dram = dram_model(sizes, {n: TABLE_5_6["dram_saving_x"][n] for n in n_cs}, sum(fm.values()))
    return dram, pd.DataFrame([{**dram.attrs, **{f"F: {k}": v for k, v in fm.items()}}])


def mobilenet_dram() -> pd.DataFrame:
    """Table 5.8's DRAM savings (% → ratio) with both constants free (:func:`dram_free_fit`), for both
    readings of the code sizes; columns ``reading``, ``x_free``, ``f_free`` added."""
    network, labels, shape = BSG_MOBILENETV2
    savings = {lab: saving_pct_to_x(TABLE_5_8["dram_saving_pct"][lab]) for lab in labels}
    out = []
    for factor, reading in TABLE_5_7_READINGS:
        sizes = {lab: count(network, "bsg", shape, lab * factor)["inference_words"] for lab in labels}
        fit = dram_free_fit(sizes, savings)
        out.append(fit.assign(reading=reading, x_free=fit.attrs["x_free"], f_free=fit.attrs["f_free"]))
    return pd.concat(out, ignore_index=True)


# --------------------------------------------------------------------------- DCT study (§5.4.3)


def pretrained_slices(networks=PRETRAINED, slice_shape=(16, 16, 3, 3)) -> tuple[np.ndarray, pd.DataFrame]:
    """Whole slices ``(N, *slice_shape)`` float64 of every replaced conv of the pretrained networks
    (partial slices skipped: they would be zero-padded) and a per-network count table."""
    from axlib.models import get_model

    out, rows = [], []
    for name in networks:
        validate.choice("networks", name, list(PRETRAINED))
        model, _ = get_model(name)
        n = 0
        for conv in sg.target_convs(model, NETWORKS[name][1]):
            w = model.get_submodule(conv).weight.detach()
            g = sg.grid(w.shape, slice_shape, conv)
            if any(d % s for d, s in zip(w.shape, slice_shape)):
                continue
            cut = sg.cut(w, slice_shape, conv).double().numpy().reshape(-1, *slice_shape)
            out.append(cut)
            n += int(np.prod(g))
        rows.append({"network": name, "slices": n})
    return np.concatenate(out), pd.DataFrame(rows)


def _rescale(ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    axes = tuple(range(1, ref.ndim))
    lo, hi = ref.min(axis=axes, keepdims=True), ref.max(axis=axes, keepdims=True)
    return (x - lo) / np.where(hi > lo, hi - lo, 1.0)


def psnr_star(slices: np.ndarray, approx: np.ndarray) -> np.ndarray:
    """Eqs. (5.2)-(5.3): 10·log10(1 / MSE) per slice after rescaling both to [0, 1] by the slice's min/max (dB)."""
    a, b = _rescale(slices, slices), _rescale(slices, approx)
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)
    return 10 * np.log10(1.0 / np.maximum(mse, 1e-30))


def dct_sweep(slices: np.ndarray, thresholds) -> pd.DataFrame:
    """Keep DCT-II coefficients with |K| ≥ threshold (one global threshold), invert, score PSNR*.

    Rows: threshold, mean PSNR* (dB), mean coefficients kept per slice, code-size ratio P / kept."""
    from scipy.fft import dctn, idctn

    axes = tuple(range(1, slices.ndim))
    coef = dctn(slices, axes=axes, norm="ortho")
    p = int(np.prod(slices.shape[1:]))
    rows = []
    for t in thresholds:
        kept = np.abs(coef) >= t
        rec = idctn(np.where(kept, coef, 0.0), axes=axes, norm="ortho")
        k = kept.reshape(len(slices), -1).sum(axis=1)
        rows.append({"threshold": float(t), "mean_psnr_db": float(psnr_star(slices, rec).mean()),
                     "mean_kept": float(k.mean()), "ratio": p / max(float(k.mean()), 1e-12)})
    return pd.DataFrame(rows)


def dct_choice(slices: np.ndarray, target_db: float = 20.0, n_grid: int = 60) -> tuple[pd.DataFrame, dict]:
    """Sweep thresholds (quantiles of |coefficients|) and pick the largest one whose mean PSNR* stays
    ≥ ``target_db`` (fewest coefficients kept, §5.4.3); refined by bisection between grid points."""
    from scipy.fft import dctn

    validate.number("target_db", target_db, lo=0.0, hi=200.0)
    validate.integer("n_grid", n_grid, lo=4, hi=10_000)
    mags = np.abs(dctn(slices, axes=tuple(range(1, slices.ndim)), norm="ortho")).ravel()
    qs = np.quantile(mags, np.linspace(0.0, 0.999, n_grid))
    sweep = dct_sweep(slices, qs)
    ok = sweep[sweep["mean_psnr_db"] >= target_db]
    if ok.empty:
        return sweep, {"threshold": float("nan"), "mean_psnr_db": float("nan"), "mean_kept": float("nan"),
                       "ratio": float("nan")}
    lo = float(ok["threshold"].max())
    above = sweep[sweep["threshold"] > lo]["threshold"]
    hi = float(above.min()) if len(above) else lo
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if dct_sweep(slices, [mid])["mean_psnr_db"].iloc[0] >= target_db:
            lo = mid
        else:
            hi = mid
    chosen = dct_sweep(slices, [lo]).iloc[0].to_dict()
    return sweep, chosen


def zero_reconstruction_psnr(slices: np.ndarray) -> float:
    """Mean PSNR* of an all-zero reconstruction: the floor every threshold is compared with."""
    return float(psnr_star(slices, np.zeros_like(slices)).mean())
