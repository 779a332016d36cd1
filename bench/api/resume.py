"""Epoch loops that survive a killed run: a training loop checkpoints after every epoch and resumes from the
last one, bit for bit where the device is deterministic (CPU).

Everything an epoch's outcome depends on is saved: the named modules, optimizers and schedulers (their state
dicts), every random stream a loop may draw from (PyTorch's global CPU and CUDA generators, Python's and
NumPy's, the loop's private generators and the private streams of any front-end among the modules), the
loop's running values and the epochs done. A recipe or defense writes its loop as ::

    state = TrainingState(ctx, {"model": model, "optimizer": opt}, {"shuffle": gen})
    for epoch in state.epochs(params.epochs):
        ...

and without a checkpoint folder (``ctx.checkpoints`` is None, as in tests) the loop just runs.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from bench.api.checkpoints import Checkpoint
from bench.api.context import JobContext
from bench.api.frontend import FrontEnd

#: What a checkpoint restores through ``state_dict`` / ``load_state_dict``.
Stateful = nn.Module | torch.optim.Optimizer | torch.optim.lr_scheduler.LRScheduler


class TrainingState:
    """A training loop's resumable state; constructing it restores the job's last checkpoint, if any.

    Construct it after creating every part and immediately before the loop: restoring sets the global random
    streams, which anything drawn in between would shift.
    """

    def __init__(
        self,
        ctx: JobContext,
        parts: Mapping[str, Stateful | None],
        generators: Mapping[str, torch.Generator] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        self._ctx = ctx
        # Restored in the order given, so a scheduler listed after its optimizer sees the restored optimizer.
        self._parts = {name: part for name, part in parts.items() if part is not None}
        self._generators = dict(generators or {})
        #: Running values saved with every checkpoint (loss totals, counters): tensors are restored in place,
        #: so a loop may hold on to them, other values are replaced.
        self.values: dict[str, Any] = dict(values or {})
        #: Epochs already done by an earlier, killed run: the loop starts here.
        self.start = 0
        self._elapsed_before = 0.0
        found = ctx.checkpoints.load() if ctx.checkpoints is not None else None
        if found is not None:
            self._restore(found)
        self._since = time.perf_counter()

    def epochs(self, total: int) -> Iterator[int]:
        """The epochs still to run; each one's state is checkpointed once its loop body has finished."""
        for epoch in range(self.start, total):
            yield epoch
            if self._ctx.checkpoints is not None:
                self._ctx.checkpoints.save(self._capture(), epoch + 1)

    def elapsed_s(self) -> float:
        """Training time so far, the killed runs' completed epochs included."""
        return self._elapsed_before + time.perf_counter() - self._since

    def _frontends(self) -> dict[str, FrontEnd]:
        return {
            f"{name}.{sub}" if sub else name: m
            for name, part in self._parts.items()
            if isinstance(part, nn.Module)
            for sub, m in part.named_modules()
            if isinstance(m, FrontEnd)
        }

    def _capture(self) -> dict[str, Any]:
        _, keys, *position = cast(tuple[Any, ...], np.random.get_state())
        rng: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": position},
            "generators": {name: g.get_state() for name, g in self._generators.items()},
            "frontends": {name: fe.random_state() for name, fe in self._frontends().items()},
        }
        if self._ctx.cuda:
            rng["cuda"] = torch.cuda.get_rng_state(self._ctx.device)
        return {
            "parts": {name: part.state_dict() for name, part in self._parts.items()},
            "rng": rng,
            "values": self.values,
            "elapsed_s": self.elapsed_s(),
        }

    def _restore(self, found: Checkpoint) -> None:
        state = found.state
        for name, part in self._parts.items():
            part.load_state_dict(state["parts"][name])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        version, internal, gauss_next = rng["python"]
        random.setstate((version, tuple(internal), gauss_next))
        mt = rng["numpy"]
        np.random.set_state(("MT19937", mt["keys"].numpy().astype(np.uint32), *mt["position"]))
        for name, g in self._generators.items():
            g.set_state(rng["generators"][name])
        for name, fe in self._frontends().items():
            fe.load_random_state(rng["frontends"][name])
        if self._ctx.cuda:
            torch.cuda.set_rng_state(rng["cuda"], self._ctx.device)
        for name, value in state["values"].items():
            held = self.values.get(name)
            if isinstance(held, torch.Tensor):
                held.copy_(value)
            else:
                self.values[name] = value
        self._elapsed_before = float(state["elapsed_s"])
        self.start = found.epoch
