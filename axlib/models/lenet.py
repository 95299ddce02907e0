"""LeNet-5 as in Caffe's ``examples/mnist/lenet_train_test.prototxt`` (the variant moons2016 used).

conv1 20@5x5 -> maxpool 2 -> conv2 50@5x5 -> maxpool 2 -> ip1 500 -> ReLU -> ip2 10.
Input: (N, 1, 28, 28) scaled by 1/256. 431,080 parameters; 2.29 M MACs per image.
"""

from __future__ import annotations

import torch
from torch import nn


class LeNet5Caffe(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.ip1 = nn.Linear(50 * 4 * 4, 500)
        self.relu1 = nn.ReLU()
        self.ip2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.conv1(x))
        x = self.pool2(self.conv2(x))
        x = self.relu1(self.ip1(torch.flatten(x, 1)))
        return self.ip2(x)
