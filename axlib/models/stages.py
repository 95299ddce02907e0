"""Split a network into consecutive stages so a sweep can cache the input of the stage it changes.

``model_stages(net)`` returns ``[(layer names, fn)]`` with ``net(x) == fn_k(...fn_1(x))``: when only
layers of stage ``s`` and later are changed (quantized, noisy, pruned), the input of stage ``s`` can
be computed once and reused for every candidate. Known architectures (LeNet-5, CifarQuick, the
VGG-f-style CIFAR net, CIFAR ResNets) are split per layer / residual block, with or without their
batch norms folded; any other network is one stage (always correct, only slower). Layer names are
those of the Conv2d/Linear modules each stage runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LAYER_TYPES = (nn.Conv2d, nn.Linear)


def model_stages(net: nn.Module) -> list[tuple[list[str], object]]:
    from axlib.models.cifarquick import CifarQuick
    from axlib.models.lenet import LeNet5Caffe
    from axlib.models.resnet_cifar import CifarResNet
    from axlib.models.vggf_cifar import VGGfCifar
    from axlib.nn.approx import ApproxLayer

    named = {id(m): n for n, m in net.named_modules()}

    def layers_in(*mods):
        """Names of the Conv2d/Linear layers in ``mods``; an :class:`ApproxLayer` counts as the layer it
        wraps (its own name, not ``<name>.layer``)."""
        found = [s for m in mods for s in m.modules() if isinstance(s, (*LAYER_TYPES, ApproxLayer))]
        wrapped = {id(s.layer) for s in found if isinstance(s, ApproxLayer)}
        return [named[id(s)] for s in found if id(s) not in wrapped]

    m = net
    if isinstance(m, CifarResNet):
        blocks = [b for stage in (m.layer1, m.layer2, m.layer3) for b in stage]
        return ([(layers_in(m.conv1), lambda x: m.relu(m.bn1(m.conv1(x))))]
                + [(layers_in(b), b) for b in blocks]
                + [(layers_in(m.linear), lambda x: m.linear(F.adaptive_avg_pool2d(x, 1).flatten(1)))])
    if isinstance(m, LeNet5Caffe):
        return [(["conv1"], lambda x: m.pool1(m.conv1(x))), (["conv2"], lambda x: m.pool2(m.conv2(x))),
                (["ip1"], lambda x: m.relu1(m.ip1(torch.flatten(x, 1)))), (["ip2"], m.ip2)]
    if isinstance(m, CifarQuick):
        return [(["conv1"], lambda x: m.relu1(m.pool1(m.conv1(x)))), (["conv2"], lambda x: m.pool2(m.relu2(m.conv2(x)))),
                (["conv3"], lambda x: m.pool3(m.relu3(m.conv3(x)))), (["ip1"], lambda x: m.ip1(torch.flatten(x, 1))),
                (["ip2"], m.ip2)]
    if isinstance(m, VGGfCifar):
        return [(["conv1"], lambda x: m.pool1(m.relu1(m.bn1(m.conv1(x))))),
                (["conv2"], lambda x: m.pool2(m.relu2(m.bn2(m.conv2(x))))),
                (["conv3"], lambda x: m.relu3(m.bn3(m.conv3(x)))),
                (["conv4"], lambda x: m.relu4(m.bn4(m.conv4(x)))),
                (["conv5"], lambda x: m.pool5(m.relu5(m.bn5(m.conv5(x))))),
                (["fc6"], lambda x: m.drop6(m.relu6(m.fc6(torch.flatten(x, 1))))),
                (["fc7"], lambda x: m.drop7(m.relu7(m.fc7(x)))),
                (["fc8"], m.fc8)]
    return [(layers_in(m), m)]


def run_stages(stages, start: int, x: torch.Tensor, stop: int | None = None) -> torch.Tensor:
    """Run ``stages[start:stop]`` on ``x``."""
    for _, fn in stages[start:stop]:
        x = fn(x)
    return x


def stage_of(stages, layer: str) -> int:
    """Index of the stage that runs ``layer``."""
    for i, (names, _) in enumerate(stages):
        if layer in names:
            return i
    raise KeyError(f"no stage runs layer {layer!r}")
