"""The "LeNet-like" six-layer network of akhlaghi2020 (thesis §2.5.1, Fig. 2.3), as in tiny-dnn's MNIST example.

Thesis §2.5.1: conv - pool - conv - pool - conv - fully connected, the pooling layers averaging; §2.7.2: the
network runs in tiny-dnn. Layer sizes, tanh and the 32x32 input in [-1, 1] follow tiny-dnn's
``examples/mnist/train.cpp`` (the LeNet-5 of LeCun et al. 1998):

    input 1x28x28 (x / 256) -> map to [-1, 1], pad 2 px with -1 -> 1x32x32
    conv1 6@5x5 -> tanh -> avgpool 2   (28x28 -> 14x14)
    conv2 16@5x5 -> tanh -> avgpool 2  (10x10 -> 5x5)
    conv3 120@5x5 -> tanh              (1x1)
    fc 10

Multiplications per image (MACs): conv1 117,600, conv2 240,000, conv3 48,000, fc 1,200; 406,800 in all.
Differences from tiny-dnn's example (not stated in the thesis either way): conv2 is fully connected to conv1's
six maps (tiny-dnn uses LeCun's 60-of-96 connection table: 150,000 MACs), the average pools have no trainable
scale and bias, there is no tanh after the pools or the fc layer, and training uses cross-entropy (tiny-dnn's
example: MSE on tanh outputs).
"""

from __future__ import annotations

import torch
from torch import nn

#: Padding (pixels per side) that turns a 28x28 MNIST image into the 32x32 input of tiny-dnn's example.
PAD = 2


class TinyDnnInput(nn.Module):
    """Input mapping of tiny-dnn's MNIST example: pixel p in [0, 255] given as p / 256 -> 2 p / 255 - 1 in [-1, 1],
    then padded by ``PAD`` pixels of background (-1) on every side: (N, 1, 28, 28) -> (N, 1, 32, 32).

    Black background (p = 0) maps to exactly -1.0 and white (p = 255) to 1.0 (up to float32 rounding).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * (512.0 / 255.0) - 1.0
        return nn.functional.pad(y, (PAD, PAD, PAD, PAD), value=-1.0)


class LeNetTinyDnn(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.input = TinyDnnInput()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.tanh1 = nn.Tanh()
        self.pool1 = nn.AvgPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.tanh2 = nn.Tanh()
        self.pool2 = nn.AvgPool2d(2, 2)
        self.conv3 = nn.Conv2d(16, 120, 5)
        self.tanh3 = nn.Tanh()
        self.fc = nn.Linear(120, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.input(x)
        x = self.pool1(self.tanh1(self.conv1(x)))
        x = self.pool2(self.tanh2(self.conv2(x)))
        x = self.tanh3(self.conv3(x))
        return self.fc(torch.flatten(x, 1))
