"""Jobs and their content keys.

A job's key is the SHA-256 of its kind, its fully resolved config, its upstream keys and the identity of the
data it reads. Anything that can change the job's output is in the key; nothing else is (labels and
reduced-scale notes are carried beside it), so the same computation is recognised across matrix files and
runs, and a changed input can never reuse a stale result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.jobs.configs import JobConfig, JobKind
from bench.uses import EvaluationUse, JobUse

#: Bump when a job's code changes its output for the same config, so old artifacts are not reused.
KEY_VERSION = 1

C = TypeVar("C", bound=JobConfig)


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def content_key(kind: str, config: dict[str, Any], deps: tuple[str, ...], data: str) -> str:
    payload = {"v": KEY_VERSION, "kind": kind, "config": config, "deps": list(deps), "data": data}
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


@dataclass(frozen=True)
class JobSpec:
    label: str
    settings: JobConfig
    deps: tuple[str, ...] = ()
    data: str = ""
    #: What was reduced relative to the full-scale protocol, this job and everything upstream of it.
    scale_notes: tuple[str, ...] = field(default=(), compare=False)
    #: Where to find inputs the config identifies by content (a weights file: its sha256 is in the config,
    #: its path only here), so moving the data folder does not redo everything downstream.
    locations: dict[str, str] = field(default_factory=dict, compare=False)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", content_key(self.kind, self.config, self.deps, self.data))

    @property
    def kind(self) -> JobKind:
        return self.settings.job_kind

    @property
    def config(self) -> dict[str, Any]:
        """The settings as the key hashes them and the store keeps them."""
        return self.settings.model_dump(mode="json")

    def settings_as(self, cls: type[C]) -> C:
        """The settings, checked to be of the kind a job reads (an upstream job's, say)."""
        if not isinstance(self.settings, cls):
            raise TypeError(f"job {self.label!r} is a {self.kind} job, not one with {cls.__name__}")
        return self.settings


@dataclass
class JobGraph:
    """Jobs in insertion order, which the planner keeps topological (upstream before downstream)."""

    jobs: dict[str, JobSpec] = field(default_factory=dict)
    #: Per job, the matrix-local labels of every place the matrix uses it.
    uses: dict[str, list[JobUse]] = field(default_factory=dict)

    def add(self, spec: JobSpec, use: JobUse | None = None) -> JobSpec:
        missing = [d for d in spec.deps if d not in self.jobs]
        if missing:
            raise ValueError(f"job {spec.label!r} added before its upstream jobs {missing}")
        existing = self.jobs.setdefault(spec.key, spec)
        uses = self.uses.setdefault(spec.key, [])
        if use is not None and use not in uses:
            uses.append(use)
        return existing

    def evaluation_use(self, key: str) -> EvaluationUse:
        """Where an evaluating job (attack, cell, corruption) is first used; its rows carry these labels."""
        use = self.uses[key][0]
        if not isinstance(use, EvaluationUse):
            raise TypeError(f"job {self.jobs[key].label!r} is not an evaluating job")
        return use

    def __iter__(self) -> Iterator[JobSpec]:
        return iter(self.jobs.values())

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, key: str) -> JobSpec:
        return self.jobs[key]

    def downstream(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {k: [] for k in self.jobs}
        for spec in self.jobs.values():
            for d in spec.deps:
                out[d].append(spec.key)
        return out
