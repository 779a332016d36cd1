"""GoogLeNet (Szegedy et al., arXiv 1409.4842) for 32x32 inputs, as in kuangliu/pytorch-cifar.

The ImageNet stem (7x7/2 conv, pools, 1x1 and 3x3 convs) becomes one 3x3 convolution to 192 channels at full
resolution; the nine Inception modules keep the paper's widths, with batch norm after every convolution and
no auxiliary classifiers (BN makes them unnecessary for training). The "5x5" branch is two stacked 3x3
convolutions, as kuangliu has it. Two 3x3/2 max-pools take 32x32 to 8x8 for the global average. Module names
follow kuangliu's (``pre_layers``, ``a3`` ... ``b5``, ``linear``).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.api import register_classifier

CIFAR_SHAPE = (3, 32, 32)
CIFAR = ("cifar10", "cifar100")


def _conv_bn_relu(in_planes: int, out_planes: int, kernel_size: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_planes, out_planes, kernel_size, padding=kernel_size // 2),
        nn.BatchNorm2d(out_planes),
        nn.ReLU(),
    ]


class Inception(nn.Module):
    """Four parallel branches (1x1; 1x1-3x3; 1x1-3x3-3x3; 3x3 max-pool-1x1), concatenated along channels."""

    def __init__(
        self, in_planes: int, n1x1: int, n3x3red: int, n3x3: int, n5x5red: int, n5x5: int, pool_planes: int
    ) -> None:
        super().__init__()
        self.b1 = nn.Sequential(*_conv_bn_relu(in_planes, n1x1, 1))
        self.b2 = nn.Sequential(*_conv_bn_relu(in_planes, n3x3red, 1), *_conv_bn_relu(n3x3red, n3x3, 3))
        self.b3 = nn.Sequential(
            *_conv_bn_relu(in_planes, n5x5red, 1),
            *_conv_bn_relu(n5x5red, n5x5, 3),
            *_conv_bn_relu(n5x5, n5x5, 3),
        )
        self.b4 = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1), *_conv_bn_relu(in_planes, pool_planes, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1)


class GoogLeNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.pre_layers = nn.Sequential(*_conv_bn_relu(3, 192, 3))
        self.a3 = Inception(192, 64, 96, 128, 16, 32, 32)
        self.b3 = Inception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.a4 = Inception(480, 192, 96, 208, 16, 48, 64)
        self.b4 = Inception(512, 160, 112, 224, 24, 64, 64)
        self.c4 = Inception(512, 128, 128, 256, 24, 64, 64)
        self.d4 = Inception(512, 112, 144, 288, 32, 64, 64)
        self.e4 = Inception(528, 256, 160, 320, 32, 128, 128)
        self.a5 = Inception(832, 256, 160, 320, 32, 128, 128)
        self.b5 = Inception(832, 384, 192, 384, 48, 128, 128)
        self.linear = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.b3(self.a3(self.pre_layers(x)))
        out = self.maxpool(out)
        out = self.e4(self.d4(self.c4(self.b4(self.a4(out)))))
        out = self.maxpool(out)
        out = self.b5(self.a5(out))
        logits: torch.Tensor = self.linear(out.mean(dim=(2, 3)))
        return logits


@register_classifier(
    "googlenet",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="GoogLeNet with a 3x3 192-channel stem and batch norm for 32x32 (kuangliu)",
)
def googlenet(num_classes: int) -> nn.Module:
    return GoogLeNet(num_classes)
