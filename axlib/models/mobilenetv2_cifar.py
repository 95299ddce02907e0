"""MobileNetV2 for CIFAR-10 (Sandler et al. 2018) in the widely used CIFAR layout (kuangliu/pytorch-cifar).

Stem conv 32@3x3 stride 1 -> 17 inverted-residual blocks (expansion, out channels, blocks, stride):
(1,16,1,1) (6,24,2,1) (6,32,3,2) (6,64,4,2) (6,96,3,1) (6,160,3,2) (6,320,1,1) -> pointwise conv
1280 -> 4x4 average pool -> linear. Each block: pointwise expansion ``conv1`` (1x1), depthwise
``conv2`` (3x3), pointwise projection ``conv3`` (1x1), each followed by batch norm; a stride-1 block
adds its input (through a 1x1 conv + BN when the channel counts differ). The CIFAR variant keeps
stride 1 in the stem and in the second stage so a 32x32 input ends at 4x4.

2,296,922 parameters with 10 classes: the count of akhlaghi2020 Table 5.1 ("MobileNetV2
(Original)"); tested. The thesis replaces the first pointwise conv (``conv1``) of each block by
CSG/BSG slices (§5.7.7).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

#: (expansion, out_planes, num_blocks, stride) per stage
CFG = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """expand (1x1) -> depthwise (3x3, ``stride``) -> project (1x1), batch norm after each, ReLU after the first two."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int):
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out + self.shortcut(x) if self.stride == 1 else out


class MobileNetV2Cifar(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        blocks, in_planes = [], 32
        for expansion, out_planes, n, stride in CFG:
            for s in [stride] + [1] * (n - 1):
                blocks.append(InvertedResidual(in_planes, out_planes, expansion, s))
                in_planes = out_planes
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(320, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.relu(self.bn2(self.conv2(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)
