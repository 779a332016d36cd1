"""A results store written at revision 0001 upgrades in place: its rows read back unchanged, and the upgraded
schema is the one the models declare (a row per metric and radius, certificates)."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.exc import IntegrityError

from bench.evaluation.rows import CertificateRow, ResultRow
from bench.storage import JobRecord, Store
from bench.storage.models import Base
from bench.storage.store import MIGRATIONS
from tests.bench.storage.test_store import USE, row, start

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


def store_at_0001(path: Path) -> None:
    """A store as a Frontline release before certification left it, with one result row."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with create_engine(f"sqlite:///{path}").begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "insert into results (job_key, dataset, defense, defense_kind, guides, target, relation, norm, "
            "epsilon, attack, metric, n, successes, value, ci_low, ci_high, wall_s, n_forward, n_backward, "
            "scale, outcomes, examples_sha256, created_at) values ('k0', 'mnist', 'aaa', 'aaa', '[\"A\"]', "
            "'A', 'native', 'linf', 0.3, 'pgd', 'robust_accuracy', 4, 3, 0.75, 0.2, 0.99, 1.5, 40, 30, "
            "'full', '1101', 'e', '2026-01-01 00:00:00')"
        )


def test_an_existing_store_upgrades_in_place_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    store_at_0001(path)
    store = Store(path)
    (old,) = store.all_results()
    assert (old.job_key, old.metric, old.epsilon, old.successes, old.outcomes) == (
        "k0",
        "robust_accuracy",
        0.3,
        3,
        "1101",
    )
    assert old.guides == ["A"] and old.created_at == datetime(2026, 1, 1)
    assert old.cost_per_prediction is None and old.details is None, "an old row's cost was never recorded"
    with sqlite3.connect(path) as conn:
        assert conn.execute("select version_num from alembic_version").fetchall() == [(HEAD,)]
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_an_upgraded_store_holds_a_row_per_radius_but_not_two_at_one(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    store_at_0001(path)
    store = Store(path)
    run = start(store)
    rows = [
        row("robust_accuracy", 0.5).model_copy(update={"metric": "certified_accuracy", "epsilon": r})
        for r in (0.0, 0.5)
    ]
    store.record_job(run, record("k1", rows, certificates=CERTIFICATES), [USE])
    assert sorted(r.epsilon for r in store.results_for(["k1"])) == [0.0, 0.5]
    with pytest.raises(IntegrityError):
        store.record_job(run, record("k2", [rows[0], rows[0]]), [USE])


CERTIFICATES = [
    CertificateRow(
        position=0, test_index=7, label=3, prediction=3, count=95, p_lower=0.9, radius=0.3, radius_pixel=0.3
    ),
    CertificateRow(
        position=1, test_index=2, label=1, prediction=None, count=40, p_lower=0.3, radius=0, radius_pixel=0
    ),
]


def record(key: str, results: list[ResultRow], certificates: list[CertificateRow] | None = None) -> JobRecord:
    now = datetime(2026, 1, 1)
    return JobRecord(
        key=key,
        kind="certify",
        label="x",
        config={},
        started_at=now,
        ended_at=now,
        metrics={},
        artifacts=[],
        results=results,
        flags=[],
        certificates=certificates or [],
    )


def test_certificates_are_stored_in_order_and_replaced_by_a_rerun(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.db")
    run = start(store)
    store.record_job(run, record("k1", [], CERTIFICATES[::-1]), [USE])
    stored = store.certificates_for(["k1"])
    assert [CertificateRow.model_validate(c, from_attributes=True) for c in stored] == CERTIFICATES
    assert stored[1].prediction is None, "an abstention is stored as no prediction"
    store.record_job(run, record("k1", [], CERTIFICATES[:1]), [USE])
    assert [c.position for c in store.certificates_for(["k1"])] == [0]
