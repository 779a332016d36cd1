"""The classifier contract: the wrapper every pipeline sees ([0,1] images in, logits out, normalization
inside), and the architecture registry (``@register_classifier``, timm-style).

An architecture declares what it can be used on (input shape, class count, the datasets it was designed for)
so the matrix validator can reject a mismatched pairing before any work starts, and which training recipe
fits it, if any: an architecture that is only ever loaded from weights needs none. Third-party packages add
architectures through the ``frontline.classifiers`` entry-point group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import nn

from bench.api.data import ImageData
from bench.api.registry import Registry


class Classifier(nn.Module):
    """Normalizes then runs ``net``; keeping normalization inside means attacks and defenses never see it."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net((x - self.mean) / self.std)
        return out


def build_classifier(arch: str, num_classes: int, mean: Sequence[float], std: Sequence[float]) -> Classifier:
    spec = CLASSIFIERS.get(arch)
    return Classifier(spec.factory(num_classes), mean, std)


@torch.no_grad()
def count_correct(model: nn.Module, data: ImageData, device: torch.device, batch_size: int = 1000) -> int:
    """Top-1 hits in eval mode and fp32, not the training autocast: bf16 logits flip close calls and tie
    top-2 classes, and a card's accuracy must be the model's, whatever device measured it."""
    model.to(device).eval()
    correct = 0
    for x, y in data.batches(batch_size, device):
        correct += int((model(x).argmax(1) == y).sum())
    return correct


M = TypeVar("M", bound=nn.Module)


def freeze(model: M) -> M:
    """Guides and targets are frozen: eval mode (BatchNorm uses running stats) and no parameter grads."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@dataclass(frozen=True)
class ArchSpec:
    name: str
    factory: Callable[[int], nn.Module]
    input_shape: tuple[int, int, int]
    datasets: tuple[str, ...]
    #: The registered training recipe; None for an architecture only ever loaded from weights.
    recipe: str | None
    description: str
    num_classes: int | None = None  # None: the class count comes from the dataset

    def compatibility_error(self, dataset: str, input_shape: tuple[int, ...], num_classes: int) -> str | None:
        """Why this architecture cannot classify ``dataset``, or None when it can."""
        if tuple(input_shape) != self.input_shape:
            return (
                f"classifier architecture {self.name!r} takes inputs of shape {self.input_shape} but dataset "
                f"{dataset!r} has {tuple(input_shape)}"
            )
        if self.num_classes is not None and self.num_classes != num_classes:
            return (
                f"classifier architecture {self.name!r} has {self.num_classes} classes but "
                f"dataset {dataset!r} "
                f"has {num_classes}"
            )
        return None


CLASSIFIERS: Registry[ArchSpec] = Registry("classifier")


def register_classifier(
    name: str,
    *,
    input_shape: tuple[int, int, int],
    datasets: tuple[str, ...],
    recipe: str | None = None,
    num_classes: int | None = None,
    description: str | None = None,
) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    """Register a factory ``f(num_classes) -> nn.Module`` taking [0,1]-scaled but *unnormalized* inputs.

    Normalization is added by :func:`build_classifier`, so the same architecture serves
    weights trained with different statistics. Without a ``recipe`` the architecture can only be loaded from
    weights; a matrix that asks to train it is refused before any work starts.
    """

    def decorator(factory: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        doc = description if description is not None else (factory.__doc__ or "")
        spec = ArchSpec(
            name,
            factory,
            input_shape,
            datasets,
            recipe,
            doc.strip().splitlines()[0] if doc else "",
            num_classes,
        )
        CLASSIFIERS.add(name, spec, spec.description)
        return factory

    return decorator
