"""CifarQuick as in Caffe's ``examples/cifar10/cifar10_quick_train_test.prototxt``.

conv1 32@5x5 pad 2 -> maxpool 3/2 -> ReLU -> conv2 32@5x5 pad 2 -> ReLU -> avgpool 3/2 ->
conv3 64@5x5 pad 2 -> ReLU -> avgpool 3/2 -> ip1 64 -> ip2 10. Caffe pools round up
(``ceil_mode=True``): 32 -> 16 -> 8 -> 4. Input (N, 3, 32, 32). 145,578 parameters.

``width`` scales every hidden channel and unit count (``max(1, round(c · width))``: conv1-3 and ip1),
the filter pruning of ponzina2022's ensembles (:mod:`axlib.models.ensemble`); ``width=1`` is the
original network, with the same parameter names.
"""

from __future__ import annotations

import torch
from torch import nn

from axlib.validate import ParameterError


def scaled(channels: int, width: float) -> int:
    """``max(1, round(channels · width))``; ``width`` must be a number in (0, 4]."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not 0 < width <= 4:
        raise ParameterError(f"parameter width={width!r} must be a number in (0, 4]")
    return max(1, round(channels * width))


class CifarQuick(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0):
        super().__init__()
        c1, c2, c3, h = (scaled(c, width) for c in (32, 32, 64, 64))
        self.width = float(width)
        self.conv1 = nn.Conv2d(3, c1, 5, padding=2)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.AvgPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(c2, c3, 5, padding=2)
        self.relu3 = nn.ReLU()
        self.pool3 = nn.AvgPool2d(3, 2, ceil_mode=True)
        self.ip1 = nn.Linear(c3 * 4 * 4, h)
        self.ip2 = nn.Linear(h, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.pool1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = self.pool3(self.relu3(self.conv3(x)))
        return self.ip2(self.ip1(torch.flatten(x, 1)))
