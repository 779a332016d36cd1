"""What a job's code gets from the harness besides its config: device, seeding, progress and checkpoints.

Plug-ins (recipes, defenses, attacks) take a :class:`JobContext` instead of reaching for globals, so the
executor decides where work runs and how progress is shown, and a distributed executor can supply its own.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from bench.api.checkpoints import Checkpoints


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...
    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> Any: ...
    def close(self) -> Any: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        return None

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        return None


@dataclass
class JobContext:
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    seed: int = 0
    show_progress: bool = False
    #: bf16 autocast for training; None: on CUDA only (on most CPUs bf16 is slower than fp32).
    mixed_precision: bool | None = None
    #: Channels-last tensors for training; None: on CUDA only, where convolutions run faster that way.
    channels_last: bool | None = None
    #: The job's checkpoint folder, so a killed run resumes its training (see :mod:`bench.api.resume`); None
    #: outside the executor.
    checkpoints: Checkpoints | None = None

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def use_bf16(self) -> bool:
        return self.cuda if self.mixed_precision is None else self.mixed_precision

    @property
    def use_channels_last(self) -> bool:
        return self.cuda if self.channels_last is None else self.channels_last

    def generator(self, salt: int = 0, device: torch.device | None = None) -> torch.Generator:
        """An RNG private to one consumer, so one component's draws never shift another's."""
        g = torch.Generator(device=device or torch.device("cpu"))
        g.manual_seed((self.seed * 1_000_003 + salt) % (2**63))
        return g

    def seed_everything(self) -> None:
        random.seed(self.seed)
        np.random.seed(self.seed % (2**32))
        torch.manual_seed(self.seed)

    def progress(self, total: int, desc: str, unit: str = "it") -> Progress:
        if not self.show_progress:
            return _Silent()
        from tqdm.auto import tqdm

        bar: Progress = tqdm(total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)
        return bar

    @contextmanager
    def autocast(self) -> Iterator[None]:
        """bf16 autocast when :attr:`use_bf16`, else a no-op. Training only: evaluation stays in fp32."""
        if self.use_bf16:
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                yield
        else:
            yield
