"""The denoisers of Salman et al.'s denoised smoothing, by the name a matrix gives them.

One architecture per module, each a :class:`~bench.api.FrontEnd` whose parameters are named as in
microsoft/denoised-smoothing, so their published checkpoints load without renaming. Every size is a
parameter, so a CPU matrix can train a small denoiser of the same design; :data:`SIZES` holds the paper's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

from bench.api import FrontEnd
from defenses.denoisers import dncnn, memnet
from defenses.denoisers.dncnn import DnCNN
from defenses.denoisers.memnet import MemNet

Arch = Literal["dncnn", "dncnn-wide", "memnet"]
ARCHS: tuple[str, ...] = get_args(Arch)

#: Each architecture's sizes in Salman et al.'s CIFAR-10 and ImageNet denoisers (their ``architectures.py``:
#: ``cifar_dncnn``, ``cifar_dncnn_wide``, ``memnet``): the keyword arguments of its constructor after the
#: image channels. A size left out of a matrix takes these values; a size another architecture has is refused.
SIZES: dict[str, dict[str, int]] = {
    "dncnn": {"depth": dncnn.DEPTH, "width": dncnn.WIDTH},
    "dncnn-wide": {"depth": dncnn.DEPTH, "width": dncnn.WIDE_WIDTH},
    "memnet": {
        "width": memnet.WIDTH,
        "memory_blocks": memnet.MEMORY_BLOCKS,
        "residual_blocks": memnet.RESIDUAL_BLOCKS,
    },
}

#: The constructor of each architecture; it takes the image channels, then the sizes in :data:`SIZES`.
BUILDERS: dict[str, Callable[..., FrontEnd]] = {"dncnn": DnCNN, "dncnn-wide": DnCNN, "memnet": MemNet}


def build_denoiser(arch: str, channels: int, **sizes: int) -> FrontEnd:
    """The denoiser ``arch`` for images of ``channels`` channels, the paper's sizes updated by ``sizes``."""
    unknown = sorted(set(sizes) - set(SIZES[arch]))
    if unknown:
        raise ValueError(f"{arch} has no size {', '.join(unknown)} (its sizes: {', '.join(SIZES[arch])})")
    return BUILDERS[arch](channels, **{**SIZES[arch], **sizes})


__all__ = ["ARCHS", "BUILDERS", "SIZES", "Arch", "DnCNN", "MemNet", "build_denoiser"]
