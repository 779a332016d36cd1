"""What one job of each kind asks a distributed engine for: CPUs, a GPU share and host memory.

A single-process run ignores these. A Ray run reserves them per task, so the scheduler packs as many jobs on
a node as fit and no more. They are reservations, not limits: Ray does not stop a job that uses more. The
GPU share applies only when the run's device is a GPU, so the same declarations serve a CPU-only cluster.

Every kind asks for one CPU, which is also the number of PyTorch threads a worker gives the job (the jobs
run tiny to mid-sized models, which gain little from more threads and lose to contention on a shared node),
and a whole GPU, since every kind runs its networks forward and backward on the device. Host memory is a
rough bound on what a job holds besides its GPU tensors (a decoded training split of CIFAR-10 is 150 MB as
uint8 and 600 MB as float; a front-end's training keeps its guides, its U-Net and their optimizer states).
``bench run --job-resources KIND:NAME=VALUE,...`` overrides them per kind, e.g. ``cell:num_gpus=0.25`` to pack
four cells on one GPU.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, get_args

from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError

from bench.errors import BenchError
from bench.jobs.configs import JobKind

GIB = 1 << 30


class Resources(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    num_cpus: float = Field(default=1.0, gt=0)
    #: Used only when the run's device is a GPU; a fraction packs several jobs on one GPU.
    num_gpus: float = Field(default=1.0, ge=0)
    #: Host memory in bytes; "2GiB" and the like are accepted.
    memory: ByteSize = Field(default=ByteSize(GIB), ge=0)

    @property
    def threads(self) -> int:
        """PyTorch threads for a job holding this reservation."""
        return max(1, int(self.num_cpus))

    def ray_options(self, gpu: bool) -> dict[str, Any]:
        """Keyword arguments of Ray's ``.options()`` for one task on a GPU run or a CPU run."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus if gpu else 0}
        if self.memory:
            options["memory"] = int(self.memory)
        return options


RESOURCES: Mapping[JobKind, Resources] = {
    "train-classifier": Resources(memory=ByteSize(2 * GIB)),
    "train-defense": Resources(memory=ByteSize(4 * GIB)),
    "attack": Resources(),
    "cell": Resources(),
    "corruption": Resources(),
    "certify": Resources(),
}


def with_overrides(
    overrides: Iterable[str], base: Mapping[JobKind, Resources] = RESOURCES
) -> dict[JobKind, Resources]:
    """The declarations with each ``KIND:NAME=VALUE[,NAME=VALUE...]`` applied, later ones winning."""
    out = dict(base)
    kinds: tuple[JobKind, ...] = get_args(JobKind)
    for text in overrides:
        name_of_kind, sep, assignments = text.partition(":")
        kind = next((k for k in kinds if k == name_of_kind.strip()), None)
        if not sep or kind is None:
            raise BenchError(
                f"--job-resources {text!r}: expected KIND:NAME=VALUE[,NAME=VALUE...] with KIND one of "
                f"{', '.join(kinds)}"
            )
        fields: dict[str, str] = {}
        for item in assignments.split(","):
            name, eq, value = item.partition("=")
            if not eq or not name.strip():
                raise BenchError(f"--job-resources {text!r}: {item!r} is not NAME=VALUE")
            fields[name.strip()] = value.strip()
        try:
            out[kind] = Resources.model_validate({**out[kind].model_dump(), **fields})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise BenchError(
                f"--job-resources {text!r}: {problems} (names: {', '.join(Resources.model_fields)})"
            ) from exc
    return out
