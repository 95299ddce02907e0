"""Per-layer greedy precision search (moons2016 §3.1.2): determinism, invariants, stage caching."""

import pandas as pd
import pytest
import torch
from torch import nn

from axlib import quant
from axlib.methods import precision
from axlib.validate import ParameterError


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.fc1 = nn.Linear(4 * 6 * 6, 16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        h = self.relu(self.conv(x)).flatten(1)
        return self.fc2(torch.relu(self.fc1(h)))


def _setup(seed=0):
    torch.manual_seed(seed)
    net = Tiny().eval()
    x = torch.randn(120, 1, 6, 6)
    with torch.no_grad():
        y = net(x).argmax(1)            # float accuracy 100 %
    y[:10] = (y[:10] + 1) % 5           # ... except 10 images
    batches = [(x[:64], y[:64]), (x[64:], y[64:])]
    ranges = quant.calibrate(net, batches)
    with torch.no_grad():
        float_correct = sum((net(xb).argmax(1) == yb).sum().item() for xb, yb in batches)
    return net, ranges, batches, float_correct


def _stages(net):
    return [(["conv"], lambda x: net.relu(net.conv(x)).flatten(1)), (["fc1"], lambda h: torch.relu(net.fc1(h))),
            (["fc2"], net.fc2)]


@pytest.mark.parametrize("target", [0.9, 0.97])
def test_greedy_is_deterministic_and_meets_target(target):
    net, ranges, batches, fc = _setup()
    a = precision.greedy_search(net, ranges, batches, fc, target, start_bits=10, min_bits=1)
    net2, ranges2, batches2, fc2 = _setup()
    b = precision.greedy_search(net2, ranges2, batches2, fc2, target, start_bits=10, min_bits=1)
    assert (a["input_bits"], a["weight_bits"], a["trace"]) == (b["input_bits"], b["weight_bits"], b["trace"])
    assert a["relative_accuracy"] >= target
    assert min(a["input_bits"].values()) < 10 and all(1 <= v <= 10 for v in a["weight_bits"].values())
    # the model is restored after the search
    with torch.no_grad():
        assert sum((net(xb).argmax(1) == yb).sum().item() for xb, yb in batches) == fc


def test_greedy_stops_at_first_failure_and_walks_layers_in_order():
    net, ranges, batches, fc = _setup()
    res = precision.greedy_search(net, ranges, batches, fc, 0.95, start_bits=8, min_bits=2)
    trace = pd.DataFrame(res["trace"])
    # order: layer by layer, input before weight, bits strictly decreasing within an operand
    seq = list(dict.fromkeys(zip(trace["layer_index"], trace["operand"])))
    assert seq == [(i, o) for i in range(3) for o in ("input", "weight")]
    for (layer, operand), g in trace.groupby(["layer", "operand"]):
        final = res[f"{operand}_bits"][layer]
        assert list(g["bits"]) == list(range(7, 7 - len(g), -1))
        assert g["passed"].iloc[:-1].all()
        if final > 2:   # stopped by a failure one bit below the kept width
            assert not g["passed"].iloc[-1] and g["bits"].iloc[-1] == final - 1
        else:
            assert g["passed"].all()


def test_stage_caching_gives_the_same_search():
    net, ranges, batches, fc = _setup()
    plain = precision.greedy_search(net, ranges, batches, fc, 0.93, start_bits=9)
    staged = precision.greedy_search(net, ranges, batches, fc, 0.93, start_bits=9, stages=_stages(net))
    assert (plain["input_bits"], plain["weight_bits"]) == (staged["input_bits"], staged["weight_bits"])
    assert [t["passed"] for t in plain["trace"]] == [t["passed"] for t in staged["trace"]]


def test_known_model_stages_compose_to_forward():
    from axlib.models.cifarquick import CifarQuick
    from axlib.models.lenet import LeNet5Caffe
    from axlib.models.resnet_cifar import CifarResNet

    torch.manual_seed(0)
    for net, shape in ((LeNet5Caffe(), (3, 1, 28, 28)), (CifarQuick(), (3, 3, 32, 32)), (CifarResNet(20), (3, 3, 32, 32))):
        net = quant.fold_batchnorm(net.eval())
        stages = precision.model_stages(net)
        assert [n for names, _ in stages for n in names] == quant.layer_names(net)
        x = torch.randn(shape)
        with torch.no_grad():
            assert torch.equal(precision._run_stages(stages, 0, x), net(x))


def test_validate_search_names_the_parameter():
    with pytest.raises(ParameterError, match="targets"):
        precision.validate_search(["lenet5"], 100, 100, 100, 0, targets=[1.5])
    with pytest.raises(ParameterError, match="n_search"):
        precision.validate_search(["lenet5"], 6000, 5000, 100, 0)
    with pytest.raises(ParameterError, match="models"):
        precision.validate_search(["alexnet"], 100, 100, 100, 0)


def _uniform_table():
    # 1000 search images, 994 float-correct; at 7 bits 2 images are lost, at 9-10 bits 1 image
    acc = {16: 1.0, 12: 1.0, 10: 993 / 994, 9: 993 / 994, 8: 1.0, 7: 992 / 994, 6: 0.9}
    return pd.DataFrame([{"model": "m", "bits": b, "search_relative_accuracy": v, "search_float_accuracy": 0.994}
                         for b, v in acc.items()])


def test_uniform_min_bits_strict_vs_one_image_slack():
    df = _uniform_table()
    assert precision.uniform_min_bits(df, 1.0) == {"m": 12}          # strict: one lost image at 10 bits decides
    slack = precision.image_slack(df, 1000, 1)
    assert slack["m"] == pytest.approx(1 / 994)
    assert precision.uniform_min_bits(df, 1.0, slack=slack) == {"m": 8}   # 2 lost images at 7 bits still fail
    assert precision.uniform_min_bits(df, 1.0, slack=precision.image_slack(df, 1000, 2)) == {"m": 7}
    assert precision.image_slack(df, 1000, 0)["m"] == 0.0
