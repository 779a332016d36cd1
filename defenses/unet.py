"""The U-Net front-end shared by the U-Net defenses (Robustifier, RTFE, and any later one).

Ronneberger et al.'s encoder-decoder: each level is two 3x3 conv + BatchNorm + ReLU, a 2x2 max-pool goes down
a level, and each level's features are concatenated into the decoder on the way back up. Widths follow a
scale factor S: level i has 8·S·2^i channels, so S = 8 is the classic 64-128-256-512-1024 U-Net.

Norouzzadeh et al.'s counts (4.3M / 17.3M / 69.0M parameters for S = 4 / 8 / 16 on CIFAR-10) are those of the
widely used "bilinear" U-Net variant, which halves the bottom level's width so that bilinear upsampling
(parameter-free) needs no extra convolution: with four levels it has 17.3M parameters at width 64, and the
count grows as S². Cann et al. instead upsample with nearest-neighbour resize-convolutions (Odena et al.:
upsample, then a 3x3 convolution, which avoids transposed convolutions' checkerboard artifacts) and end in a
1x1 convolution followed by a sigmoid, so outputs are always valid pixels.

Every level halves the image, so the side must be divisible by 2^depth; a size the pooling would round
(28 -> 14 -> 7 -> 3) is refused at build time rather than padded over.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bench.api import ConfigError, Defense, FrontEnd
from defenses.guides import check_guides_fit
from defenses.reconstruction import WarmUpParams

Upsampling = Literal["bilinear", "nearest"]


def depth_problem(input_shape: tuple[int, int, int], depth: int) -> str | None:
    """Why a U-Net of ``depth`` levels cannot take images of ``input_shape``, or None when it can."""
    for side in sorted(set(input_shape[1:])):
        if side % 2**depth:
            sizes = [side // 2**i for i in range(depth + 1)]
            odd = next(s for s in sizes if s % 2)
            fits = max(d for d in range(depth) if side % 2**d == 0)
            return (
                f"a U-Net of depth {depth} cannot take images of shape {input_shape}: its 2x2 max-pools "
                f"would shrink the side {' -> '.join(map(str, sizes))}, dropping a row and a column of the "
                f"odd size {odd}, so the decoder's levels would not line up with the encoder's; use a depth "
                f"of at most {fits} for this input size"
            )
    return None


class UNetDefense(Defense):
    """A defense that trains the shared U-Net through its guides. Before any work it refuses an image size the
    U-Net's pooling would round and guides that cannot take the images; its paper's epoch count is its
    ``Params``' default."""

    trainable = True
    needs_data = True

    def epochs_at_full_scale(self, params: Any) -> int | None:
        return int(self.Params.model_fields["epochs"].default)

    def check(self, params: Any, input_shape: tuple[int, int, int], guides: Sequence[nn.Module]) -> None:
        problem = depth_problem(input_shape, params.depth)
        if problem is not None:
            raise ConfigError(problem)
        check_guides_fit(input_shape, guides)


