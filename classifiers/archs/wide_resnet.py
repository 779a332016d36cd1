"""Wide ResNet-28-10 (Zagoruyko & Komodakis, arXiv 1605.07146): the standard adversarial-training backbone.

Pre-activation blocks (BN-ReLU-conv). Where a group changes width or stride, the first block's pre-activation
feeds both the residual path and the 1x1 projection, as in the authors' code. Module names follow the TRADES /
RobustBench ``WideResNet`` (``blockK.layer.i.convShortcut``, final ``bn1`` and ``fc``) so robust checkpoints
published with that code load into it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import register_classifier

CIFAR_SHAPE = (3, 32, 32)
CIFAR = ("cifar10", "cifar100")


class WideBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.convShortcut: nn.Conv2d | None = None  # camelCase: the checkpoints' key name
        if stride != 1 or in_planes != out_planes:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = F.relu(self.bn2(self.conv1(pre)))
        out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        shortcut = x if self.convShortcut is None else self.convShortcut(pre)
        result: torch.Tensor = out + shortcut
        return result


class WideGroup(nn.Module):
    """A group of blocks at one width; the ``layer`` level exists only to keep the checkpoints' key names."""

    def __init__(self, n: int, in_planes: int, out_planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *(
                WideBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, dropout)
                for i in range(n)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.layer(x)
        return out


class WideResNet(nn.Module):
    def __init__(self, depth: int, widen: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"Wide ResNet depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = (16, 16 * widen, 32 * widen, 64 * widen)
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = WideGroup(n, widths[0], widths[1], 1, dropout)
        self.block2 = WideGroup(n, widths[1], widths[2], 2, dropout)
        self.block3 = WideGroup(n, widths[2], widths[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = F.relu(self.bn1(out))
        logits: torch.Tensor = self.fc(out.mean(dim=(2, 3)))
        return logits


@register_classifier(
    "wrn28_10",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="Wide ResNet-28-10 (36.5M parameters), the adversarial-training workhorse",
)
def wrn28_10(num_classes: int, dropout: float = 0.0) -> nn.Module:
    """The paper's best CIFAR results used dropout 0.3; 0.0 is the default of the robustness literature."""
    return WideResNet(28, 10, num_classes, dropout)
