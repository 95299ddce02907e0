"""ALL-CNN-C (Springenberg et al. 2015, "Striving for simplicity"), the CIFAR-10 network of
delaparra2021 (Table 4: 281M MACs), with a ``width`` multiplier.

Nine 3x3/1x1 convolutions, no pooling layers (strided convolutions instead) and global average
pooling: conv1-3 ``96w`` (conv3 stride 2), conv4-6 ``192w`` (conv6 stride 2), conv7 ``192w`` 3x3,
conv8 ``192w`` 1x1, conv9 10 1x1 -> global average pool. Every 3x3 convolution has padding 1
(32 -> 32 -> 32 -> 16 -> 16 -> 16 -> 8 -> 8); at ``width=1`` this gives 281.17M MACs per image, the
paper's 281M. Springenberg's conv7 is unpadded (6x6 output, 269M MACs); padding 1 is our choice to
match Table 4's count.

Deviations, stated on the pages that use it: ``batch_norm=True`` (default) puts a batch norm after
every convolution but the last, so the short training of the zoo converges (the original uses
dropout and no batch norm); :func:`axlib.quant.fold_batchnorm` folds it before approximation. No
dropout. Channel counts are ``max(1, round(c · width))``.
"""

from __future__ import annotations

import torch
from torch import nn

#: (output channels at width 1, kernel, stride) of conv1..conv8; conv9 maps to the classes (1x1).
LAYOUT = ((96, 3, 1), (96, 3, 1), (96, 3, 2), (192, 3, 1), (192, 3, 1), (192, 3, 2), (192, 3, 1), (192, 1, 1))


class AllCnnC(nn.Module):
    def __init__(self, width: float = 1.0, batch_norm: bool = True, num_classes: int = 10):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 4:
            raise ValueError(f"width={width!r} must be a number in (0, 4]")
        self.width, self.batch_norm = float(width), bool(batch_norm)
        c_in = 3
        for i, (c, k, s) in enumerate(LAYOUT, start=1):
            c = max(1, round(c * width))
            self.add_module(f"conv{i}", nn.Conv2d(c_in, c, k, stride=s, padding=k // 2, bias=not batch_norm))
            if batch_norm:
                self.add_module(f"bn{i}", nn.BatchNorm2d(c))
            self.add_module(f"relu{i}", nn.ReLU())
            c_in = c
        self.conv9 = nn.Conv2d(c_in, num_classes, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, len(LAYOUT) + 1):
            x = getattr(self, f"conv{i}")(x)
            if self.batch_norm:
                x = getattr(self, f"bn{i}")(x)
            x = getattr(self, f"relu{i}")(x)
        return self.conv9(x).mean(dim=(2, 3))
