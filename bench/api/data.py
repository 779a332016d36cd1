"""In-memory image datasets: the one shape every model, recipe and attack in Frontline consumes.

The small benchmark datasets fit in memory (CIFAR-10 is 180 MB as uint8), so a dataset is two tensors rather
than a DataLoader: batches are slices, GPU training can keep the whole set on the device, and the content
hash that identifies the data in job keys is computed once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class DatasetInfo:
    """What a model must agree with to be used on a dataset."""

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_size: int
    test_size: int
    description: str = ""
    class_names: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class ImageData:
    """Images as uint8 NCHW plus int64 labels; ``identity`` names exactly these examples."""

    images: torch.Tensor
    labels: torch.Tensor
    identity: str
    info: DatasetInfo

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 NCHW, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must be one per image")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def float_images(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """Images in [0, 1]: the only input scale models in Frontline accept."""
        return self.images.to(device).float().div_(255.0)

    def subset(self, indices: torch.Tensor, tag: str) -> ImageData:
        """A deterministic sub-selection whose identity records both the parent and the selection."""
        idx = indices.to(torch.long)
        h = hashlib.sha256(self.identity.encode())
        h.update(tag.encode())
        h.update(idx.numpy().tobytes())
        return ImageData(self.images[idx], self.labels[idx], h.hexdigest(), self.info)

    def batches(
        self, batch_size: int, device: torch.device | str = "cpu"
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Sequential float batches in [0,1], for evaluation."""
        for start in range(0, len(self), batch_size):
            x = self.images[start : start + batch_size].to(device).float().div_(255.0)
            yield x, self.labels[start : start + batch_size].to(device)


def content_hash(images: torch.Tensor, labels: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.contiguous().numpy().tobytes())
    h.update(labels.to(torch.int64).contiguous().numpy().tobytes())
    return h.hexdigest()
