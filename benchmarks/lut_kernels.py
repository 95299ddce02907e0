"""Time the exact approximate-multiplier convolution paths against float32 torch conv (not a test).

    python benchmarks/lut_kernels.py [--shapes resnet20.layer1 ...] [--batch 32 128] [--repeats 5]

Prints the per-shape medians of paired ratios (LUT kernel vs torch, NumPy gather vs LUT kernel, and
the low-rank path vs the LUT kernel for EvoApprox tables of rank 0-15). The same measurement,
saved as a raw run with its provenance, is the book page ``axlib/bench01`` (``make notebook
NB=axlib/bench01``); this script is for quick checks on another machine (e.g. ``DEVICE=cuda`` is
not used here: the LUT kernel is CPU-only and the low-rank path runs on the operands' device).
"""

from __future__ import annotations

import argparse

import pandas as pd

from axlib.methods import kernel_bench as kb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", nargs="+", default=list(kb.SHAPES), choices=list(kb.SHAPES))
    ap.add_argument("--batch", nargs="+", type=int, default=[32, 128])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tables", nargs="*", default=list(kb.LOWRANK_TABLES), help="low-rank tables (registry names)")
    ap.add_argument("--no-numpy", action="store_true", help="skip the slow NumPy gather baseline")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    df = kb.run(args.shapes, args.batch, args.repeats, args.seed, not args.no_numpy, args.tables)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(kb.summarize(df).round(3).to_string(index=False))
        if args.tables:
            print()
            print(kb.summarize_lowrank(df).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
