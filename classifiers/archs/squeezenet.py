"""SqueezeNet 1.1 (Iandola et al., arXiv 1602.07360; the 1.1 layout from the authors' repository) for 32x32.

Adaptations, each because the ImageNet form does not fit CIFAR training here:

* stem: 3x3 stride-1 convolution (ImageNet: 3x3 stride 2 on 224x224), so the three 3x3/2 max-pools take
  32x32 to 4x4 rather than to 1x1;
* batch norm after every convolution: the CIFAR recipe starts SGD at lr 0.1, which the BN-free original
  does not survive;
* no ReLU on the final 1x1 class convolution: ReLU'd logits are non-negative and saturate at zero, which
  hides the margin that attacks (and the cross-entropy) need.

The eight Fire modules, their squeeze/expand widths, the pool positions and the dropout-0.5 / 1x1-conv /
global-average head are SqueezeNet 1.1's.
"""

from __future__ import annotations

import torch
from torch import nn

from bench.api import register_classifier

CIFAR_SHAPE = (3, 32, 32)
CIFAR = ("cifar10", "cifar100")


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class Fire(nn.Module):
    """Squeeze to few channels with 1x1, then expand with parallel 1x1 and 3x3 convolutions, concatenated."""

    def __init__(self, in_channels: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = _conv_bn_relu(in_channels, squeeze, 1)
        self.expand1x1 = _conv_bn_relu(squeeze, expand, 1)
        self.expand3x3 = _conv_bn_relu(squeeze, expand, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.squeeze(x)
        return torch.cat([self.expand1x1(s), self.expand3x3(s)], dim=1)


class SqueezeNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv_bn_relu(3, 64, 3),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(64, 16, 64),
            Fire(128, 16, 64),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(128, 32, 128),
            Fire(256, 32, 128),
            nn.MaxPool2d(3, stride=2, ceil_mode=True),
            Fire(256, 48, 192),
            Fire(384, 48, 192),
            Fire(384, 64, 256),
            Fire(512, 64, 256),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Conv2d(512, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.classifier(self.features(x))
        return out.mean(dim=(2, 3))


@register_classifier(
    "squeezenet",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="SqueezeNet 1.1 for 32x32: stride-1 stem, batch norm, no ReLU on the logits",
)
def squeezenet(num_classes: int) -> nn.Module:
    return SqueezeNet(num_classes)
