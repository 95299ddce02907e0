"""Per-layer census of a network: MACs and tensor sizes of every Conv2d/Linear for one image."""

from __future__ import annotations

import functools

import pandas as pd
import torch
from torch import nn


@torch.no_grad()
def layer_census(net: nn.Module, x: torch.Tensor) -> pd.DataFrame:
    """One row per Conv2d/Linear call of ``net`` on ``x`` (one image, shape (1, C, H, W)), in forward
    order: ``layer``, ``kind``, ``macs`` (every multiply-accumulate, zero padding included; a conv
    has Ho·Wo·O·(C/groups)·kh·kw), ``in_elems`` and ``out_elems`` (elements of its input and output)
    and ``weights`` (elements of its weight tensor)."""
    rows = []

    def hook(name, m, a, o):
        if isinstance(m, nn.Conv2d):
            macs = o.shape[2] * o.shape[3] * m.out_channels * m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        else:
            macs = m.in_features * m.out_features
        rows.append({"layer": name, "kind": type(m).__name__, "macs": int(macs), "in_elems": int(a[0][0].numel()),
                     "out_elems": int(o[0].numel()), "weights": int(m.weight.numel())})

    hooks = [m.register_forward_hook(functools.partial(hook, n)) for n, m in net.named_modules()
             if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        net(x[:1])
    finally:
        for h in hooks:
            h.remove()
    return pd.DataFrame(rows)
