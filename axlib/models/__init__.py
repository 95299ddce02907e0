"""Networks used by the reproductions, with their dataset, input normalisation and origin.

``get_model(name)`` returns an eval-mode CPU model: trained by the zoo (cached by config hash),
loaded from pretrained weights, or built from torchvision for the ImageNet path.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from axlib import provenance, validate
from axlib.models.allcnn import AllCnnC
from axlib.models.cifarquick import CifarQuick
from axlib.models.lenet import LeNet5Caffe
from axlib.models.lenet_tinydnn import LeNetTinyDnn
from axlib.models.mobilenetv2_cifar import MobileNetV2Cifar
from axlib.models.resnet_cifar import CifarResNet
from axlib.models.vggf_cifar import VGGfCifar
from axlib.models.zoo import Recipe, accuracy, train_or_load, with_overrides


@dataclass(frozen=True)
class ModelSpec:
    name: str
    dataset: str
    normalization: str
    build: Callable[[], nn.Module]
    origin: str  # "zoo" (trained here), "pretrained" (weights file), "torchvision"
    recipe: Recipe | None = None
    description: str = ""


def _alexnet() -> nn.Module:
    from torchvision.models import alexnet

    return alexnet()


def _resnet18() -> nn.Module:
    from torchvision.models import resnet18

    return resnet18()


#: Width of the ALL-CNN-C trained by default (``allcnn_c_quarter``): 24/48 channels, 18.1M MACs
#: instead of 281M, so that behavioural retraining fits on 2 CPU cores (delaparra2021 pages).
ALLCNN_REDUCED_WIDTH = 0.25
_CIFAR_RESNET_RECIPE = Recipe(epochs=12, batch_size=128, lr=0.1, momentum=0.9, weight_decay=5e-4, augment=True,
                              warmup_epochs=1)


MODELS: dict[str, ModelSpec] = {
    "lenet5": ModelSpec(
        "lenet5", "mnist", "scale", LeNet5Caffe, "zoo",
        Recipe(epochs=8, batch_size=64, lr=0.02, momentum=0.9, weight_decay=5e-4),
        "LeNet-5 (Caffe variant), MNIST"),
    "lenet_tinydnn": ModelSpec(
        "lenet_tinydnn", "mnist", "scale", LeNetTinyDnn, "zoo",
        Recipe(epochs=4, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4),
        "LeNet-like network of akhlaghi2020 Fig. 2.3 (tiny-dnn MNIST example: tanh, average pooling, "
        "32x32 input in [-1, 1]), MNIST"),
    "cifarquick": ModelSpec(
        "cifarquick", "cifar10", "cifar_meanstd", CifarQuick, "zoo",
        Recipe(epochs=20, batch_size=100, lr=0.01, momentum=0.9, weight_decay=5e-4, augment=True,
               warmup_epochs=1),
        "CifarQuick (Caffe cifar10_quick), CIFAR-10"),
    "vggf_cifar": ModelSpec(
        "vggf_cifar", "cifar10", "cifar_meanstd", VGGfCifar, "zoo",
        Recipe(epochs=15, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4, augment=True,
               warmup_epochs=1),
        "VGG-f-style 5 conv + 3 FC (hanif2018's VGG-f scaled to 32x32), CIFAR-10"),
    **{f"resnet{d}": ModelSpec(f"resnet{d}", "cifar10", "cifar_meanstd", (lambda d=d: CifarResNet(d)), "zoo",
                               _CIFAR_RESNET_RECIPE,
                               f"ResNet-{d} (option A, delaparra2021 Table 4), CIFAR-10, trained here")
       for d in (8, 14)},
    "allcnn_c": ModelSpec(
        "allcnn_c", "cifar10", "cifar_meanstd", AllCnnC, "zoo",
        Recipe(epochs=15, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4, augment=True, warmup_epochs=1),
        "ALL-CNN-C (Springenberg et al. 2015; batch norm, no dropout), full width (281M MACs), CIFAR-10"),
    "allcnn_c_quarter": ModelSpec(
        "allcnn_c_quarter", "cifar10", "cifar_meanstd", (lambda: AllCnnC(ALLCNN_REDUCED_WIDTH)), "zoo",
        Recipe(epochs=12, batch_size=128, lr=0.05, momentum=0.9, weight_decay=5e-4, augment=True, warmup_epochs=1),
        "ALL-CNN-C at a quarter of the channels (24/48, 18.1M MACs; batch norm, no dropout), CIFAR-10"),
    **{f"resnet{d}": ModelSpec(f"resnet{d}", "cifar10", "imagenet_meanstd",
                               (lambda d=d: CifarResNet(d)), "pretrained",
                               description=f"ResNet-{d} (option A), CIFAR-10, akamaster weights")
       for d in (20, 32, 44, 56)},
    "mobilenetv2": ModelSpec(
        "mobilenetv2", "cifar10", "cifar_meanstd", MobileNetV2Cifar, "zoo",
        Recipe(epochs=200, batch_size=128, lr=0.05, momentum=0.9, weight_decay=4e-5, augment=True, warmup_epochs=1),
        "MobileNetV2, CIFAR layout (kuangliu; 2,296,922 parameters, akhlaghi2020 Table 5.1); 200 epochs as the "
        "thesis trains it (a GPU job: nothing here trains it by default)"),
    "alexnet": ModelSpec("alexnet", "imagenet", "imagenet_meanstd", _alexnet, "torchvision",
                         description="AlexNet, ImageNet, torchvision IMAGENET1K_V1 weights"),
    "resnet18": ModelSpec("resnet18", "imagenet", "imagenet_meanstd", _resnet18, "torchvision",
                          description="ResNet-18, ImageNet, torchvision IMAGENET1K_V1 weights (delaparra2021 Table 4)"),
}


def spec(name: str) -> ModelSpec:
    validate.choice("model", name, list(MODELS))
    return MODELS[name]


def get_model(name: str, seed: int = 0, progress: bool = True, **recipe_overrides) -> tuple[nn.Module, dict]:
    """``(model, info)`` for a registered network, eval mode, on CPU.

    For zoo models ``recipe_overrides`` (epochs, n_train, ...) change the training recipe (and
    therefore the cache key); ``info`` carries the recipe and the measured test accuracy.
    """
    s = spec(name)
    if s.origin == "zoo":
        recipe = with_overrides(s.recipe, **recipe_overrides)
        model, info = train_or_load(name, s.build, s.dataset, s.normalization, recipe, seed, progress)
        provenance.record_model(name, model, origin="zoo", seed=seed, test_accuracy=info.get("test_accuracy"),
                                recipe=info.get("recipe"))
        return model, info
    model = s.build()
    if s.origin == "pretrained":
        from axlib.models.pretrained import load_cifar_resnet_state

        state, stored_acc = load_cifar_resnet_state(int(name.removeprefix("resnet")))
        info = {"name": name, "origin": "pretrained", "stored_top1_pct": stored_acc}
    else:
        from axlib.models.pretrained import load_torchvision_state

        state = load_torchvision_state(name)
        info = {"name": name, "origin": "torchvision"}
    model.load_state_dict(state)
    provenance.record_model(name, model, origin=info["origin"], stored_top1_pct=info.get("stored_top1_pct"))
    return model.eval(), info


__all__ = ["MODELS", "ModelSpec", "Recipe", "accuracy", "get_model", "spec"]
