"""MobileNetV2 (Sandler et al., arXiv 1801.04381) for 32x32 inputs, as in kuangliu/pytorch-cifar.

The ImageNet network downsamples 32x; on CIFAR that leaves 1x1 maps after the fourth stage. Here the stem and
the 24-channel stage run at stride 1 (total downsampling 8x, ending at 4x4), and ReLU replaces ReLU6, since
the clipping only mattered for the paper's low-precision deployment. Module names follow kuangliu's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import register_classifier

CIFAR_SHAPE = (3, 32, 32)
CIFAR = ("cifar10", "cifar100")

#: (expansion, output channels, blocks, stride of the first block) per stage.
STAGES = (
    (1, 16, 1, 1),
    (6, 24, 2, 1),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1, linear); residual only at stride 1."""

    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int) -> None:
        super().__init__()
        hidden = expansion * in_planes
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride=stride, padding=1, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        # As in kuangliu's code, a width change at stride 1 keeps a residual through a 1x1 projection.
        self.shortcut: nn.Module = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        projected: torch.Tensor = self.bn3(self.conv3(out))
        return projected + self.shortcut(x) if self.stride == 1 else projected


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        blocks: list[nn.Module] = []
        in_planes = 32
        for expansion, out_planes, n, stride in STAGES:
            for i in range(n):
                blocks.append(InvertedResidual(in_planes, out_planes, expansion, stride if i == 0 else 1))
                in_planes = out_planes
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(in_planes, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(self.layers(out))))
        logits: torch.Tensor = self.linear(out.mean(dim=(2, 3)))
        return logits


@register_classifier(
    "mobilenetv2",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="MobileNetV2 with a stride-1 stem and first stages for 32x32 inputs",
)
def mobilenetv2(num_classes: int) -> nn.Module:
    return MobileNetV2(num_classes)
