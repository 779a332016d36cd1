"""ImageNet-width ResNets (64-128-256-512) adapted to 32x32 inputs as in kuangliu/pytorch-cifar.

The stem is a single 3x3 stride-1 convolution with no max-pool: the ImageNet 7x7/2 stem plus pool would shrink
a CIFAR image to 8x8 before the first stage. Module names match kuangliu's (``conv1``, ``layerK.i.shortcut``,
``linear``) because many published CIFAR checkpoints were trained with that code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import register_classifier

CIFAR_SHAPE = (3, 32, 32)
CIFAR = ("cifar10", "cifar100")


def _projection(in_planes: int, out_planes: int, stride: int) -> nn.Module:
    """Option-B shortcut (1x1 conv + BN) where the shape changes, identity elsewhere."""
    if stride == 1 and in_planes == out_planes:
        return nn.Sequential()
    return nn.Sequential(
        nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_planes),
    )


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _projection(in_planes, planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = _projection(in_planes, out_planes, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(
        self, block: type[BasicBlock | Bottleneck], num_blocks: tuple[int, int, int, int], num_classes: int
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_planes = 64
        stages: list[nn.Sequential] = []
        for planes, n, stride in zip((64, 128, 256, 512), num_blocks, (1, 2, 2, 2), strict=True):
            blocks: list[nn.Module] = []
            for i in range(n):
                blocks.append(block(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(512 * block.expansion, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        logits: torch.Tensor = self.linear(out.mean(dim=(2, 3)))
        return logits


@register_classifier(
    "resnet18",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="ResNet-18 with a 3x3 stride-1 stem for 32x32 inputs (kuangliu layout)",
)
def resnet18(num_classes: int) -> nn.Module:
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes)


@register_classifier(
    "resnet34",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="ResNet-34 with a 3x3 stride-1 stem for 32x32 inputs (kuangliu layout)",
)
def resnet34(num_classes: int) -> nn.Module:
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes)


@register_classifier(
    "resnet50",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="ResNet-50 (bottleneck) with a 3x3 stride-1 stem for 32x32 inputs",
)
def resnet50(num_classes: int) -> nn.Module:
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes)
