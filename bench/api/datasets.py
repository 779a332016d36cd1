"""Dataset registry: names in matrix files resolve here, whatever the files on disk look like."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bench.api.data import DatasetInfo, ImageData
from bench.api.registry import Registry


class DatasetSource(Protocol):
    """Knows where a dataset may live on disk and how to read it into memory."""

    @property
    def info(self) -> DatasetInfo: ...

    @property
    def description(self) -> str: ...

    def candidates(self, root: Path, split: str) -> list[Path]:
        """Folders searched for ``split``, in order: named in the error when none holds the data."""
        ...

    def load(self, root: Path, split: str, download: bool) -> ImageData: ...


DATASETS: Registry[DatasetSource] = Registry("dataset")


def register_dataset(source: DatasetSource) -> DatasetSource:
    return DATASETS.add(source.info.name, source, source.description)


def dataset_info(name: str) -> DatasetInfo:
    return DATASETS.get(name).info
