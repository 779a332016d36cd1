"""Madry et al.'s CIFAR-10 ResNet (MadryLab/cifar10_challenge, ``model.py``): Vaishnavi et al.'s model D.

A wide ResNet of width 10 with five residual units per group, the network the robustness literature calls
WRN-34-10 (3 groups x 5 units x 2 convolutions, the first convolution and the logit layer). It is not the
zoo's ``wrn28_10`` (Zagoruyko & Komodakis' code, four units per group), and it differs from that code, and
from the TRADES WRN-34-10, in more than depth:

- **Shortcuts carry no parameters.** Where a unit changes width, the shortcut is a 2x2 average pool of
  stride 2 when the unit downsamples (identity when it does not), with the new channels zero-padded evenly
  on both sides; the zoo's Wide ResNet projects with a 1x1 convolution. This model has 45.9M
  parameters, against 46.2M for a WRN-34-10 with projections (36.5M for ``wrn28_10``).
- **The shortcut of a widening unit in groups 2 and 3 is taken before the pre-activation** (only the first
  group shares the unit's BN-ReLU with its shortcut, ``activate_before_residual``); the zoo's takes it after.
- **Leaky ReLU (slope 0.1)** everywhere, not ReLU.
- **Per-image standardization inside the model** (``tf.image.per_image_standardization``: subtract the
  image's mean over all pixels and channels, divide by its standard deviation floored at 1/sqrt(pixels x
  channels)), so train it with ``normalization: none``. Their inputs were 0-255 floats; standardization
  removes the scale except for the floor, which only matters for near-constant images.
- **BatchNorm epsilon 1e-3** (``tf.contrib.layers.batch_norm``'s default; PyTorch's is 1e-5), momentum 0.1
  (their decay 0.9).

Initialization follows theirs: He-normal convolutions (std sqrt(2 / (k·k·out))), the logit layer's weights
uniform in ±sqrt(3 / in) (``uniform_unit_scaling``), zero biases.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import register_classifier

CIFAR_SHAPE = (3, 32, 32)
CIFAR = ("cifar10", "cifar100")
SLOPE = 0.1
BN_EPS = 1e-3
#: Channels of the first convolution and of the three groups.
FILTERS = (16, 160, 320, 640)
UNITS_PER_GROUP = 5


def per_image_standardization(x: torch.Tensor) -> torch.Tensor:
    """TensorFlow's ``per_image_standardization``: zero mean and unit variance per image, with the standard
    deviation floored at 1/sqrt(N) for N values per image, so a constant image does not divide by zero."""
    flat = x.flatten(1)
    mean = flat.mean(1)
    floor = flat.shape[1] ** -0.5
    std = flat.std(1, unbiased=False).clamp_min(floor)
    return (x - mean.view(-1, 1, 1, 1)) / std.view(-1, 1, 1, 1)


class MadryUnit(nn.Module):
    """One residual unit: BN-LReLU-conv, BN-LReLU-conv, plus a parameter-free shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, activate_before_residual: bool) -> None:
        super().__init__()
        self.activate_before_residual = activate_before_residual
        self.stride = stride
        self.pad = (c_out - c_in) // 2
        self.init_bn = nn.BatchNorm2d(c_in, eps=BN_EPS)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.leaky_relu(self.init_bn(x), SLOPE)
        shortcut = pre if self.activate_before_residual else x
        out = self.conv2(F.leaky_relu(self.bn2(self.conv1(pre)), SLOPE))
        if self.pad:
            if self.stride > 1:
                shortcut = F.avg_pool2d(shortcut, self.stride, self.stride)
            shortcut = F.pad(shortcut, (0, 0, 0, 0, self.pad, self.pad))
        result: torch.Tensor = out + shortcut
        return result


class MadryWideResNet(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.init_conv = nn.Conv2d(3, FILTERS[0], 3, padding=1, bias=False)
        units: list[nn.Module] = []
        for group, stride in enumerate((1, 2, 2)):
            c_in, c_out = FILTERS[group], FILTERS[group + 1]
            units.append(MadryUnit(c_in, c_out, stride, activate_before_residual=group == 0))
            units += [MadryUnit(c_out, c_out, 1, False) for _ in range(UNITS_PER_GROUP - 1)]
        self.units = nn.Sequential(*units)
        self.final_bn = nn.BatchNorm2d(FILTERS[-1], eps=BN_EPS)
        self.logit = nn.Linear(FILTERS[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        bound = (3 / FILTERS[-1]) ** 0.5
        nn.init.uniform_(self.logit.weight, -bound, bound)
        nn.init.zeros_(self.logit.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.units(self.init_conv(per_image_standardization(x)))
        out = F.leaky_relu(self.final_bn(out), SLOPE)
        logits: torch.Tensor = self.logit(out.mean(dim=(2, 3)))
        return logits


@register_classifier(
    "madry-wrn34-10",
    input_shape=CIFAR_SHAPE,
    datasets=CIFAR,
    recipe="cifar",
    description="Madry et al.'s cifar10_challenge ResNet (WRN-34-10, parameter-free shortcuts, 45.9M)",
)
def madry_wrn34_10(num_classes: int) -> nn.Module:
    """Train with ``normalization: none``: the model standardizes each image itself."""
    return MadryWideResNet(num_classes)
