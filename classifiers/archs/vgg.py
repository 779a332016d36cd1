"""VGG-16/19 with batch norm, CIFAR variant: the convolutions reduce 32x32 to 1x1x512; one Linear is the head.

The ImageNet VGG's three 4096-wide fully connected layers would hold most of its parameters and overfit CIFAR;
the CIFAR literature (kuangliu/pytorch-cifar, which these module names follow) drops them.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.api import register_classifier

CIFAR_SHAPE = (3, 32, 32)
CIFAR = ("cifar10", "cifar100")

POOL = 0
#: Output channels of each 3x3 conv-BN-ReLU, with POOL marking a 2x2 max-pool.
CONFIGS: dict[str, tuple[int, ...]] = {
    "vgg16": (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
    "vgg19": (
        64,
        64,
        POOL,
        128,
        128,
        POOL,
        256,
        256,
        256,
        256,
        POOL,
        512,
        512,
        512,
        512,
        POOL,
        512,
        512,
        512,
        512,
        POOL,
    ),
}


class VGG(nn.Module):
    def __init__(self, config: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for width in config:
            if width == POOL:
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
                in_channels = width
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.classifier(self.features(x).flatten(1))
        return logits


@register_classifier(
    "vgg16",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="VGG-16 with batch norm and a single Linear(512, classes) head",
)
def vgg16(num_classes: int) -> nn.Module:
    return VGG(CONFIGS["vgg16"], num_classes)


@register_classifier(
    "vgg19",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="VGG-19 with batch norm and a single Linear(512, classes) head",
)
def vgg19(num_classes: int) -> nn.Module:
    return VGG(CONFIGS["vgg19"], num_classes)
