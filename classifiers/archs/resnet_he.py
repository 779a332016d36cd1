"""He et al.'s CIFAR ResNets (arXiv 1512.03385, sec. 4.2): 6n+2 layers, widths 16/32/64, option-A shortcuts.

These are the small ResNets the CIFAR robustness literature means by "ResNet-20/56", not the ImageNet-width
ResNets of :mod:`classifiers.archs.resnet`. Option A (subsample by taking every other pixel, zero-pad the new
channels) adds no parameters, which is what makes ResNet-20 0.27M and ResNet-56 0.85M parameters.

Module names follow akamaster/pytorch_resnet_cifar10 (``conv1``, ``bn1``, ``layerK.i.conv1`` ... ``linear``),
so its published checkpoints load once the ``module.`` prefix DataParallel added is stripped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import register_classifier

CIFAR_SHAPE = (3, 32, 32)
CIFAR = ("cifar10", "cifar100")


class PadShortcut(nn.Module):
    """Option-A shortcut: a stride-2 subsample with the extra channels zero-padded evenly on both sides."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.pad_each_side = extra_channels // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad_each_side, self.pad_each_side))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = PadShortcut(planes - in_planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = _stage(16, 16, blocks_per_stage, stride=1)
        self.layer2 = _stage(16, 32, blocks_per_stage, stride=2)
        self.layer3 = _stage(32, 64, blocks_per_stage, stride=2)
        self.linear = nn.Linear(64, num_classes)
        # Kaiming-normal conv and linear weights, as akamaster's resnet.py (behind its published accuracies).
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        logits: torch.Tensor = self.linear(out.mean(dim=(2, 3)))
        return logits


def _stage(in_planes: int, planes: int, n: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        *(BasicBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(n))
    )


def _net(depth: int, num_classes: int) -> CifarResNet:
    return CifarResNet((depth - 2) // 6, num_classes)


@register_classifier(
    "resnet20",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="He et al.'s CIFAR ResNet-20 (0.27M parameters, option-A shortcuts)",
)
def resnet20(num_classes: int) -> nn.Module:
    return _net(20, num_classes)


@register_classifier(
    "resnet32",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="He et al.'s CIFAR ResNet-32 (0.46M parameters, option-A shortcuts)",
)
def resnet32(num_classes: int) -> nn.Module:
    return _net(32, num_classes)


@register_classifier(
    "resnet44",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="He et al.'s CIFAR ResNet-44 (0.66M parameters, option-A shortcuts)",
)
def resnet44(num_classes: int) -> nn.Module:
    return _net(44, num_classes)


@register_classifier(
    "resnet56",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="He et al.'s CIFAR ResNet-56 (0.85M parameters, option-A shortcuts)",
)
def resnet56(num_classes: int) -> nn.Module:
    return _net(56, num_classes)


@register_classifier(
    "resnet110",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="He et al.'s CIFAR ResNet-110 (1.7M parameters, option-A shortcuts)",
)
def resnet110(num_classes: int) -> nn.Module:
    return _net(110, num_classes)
