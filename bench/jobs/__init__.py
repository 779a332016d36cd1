"""Job kinds and the functions that run them; the executor dispatches through :data:`RUNNERS`."""

from __future__ import annotations

from collections.abc import Callable

from bench.jobs import attack, cell, certify, corruption, train_classifier, train_defense
from bench.jobs.configs import JobKind
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobSpec
from bench.jobs.upstream import Upstream

Runner = Callable[[JobSpec, Upstream, Env], JobOutput]

RUNNERS: dict[JobKind, Runner] = {
    "train-classifier": train_classifier.run,
    "train-defense": train_defense.run,
    "attack": attack.run,
    "cell": cell.run,
    "corruption": corruption.run,
    "certify": certify.run,
}
