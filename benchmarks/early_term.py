"""SnaPEA exact mode on ResNet-20 / CIFAR-10: numba early-termination conv vs dense torch conv (not a test).

    python benchmarks/early_term.py [--images 32] [--repeats 3]

For the first conv of every residual block (its input is post-ReLU, its output goes through BN
(folded) and ReLU with no residual add), the real inputs of ``--images`` CIFAR-10 test images are
captured; then, interleaved ``--repeats`` times, the dense float32 torch conv + ReLU and the numba
early-termination kernels (exact mode, float64 accumulation, op counts included; the default
32-window register blocks and the earlier windows-innermost loop, checked identical) are timed. Prints
MACs saved (Eq. 3.1 counts vs dense), the median paired time ratio, and checks the outputs agree.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from axlib import data, models, quant
from axlib.kernels.early_term import early_term_conv2d, reorder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    net = quant.fold_batchnorm(models.get_model("resnet20")[0])
    x, _ = data.tensors("cifar10", "test", "imagenet_meanstd", n=args.images, seed=0)
    convs = {n: m for n, m in net.named_modules() if n.endswith(".conv1") and n.startswith("layer")}
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda _m, a, n=n: inputs.__setitem__(n, a[0].detach().clone()))
             for n, m in convs.items()]
    with torch.no_grad():
        net(x)
    for h in hooks:
        h.remove()
    rows = []
    for name, conv in convs.items():
        xi = inputs[name]
        w, b = conv.weight.detach(), conv.bias.detach()
        xn, wn, bn = xi.double().numpy(), w.double().numpy(), b.double().numpy()
        r = reorder(wn, 0)
        dense = lambda: torch.relu(F.conv2d(xi, w, b, conv.stride, conv.padding))   # noqa: E731
        snapea = lambda: early_term_conv2d(xn, wn, bn, conv.stride, conv.padding, reordering=r)  # noqa: E731
        scalar = lambda: early_term_conv2d(xn, wn, bn, conv.stride, conv.padding, reordering=r,  # noqa: E731
                                           kernel="windows")                           # the previous default
        ref = dense()
        out, ops = snapea()
        out0, ops0 = scalar()
        assert np.array_equal(out == 0, ref.numpy() == 0), f"{name}: zero pattern differs"
        assert np.array_equal(out, out0) and np.array_equal(ops, ops0), f"{name}: the two kernels differ"
        ratios, ratios0 = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            dense()
            t1 = time.perf_counter()
            snapea()
            t2 = time.perf_counter()
            scalar()
            t3 = time.perf_counter()
            ratios.append((t2 - t1) / (t1 - t0))
            ratios0.append((t3 - t2) / (t1 - t0))
        k = wn[0].size
        rows.append({"layer": name, "shape": tuple(xi.shape), "macs_dense_M": ops.size * k / 1e6,
                     "macs_snapea_M": ops.sum() / 1e6, "macs_saved_pct": 100 * (1 - ops.sum() / (ops.size * k)),
                     "zero_outputs_pct": 100 * float((out == 0).mean()),
                     "dense_ms": 1e3 * (t1 - t0), "numba_ms": 1e3 * (t2 - t1), "numba_over_torch": float(np.median(ratios)),
                     "min_max": f"{min(ratios):.1f}-{max(ratios):.1f}",
                     "windows_loop_over_torch": float(np.median(ratios0)),
                     "windows_loop_over_blocks": float(np.median(np.array(ratios0) / np.array(ratios)))})
    df = pd.DataFrame(rows)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.round(2).to_string(index=False))
    tot = 100 * (1 - df["macs_snapea_M"].sum() / df["macs_dense_M"].sum())
    print(f"\nall layers: {tot:.1f} % of MACs saved in exact mode; median time ratio numba/torch "
          f"{df['numba_over_torch'].median():.1f}x (register blocks, default; range "
          f"{df['numba_over_torch'].min():.1f}-{df['numba_over_torch'].max():.1f}), "
          f"{df['windows_loop_over_torch'].median():.1f}x (windows-innermost loop)")


if __name__ == "__main__":
    main()
