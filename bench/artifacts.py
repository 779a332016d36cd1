"""Job artifacts on disk: content-addressed folders, atomic writes, sha256-verified reads."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from bench.api import sha256_file
from bench.errors import BenchError


@dataclass(frozen=True)
class StoredArtifact:
    name: str
    path: str  # relative to the artifact root
    sha256: str
    bytes: int


class ArtifactStore:
    """Content-addressed folders ``<root>/<key[:2]>/<key>/``; files are written atomically (temp + rename)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def folder(self, key: str) -> Path:
        return self.root / key[:2] / key

    def checkpoints(self, key: str) -> Path:
        """A job's training checkpoints, beside the artifact folders rather than in one, so nothing that reads
        or checks a job's artifacts ever meets them."""
        return self.root / "checkpoints" / key

    def write_tensors(
        self, key: str, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> StoredArtifact:
        path = self.folder(key) / f"{name}.safetensors"
        return self._write(
            path,
            name,
            lambda tmp: save_file(
                {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                str(tmp),
                metadata={"meta": json.dumps(meta, sort_keys=True)},
            ),
        )

    def write_json(self, key: str, name: str, obj: Any) -> StoredArtifact:
        path = self.folder(key) / f"{name}.json"
        return self._write(path, name, lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True)))

    def _write(self, path: Path, name: str, writer: Callable[[Path], Any]) -> StoredArtifact:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        writer(tmp)
        os.replace(tmp, path)
        return StoredArtifact(name, str(path.relative_to(self.root)), sha256_file(path), path.stat().st_size)

    def resolve(self, artifact: StoredArtifact) -> Path:
        """Paths are stored relative to the artifact root, so a store and its folder can move together."""
        return self.root / artifact.path

    def intact(self, artifact: StoredArtifact) -> bool:
        path = self.resolve(artifact)
        return (
            path.is_file() and path.stat().st_size == artifact.bytes and sha256_file(path) == artifact.sha256
        )

    def read_json(self, artifact: StoredArtifact) -> Any:
        self._check(artifact)
        return json.loads(self.resolve(artifact).read_text())

    def read_tensors(self, artifact: StoredArtifact) -> dict[str, torch.Tensor]:
        self._check(artifact)
        return load_file(str(self.resolve(artifact)))

    def _check(self, artifact: StoredArtifact) -> None:
        if not self.intact(artifact):
            raise BenchError(
                f"artifact {self.resolve(artifact)} is missing or does not match its recorded sha256; "
                "rerun with --force to rebuild it"
            )
