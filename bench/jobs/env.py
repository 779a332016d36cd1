"""What running jobs need from the outside world: data on disk, the artifact folder, device and progress."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bench.api import DATASETS, ImageData, JobContext
from bench.artifacts import ArtifactStore


@dataclass
class Env:
    data_root: Path
    download: bool
    artifacts: ArtifactStore
    ctx: JobContext = field(default_factory=JobContext)

    def dataset(self, name: str, split: str) -> ImageData:
        return DATASETS.get(name).load(self.data_root, split, self.download)