class DoubleConv(nn.Sequential):
    """One U-Net level: two 3x3 convolutions, each followed by BatchNorm and ReLU."""

    def __init__(self, c_in: int, c_out: int, c_mid: int | None = None) -> None:
        mid = c_out if c_mid is None else c_mid
        super().__init__(
            nn.Conv2d(c_in, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    """Up one level: upsample 2x, concatenate the encoder's features of that level, then :class:`DoubleConv`.

    Bilinear upsampling keeps the channel count (the level below was built half as wide); a resize-convolution
    (nearest upsampling, then a 3x3 convolution) halves it, as a transposed convolution would.
    """

    def __init__(self, c_below: int, c_skip: int, c_out: int, mode: Upsampling) -> None:
        super().__init__()
        self.mode = mode
        self.resize_conv: nn.Module | None = None
        c_up = c_below
        if mode == "nearest":
            c_up = c_below // 2
            self.resize_conv = nn.Conv2d(c_below, c_up, 3, padding=1)
        self.conv = DoubleConv(c_skip + c_up, c_out, (c_skip + c_up) // 2 if mode == "bilinear" else None)

    def forward(self, below: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.mode == "bilinear":
            up = F.interpolate(below, scale_factor=2, mode="bilinear", align_corners=True)
        else:
            up = F.interpolate(below, scale_factor=2, mode="nearest")
            assert self.resize_conv is not None
            up = self.resize_conv(up)
        out: torch.Tensor = self.conv(torch.cat([skip, up], dim=1))
        return out


class UNet(FrontEnd):
    """A U-Net whose output is the last level's 1x1 convolution to image channels, unbounded (see
    :class:`BoundedUNet` for the sigmoid variant).

    Unbounded outputs feed the classifier as they are: Norouzzadeh et al.'s robustifier maps images to images
    through a reconstruction loss, with no squashing named, so the output range is declared open.
    """

    output_range: ClassVar[tuple[float, float]] = (-math.inf, math.inf)

    def __init__(
        self, input_shape: tuple[int, int, int], scale: int, depth: int = 4, up: Upsampling = "bilinear"
    ) -> None:
        super().__init__()
        problem = depth_problem(input_shape, depth)
        if problem is not None:
            raise ConfigError(problem)
        channels = input_shape[0]
        widths = [8 * scale * 2**i for i in range(depth + 1)]
        # Bilinear upsampling cannot change the channel count, so the bottom level is built as wide as the one
        # above it and every decoder level outputs the width of the level above (the "bilinear" U-Net).
        factor = 2 if up == "bilinear" else 1
        self.inc = DoubleConv(channels, widths[0])
        self.downs = nn.ModuleList(
            DoubleConv(widths[i - 1], widths[i] // (factor if i == depth else 1)) for i in range(1, depth + 1)
        )
        ups = []
        below = widths[depth] // factor
        for i in reversed(range(depth)):
            out = widths[i] if up == "nearest" or i == 0 else widths[i] // factor
            ups.append(Up(below, widths[i], out, up))
            below = out
        self.ups = nn.ModuleList(ups)
        self.outc = nn.Conv2d(widths[0], channels, 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(F.max_pool2d(skips[-1], 2)))
        out = skips.pop()
        for up in self.ups:
            out = up(out, skips.pop())
        result: torch.Tensor = self.outc(out)
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class BoundedUNet(UNet):
    """The U-Net with a sigmoid after its final 1x1 convolution, so every output is a valid pixel."""

    output_range: ClassVar[tuple[float, float]] = (0.0, 1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.features(x))


def build_unet(
    input_shape: tuple[int, int, int], scale: int, depth: int, up: Upsampling, sigmoid: bool
) -> UNet:
    cls = BoundedUNet if sigmoid else UNet
    return cls(input_shape, scale, depth, up)


class AdversarialUNetParams(WarmUpParams):
    """What a U-Net front-end trained on PGD examples with SGD is configured by (RTFE, JAT): the network's
    size, the training attack and Madry et al.'s optimizer. Each defense states its epochs and schedule."""

    #: U-Net width scale S: level i has 8·S·2^i channels.
    scale: int = Field(8, ge=1)
    #: U-Net levels below the top one; the image side must be divisible by 2^depth.
    depth: int = Field(4, ge=1)
    #: The training attack (pixel units); Madry et al.'s and Cann et al.'s is Linf.
    norm: Literal["linf", "l2"] = "linf"
    eps: float = Field(8 / 255, gt=0)
    attack_steps: int = Field(7, ge=1)
    attack_step: float = Field(2 / 255, gt=0)
    epochs: int = Field(ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(2e-4, ge=0)
    #: Fractions of the run after which the learning rate is multiplied by ``lr_decay``.
    lr_milestones: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=list)
    lr_decay: float = Field(0.1, gt=0, le=1)
