"""JPEG compression as a front-end (Dziugaite et al. 2016; Guo et al. 2018), a classic broken baseline.

The image goes through a real JPEG encoder and decoder (libjpeg via Pillow; torchvision's codec is deprecated)
on uint8 pixels, so the forward pass is what a deployed defense would compute; the round trip is declared
non-differentiable, and BPDA attacks it with the identity's gradient (Athalye et al. 2018 broke it this way).
"""

from __future__ import annotations

import io
from functools import partial
from typing import Any

import numpy as np
import torch
from PIL import Image
from pydantic import Field

from bench.api import Defense, DefenseParams, FrontEnd, NonDifferentiable, register_defense


def jpeg_round_trip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode and decode every image of the batch; works for 1 and 3 channels.

    The uint8 round trip cuts the autograd graph. ``x * 0`` joins it back with the zero gradient the cut
    means, so an attack with BPDA off runs and shows what a naive attacker would report instead of crashing.
    """
    pixels = x.detach().mul(255).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = np.stack([_round_trip(image, quality) for image in pixels])
    out = torch.from_numpy(decoded).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype).div_(255)
    return out + x * 0


def _round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """One HWC uint8 image through the codec; greyscale is coded as one channel, as a JPEG file would be."""
    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    out = np.asarray(Image.open(buffer))
    return out.reshape(image.shape)


class JpegCompression(FrontEnd):
    def __init__(self, quality: int) -> None:
        super().__init__()
        self.compress = NonDifferentiable(partial(jpeg_round_trip, quality=quality))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.compress(x)
        return out


class JpegParams(DefenseParams):
    #: libjpeg quality (1-100); Guo et al. use 75.
    quality: int = Field(75, ge=1, le=100)


@register_defense("jpeg")
class Jpeg(Defense):
    """JPEG compression front-end (Guo et al. 2018); the codec is non-differentiable, BPDA applies."""

    Params = JpegParams

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return JpegCompression(params.quality)
