from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from bench.artifacts import StoredArtifact
from bench.evaluation.rows import Metric, ResultRow
from bench.storage import JobRecord, Store
from bench.storage.models import Base
from bench.uses import EvaluationUse

USE = EvaluationUse(
    experiment=0,
    kind="native",
    relation="native",
    defense="aaa",
    defense_kind="aaa",
    guides=["A"],
    target="A",
    dataset="mnist",
    threat="linf",
    norm="linf",
    eps=0.3,
    attack="pgd",
)


def row(metric: Metric, value: float) -> ResultRow:
    return ResultRow(
        dataset="mnist",
        defense="aaa",
        defense_kind="aaa",
        guides=["A"],
        target="A",
        relation="native",
        norm="linf",
        epsilon=0.3,
        attack="pgd",
        metric=metric,
        n=10,
        successes=int(value * 10),
        value=value,
        ci_low=0.0,
        ci_high=1.0,
        wall_s=1.0,
        n_forward=100,
        n_backward=90,
        scale="full",
        outcomes="1" * 10,
        examples_sha256="e" * 64,
    )


def record(key: str, robust: float) -> JobRecord:
    now = datetime(2026, 1, 1)
    return JobRecord(
        key=key,
        kind="attack",
        label="x",
        config={"a": 1},
        started_at=now,
        ended_at=now,
        metrics={},
        artifacts=[StoredArtifact("outcomes", "/tmp/o", "s" * 64, 3)],
        results=[row("clean_accuracy", 0.9), row("robust_accuracy", robust)],
        flags=[{"check": "robust-le-clean", "passed": True, "detail": "ok"}],
    )


def start(store: Store) -> int:
    return store.start_run(
        matrix_name="m",
        matrix_path="m.yaml",
        matrix_sha256="0" * 64,
        matrix={},
        git_commit=None,
        versions={},
        device="cpu",
    )


def test_rewriting_a_job_replaces_its_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    run = start(store)
    store.record_job(run, record("k1", 0.5), [USE])
    store.record_job(run, record("k1", 0.4), [USE])
    rows = store.results_for(["k1"])
    assert len(rows) == 2
    assert {r.metric: r.value for r in rows}["robust_accuracy"] == 0.4
    assert len(store.flags_for(["k1"])) == 1
    assert len(store.run_jobs(run)) == 1
    assert store.results_for(["k1"])[0].examples_sha256 == "e" * 64
    assert store.completed_artifacts("k1") == [StoredArtifact("outcomes", "/tmp/o", "s" * 64, 3)]


def test_a_failure_never_erases_earlier_results(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    run = start(store)
    store.record_job(run, record("k1", 0.5), [USE])
    store.record_failure(start(store), "k1", "attack", "x", {}, datetime(2026, 1, 2), "boom")
    assert store.completed_artifacts("k1") is not None
    assert len(store.results_for(["k1"])) == 2
    store.record_failure(run, "k2", "attack", "y", {}, datetime(2026, 1, 2), "boom")
    assert store.completed_artifacts("k2") is None
    assert store.results_for(["k2"]) == []


def test_store_uses_wal_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    store = Store(path)
    start(store)
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    assert [r.matrix_name for r in Store(path).runs()] == ["m"]


def test_migrations_build_the_schema_the_models_declare(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    from bench.errors import BenchError

    bad = tmp_path / "notes.db"
    bad.write_text("not a database\n" * 100)
    with pytest.raises(BenchError, match="is not a Frontline results store"):
        Store(bad)


def test_links_keep_the_labels_as_plain_json_without_nulls(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    run = start(store)
    store.record_job(run, record("k1", 0.5), [USE])
    (link,) = store.run_jobs(run)
    assert link.labels == {
        "uses": [
            {
                "experiment": 0,
                "kind": "native",
                "relation": "native",
                "defense": "aaa",
                "defense_kind": "aaa",
                "guides": ["A"],
                "target": "A",
                "arch": "",
                "dataset": "mnist",
                "threat": "linf",
                "norm": "linf",
                "eps": 0.3,
                "attack": "pgd",
            }
        ]
    }
    assert EvaluationUse.model_validate(link.labels["uses"][0]) == USE
