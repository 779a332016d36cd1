"""DenseNet-121 (Huang et al., arXiv 1608.06993) for 32x32 inputs, as in kuangliu/pytorch-cifar.

Growth rate 32 and the ImageNet block sizes (6, 12, 24, 16), but the 7x7/2 stem and its max-pool become one
3x3 stride-1 convolution to 2 x growth channels, so the three transitions take 32x32 down to 4x4. Module names
follow kuangliu's (``denseK``, ``transK``, ``bn``, ``linear``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import register_classifier

CIFAR_SHAPE = (3, 32, 32)
CIFAR = ("cifar10", "cifar100")


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (to 4 x growth), BN-ReLU-conv3x3 (to growth); the output is appended to the input."""

    def __init__(self, in_planes: int, growth: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], dim=1)


class Transition(nn.Module):
    """Compresses the channels (BN-ReLU-conv1x1) and halves the resolution between dense blocks."""

    def __init__(self, in_planes: int, out_planes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    def __init__(
        self, block_sizes: tuple[int, int, int, int], growth: int, reduction: float, num_classes: int
    ) -> None:
        super().__init__()
        planes = 2 * growth
        self.conv1 = nn.Conv2d(3, planes, 3, padding=1, bias=False)
        dense: list[nn.Sequential] = []
        trans: list[Transition] = []
        for i, n in enumerate(block_sizes):
            dense.append(nn.Sequential(*(DenseLayer(planes + j * growth, growth) for j in range(n))))
            planes += n * growth
            if i < len(block_sizes) - 1:
                out_planes = int(planes * reduction)
                trans.append(Transition(planes, out_planes))
                planes = out_planes
        self.dense1, self.dense2, self.dense3, self.dense4 = dense
        self.trans1, self.trans2, self.trans3 = trans
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.trans1(self.dense1(out))
        out = self.trans2(self.dense2(out))
        out = self.trans3(self.dense3(out))
        out = F.relu(self.bn(self.dense4(out)))
        logits: torch.Tensor = self.linear(out.mean(dim=(2, 3)))
        return logits


@register_classifier(
    "densenet121",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="DenseNet-121 (growth 32) with a 3x3 stride-1 stem for 32x32 inputs",
)
def densenet121(num_classes: int) -> nn.Module:
    return DenseNet((6, 12, 24, 16), growth=32, reduction=0.5, num_classes=num_classes)
