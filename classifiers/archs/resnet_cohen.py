"""Cohen et al.'s CIFAR ResNet-110, the base classifier of randomized smoothing as Salman et al. use it.

Cohen et al. (2019) took Wei Yang's bearpaw/pytorch-classification ResNet (locuslab/smoothing
``code/archs/cifar_resnet.py``, copied unchanged into microsoft/denoised-smoothing): the widths 16/32/64 and
6n+2 layers of He et al.'s CIFAR ResNets, but option-B shortcuts, a 1x1 convolution and BatchNorm where the
shape changes. That projection gives it parameters the zoo's option-A ``resnet110``
(:mod:`classifiers.archs.resnet_he`) lacks, so neither loads the other's checkpoints.

Their ``get_architecture`` returns ``Sequential(NormalizeLayer(CIFAR mean/std), net)``. Here the
:class:`~bench.api.Classifier` wrapper normalizes instead, and the weights loader maps their ``1.``-prefixed
keys onto ``net``; module names follow bearpaw's (``layerK.i.downsample.0``, ``fc``) so the rest of each key
matches as it is. Their NormalizeLayer keeps its statistics as plain tensor attributes, outside the state
dict, so the checkpoints cannot say which normalization they need: the network declares it
(``published_normalization``) and the loader refuses a matrix that states another.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import register_classifier

CIFAR_SHAPE = (3, 32, 32)
CIFAR = ("cifar10", "cifar100")
#: ``_CIFAR10_MEAN`` and ``_CIFAR10_STDDEV`` of their ``code/datasets.py``; the std is not the CIFAR-10
#: training set's (0.2470, 0.2435, 0.2616), which the harness's ``dataset`` normalization uses.
COHEN_CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
COHEN_CIFAR10_STD = (0.2023, 0.1994, 0.2010)


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


class CohenResNet(nn.Module):
    #: The (mean, std) their published CIFAR-10 checkpoints were trained behind (see the module docstring).
    published_normalization = (COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD)

    def __init__(self, depth: int, num_classes: int) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = _stage(16, 16, n, stride=1)
        self.layer2 = _stage(16, 32, n, stride=2)
        self.layer3 = _stage(32, 64, n, stride=2)
        self.fc = nn.Linear(64, num_classes)
        # Their initialization, which the recipe's from-scratch training starts from: He-normal convolutions
        # (fan-out), unit BatchNorm scales, PyTorch's default for the final layer.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        # Their AvgPool2d(8) over the final 8x8 map of a 32x32 input: the global mean.
        logits: torch.Tensor = self.fc(out.mean(dim=(2, 3)))
        return logits


def _stage(in_planes: int, planes: int, n: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        *(BasicBlock(in_planes if i == 0 else planes, planes, stride if i == 0 else 1) for i in range(n))
    )


@register_classifier(
    "resnet110-cohen",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="Cohen et al.'s CIFAR ResNet-110 (1.7M parameters, option-B shortcuts) as Salman et al. use",
)
def resnet110_cohen(num_classes: int) -> nn.Module:
    return CohenResNet(110, num_classes)
