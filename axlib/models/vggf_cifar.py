"""VGG-f-style network for CIFAR-10: 5 conv + 3 FC layers, the layout of VGG-f / CNN-F
(Chatfield et al., BMVC 2014) that hanif2018 analyse, scaled to 32 x 32 inputs.

conv1 32@5x5 pad 2 -> BN -> ReLU -> maxpool 2 (16x16) -> conv2 64@5x5 pad 2 -> BN -> ReLU ->
maxpool 2 (8x8) -> conv3 128@3x3 -> conv4 128@3x3 -> conv5 128@3x3 (pad 1, each BN -> ReLU) ->
maxpool 2 (4x4) -> fc6 512 -> ReLU -> dropout -> fc7 512 -> ReLU -> dropout -> fc8 10.
VGG-f itself: 64@11x11/4, 256@5x5, 3 x 256@3x3, 2 x 4096 FC, local response normalisation instead
of batch norm, 224 x 224 ImageNet inputs. Input (N, 3, 32, 32).

``width`` scales every hidden channel and unit count (conv1-5, fc6, fc7; ``max(1, round(c · width))``),
the filter pruning of ponzina2022's ensembles; ``width=1`` is the network above.
"""

from __future__ import annotations

import torch
from torch import nn

from axlib.models.cifarquick import scaled


def _block(cin: int, cout: int, k: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, padding=k // 2), nn.BatchNorm2d(cout), nn.ReLU()]


class VGGfCifar(nn.Module):
    CONV = ("conv1", "conv2", "conv3", "conv4", "conv5")
    FC = ("fc6", "fc7", "fc8")

    def __init__(self, num_classes: int = 10, width: float = 1.0):
        super().__init__()
        c1, c2, c3, f = (scaled(c, width) for c in (32, 64, 128, 512))
        self.width = float(width)
        self.conv1, self.bn1, self.relu1 = _block(3, c1, 5)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2, self.bn2, self.relu2 = _block(c1, c2, 5)
        self.pool2 = nn.MaxPool2d(2)
        self.conv3, self.bn3, self.relu3 = _block(c2, c3, 3)
        self.conv4, self.bn4, self.relu4 = _block(c3, c3, 3)
        self.conv5, self.bn5, self.relu5 = _block(c3, c3, 3)
        self.pool5 = nn.MaxPool2d(2)
        self.fc6 = nn.Linear(c3 * 4 * 4, f)
        self.relu6, self.drop6 = nn.ReLU(), nn.Dropout(0.5)
        self.fc7 = nn.Linear(f, f)
        self.relu7, self.drop7 = nn.ReLU(), nn.Dropout(0.5)
        self.fc8 = nn.Linear(f, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.bn1(self.conv1(x))))
        x = self.pool2(self.relu2(self.bn2(self.conv2(x))))
        x = self.relu3(self.bn3(self.conv3(x)))
        x = self.relu4(self.bn4(self.conv4(x)))
        x = self.pool5(self.relu5(self.bn5(self.conv5(x))))
        x = self.drop6(self.relu6(self.fc6(torch.flatten(x, 1))))
        x = self.drop7(self.relu7(self.fc7(x)))
        return self.fc8(x)
