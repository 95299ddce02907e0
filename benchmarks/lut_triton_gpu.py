"""GPU check of the Triton LUT convolution (not a test): bit-exactness on CUDA, then time vs cuDNN fp32.

    python benchmarks/lut_triton_gpu.py [--batch 32 128] [--repeats 9] [--out gpu_lut.csv]
    TRITON_INTERPRET=1 python benchmarks/lut_triton_gpu.py --smoke     # CPU dry run of this script

One prepared run for a session that is lent a GPU (a few minutes on an H200): for every conv shape of
``axlib.methods.kernel_bench.SHAPES`` and batch size it first checks the CUDA Triton kernel bit for bit
against the numba CPU kernel on the same operands, then times, interleaved, cuDNN's float32
``conv2d`` and the Triton LUT kernel (``repeats`` runs each, CUDA-synchronised) and prints the median
of the paired ratios (Triton / cuDNN) with their min-max, naming the GPU. ``--smoke`` runs two tiny
shapes on the CPU through Triton's interpreter, only to check that the script itself works.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from axlib.kernels import lut_conv2d
from axlib.kernels.lut_triton import device_table, triton_lut_conv2d
from axlib.methods.kernel_bench import SHAPES

SMOKE_SHAPES = {"tiny.3x3": (3, 8, 6, 3, 1, 1), "tiny.stride2": (4, 16, 5, 3, 2, 1)}


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def run(shapes: dict, batches: list[int], repeats: int, dev: torch.device, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lut = rng.integers(0, 2**16, size=(256, 256))
    table = device_table(lut, dev)  # on the device once, as the dispatcher keeps it
    rows = []
    for name, (cin, cout, hw, k, s, p) in shapes.items():
        for b in batches:
            x = rng.integers(0, 256, size=(b, cin, hw, hw))
            w = rng.integers(0, 256, size=(cout, cin, k, k))
            xg, wg = torch.from_numpy(x).to(dev), torch.from_numpy(w).to(dev)
            got = triton_lut_conv2d(xg, wg, table, s, p).cpu().numpy()
            exact = bool(np.array_equal(got, lut_conv2d(x, w, lut, stride=s, padding=p)))
            xf, wf = xg.float(), wg.float()
            methods = {"cudnn_fp32": lambda: F.conv2d(xf, wf, stride=s, padding=p),
                       "triton_lut": lambda: triton_lut_conv2d(xg, wg, table, s, p)}
            for f in methods.values():
                f()
            for r in range(repeats):
                for method, f in methods.items():
                    _sync(dev)
                    t0 = time.perf_counter()
                    f()
                    _sync(dev)
                    ho = (hw + 2 * p - k) // s + 1
                    rows.append({"shape": name, "batch": b, "repeat": r, "method": method, "exact": exact,
                                 "seconds": time.perf_counter() - t0, "macs": b * cout * ho * ho * cin * k * k})
    return pd.DataFrame(rows)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    wide = df.pivot_table(index=["shape", "batch", "repeat"], columns="method", values="seconds").reset_index()
    out = []
    for (shape, batch), g in wide.groupby(["shape", "batch"], sort=False):
        sel = df[(df["shape"] == shape) & (df["batch"] == batch)]
        ratio = g["triton_lut"] / g["cudnn_fp32"]
        macs = sel["macs"].iloc[0]
        out.append({"shape": shape, "batch": batch, "exact": bool(sel["exact"].all()),
                    "cudnn_G_MAC_per_s": macs / g["cudnn_fp32"].median() / 1e9,
                    "triton_G_lookups_per_s": macs / g["triton_lut"].median() / 1e9,
                    "triton_over_cudnn": ratio.median(), "ratio_min": ratio.min(), "ratio_max": ratio.max()})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", nargs="+", type=int, default=[32, 128])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--out", default=None, help="write the per-repeat timings (CSV) here")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (needs TRITON_INTERPRET=1)")
    args = ap.parse_args()
    if args.smoke:
        dev, shapes, batches, repeats = torch.device("cpu"), SMOKE_SHAPES, [2], 2
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --smoke under TRITON_INTERPRET=1 to check the script")
        dev, shapes, batches, repeats = torch.device("cuda"), SHAPES, args.batch, args.repeats
        torch.backends.cudnn.benchmark = True
    print("device:", torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu (Triton interpreter)")
    df = run(shapes, batches, repeats, dev)
    if args.out:
        df.to_csv(args.out, index=False)
    summary = summarize(df)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(summary.round(3).to_string(index=False))
    if not summary["exact"].all():
        raise SystemExit("Triton kernel disagrees with the CPU kernel")


if __name__ == "__main__":
    main()
