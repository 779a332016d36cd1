"""Small hand-built results stores for the export and check tests: one run of attack jobs on given outcomes.

A job's key is a hash of its labels and config, as a real job key hashes its config: the same cell written to
two stores has one key, and a cell whose config changed has another.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import torch

from bench.evaluation.rows import ResultRow, accuracy_row
from bench.storage import JobRecord, Store
from bench.uses import ClassifierUse, EvaluationUse, FrontEndUse

T0 = datetime(2026, 1, 2, 3, 4, 5)
EXAMPLES = "e" * 64
CLASSIFIER_CONFIG = {"arch": "mnist-c", "train": {"epochs": 1, "n_train": 5000}}
FRONTEND_CONFIG = {"kind": "aaa", "params": {"lr": 0.001, "epochs": 1}}


@dataclass(frozen=True)
class Cell:
    """An attack job of ``defense`` guided by and evaluated on classifier C, with its two rows' outcomes."""

    clean: str
    robust: str
    defense: str = "aaa"
    eps: float = 0.3
    attack: str = "pgd20"
    config: dict[str, Any] = field(default_factory=lambda: {"attack": "pgd", "params": {"steps": 20}})
    examples: str = EXAMPLES
    scale: tuple[str, ...] = ("evaluated on 10 of 10000 mnist test images",)
    frontend_config: dict[str, Any] = field(default_factory=lambda: dict(FRONTEND_CONFIG))

    @property
    def key(self) -> str:
        identity = [self.defense, self.eps, self.attack, self.config, self.frontend_config, self.examples]
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    @property
    def use(self) -> EvaluationUse:
        guides = [] if self.defense == "none" else ["C"]
        return EvaluationUse(
            experiment=0,
            kind="native",
            relation="no-guides" if self.defense == "none" else "native",
            defense=self.defense,
            defense_kind=self.defense,
            guides=guides,
            target="C",
            arch="mnist-c",
            dataset="mnist",
            train_dataset="mnist",
            threat="linf",
            norm="linf",
            eps=self.eps,
            attack=self.attack,
        )

    def rows(self) -> list[ResultRow]:
        common: dict[str, Any] = dict(
            examples=self.examples, wall_s=1.5, n_forward=100, n_backward=90, scale_notes=self.scale
        )
        return [
            accuracy_row(self.use, attack=self.attack, metric=metric, correct=_correct(outcomes), **common)
            for metric, outcomes in (("clean_accuracy", self.clean), ("robust_accuracy", self.robust))
        ]


def _correct(outcomes: str) -> torch.Tensor:
    return torch.tensor([c == "1" for c in outcomes])


def add_run(store: Store, cells: Sequence[Cell], matrix: str = "gate", status: str = "done") -> int:
    """One run of ``matrix`` that trained classifier C and each cell's front-end, then ran every cell."""
    run = store.start_run(
        matrix_name=matrix,
        matrix_path=f"{matrix}.yaml",
        matrix_sha256="0" * 64,
        matrix={"name": matrix},
        git_commit="abc1234",
        versions={"torch": "2.0"},
        device="cpu: test",
    )
    classifier = ClassifierUse(classifier="C")
    _record(store, run, "train-classifier", "classifier C", CLASSIFIER_CONFIG, [classifier])
    for cell in cells:
        guides = cell.use.guides
        frontend = FrontEndUse(defense=cell.defense, guides=guides)
        config = {**cell.frontend_config, "kind": cell.defense}
        _record(store, run, "train-defense", f"front-end {cell.defense}", config, [frontend])
        _record(store, run, "attack", f"{cell.attack}: {cell.defense}", cell.config, [cell.use], cell.key,
                cell.rows())
    store.finish_run(run, status)
    return run


def config_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def _record(
    store: Store,
    run: int,
    kind: str,
    label: str,
    config: dict[str, Any],
    uses: Sequence[ClassifierUse | FrontEndUse | EvaluationUse],
    key: str | None = None,
    results: Sequence[ResultRow] = (),
) -> None:
    record = JobRecord(
        key=key or config_key(config),
        kind=kind,
        label=label,
        config=config,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=3),
        metrics={},
        artifacts=[],
        results=results,
        flags=[],
    )
    store.record_job(run, record, uses)


def store_with(path: Path, *runs: Sequence[Cell], matrix: str = "gate") -> Path:
    store = Store(path)
    for cells in runs:
        add_run(store, cells, matrix)
    store.engine.dispose()
    return path
