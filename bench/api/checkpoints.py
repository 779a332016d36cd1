"""A long job's training checkpoints, so a killed run resumes the job where it stopped, not from scratch.

The executor gives each job its own folder through :attr:`bench.api.JobContext.checkpoints` and deletes it
once the job's artifacts are recorded. One file holds the latest state: it is written to a temporary file and
renamed over the old one, so a kill mid-write leaves the previous checkpoint whole. States are saved with
``torch.save`` and read back with ``weights_only=True``: tensors, state dicts and plain Python values only,
never pickled objects, so a checkpoint cannot run code when it is loaded.
"""

from __future__ import annotations

import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.errors import BenchError


@dataclass(frozen=True)
class Checkpoint:
    #: Epochs completed when the state was saved: training resumes with the next one.
    epoch: int
    state: dict[str, Any]


class Checkpoints:
    """The checkpoint folder of one job."""

    FILE = "last.pt"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        #: The epoch training resumed after, once :meth:`load` found a checkpoint (the job's metrics say so).
        self.resumed_from: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / self.FILE

    def load(self) -> Checkpoint | None:
        if not self.path.is_file():
            return None
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
            found = Checkpoint(int(saved["epoch"]), dict(saved["state"]))
        except pickle.UnpicklingError as exc:
            raise self._unreadable("damaged, or holding objects other than tensors and plain values") from exc
        except Exception as exc:
            raise self._unreadable(f"{type(exc).__name__}: {exc}") from exc
        self.resumed_from = found.epoch
        return found

    def save(self, state: dict[str, Any], epoch: int) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{self.FILE}.{os.getpid()}.tmp"
        try:
            with tmp.open("wb") as f:
                torch.save({"epoch": epoch, "state": state}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def _unreadable(self, reason: str) -> BenchError:
        return BenchError(
            f"training checkpoint {self.path} cannot be read ({reason}); "
            "delete it to train this job from the start"
        )

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
