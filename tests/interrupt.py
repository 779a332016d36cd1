"""Stopping a training loop part-way, as SIGKILL would, and counting what a resumed run redoes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.api import JobContext, Progress


class Killed(Exception):
    """Test-only: stands for SIGKILL, which a loop cannot tell from any other point where it stops."""


class Steps:
    """A progress bar that counts the training steps run and the ones skipped as done by an earlier run (one
    update of many), and stops the run after ``kill_after`` steps."""

    def __init__(self, kill_after: int | None) -> None:
        self.kill_after = kill_after
        self.run = self.skipped = 0

    def update(self, n: int = 1) -> None:
        if n != 1:
            self.skipped += n
            return
        if self.run == self.kill_after:
            raise Killed
        self.run += 1

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class CountingContext(JobContext):
    bar: Steps = field(default_factory=lambda: Steps(None))

    def progress(self, total: int, desc: str, unit: str = "it") -> Progress:
        return self.bar
