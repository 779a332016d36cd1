"""The SQLite results store: one writer, WAL mode, schema managed by alembic migrations.

Every job's outcome (its job row, artifacts, result rows and flags) is written in one transaction, after its
artifacts are safely on disk, so a run killed at any point leaves either the whole job or none of it, and a
rerun of the same job replaces its rows rather than adding to them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, delete, event, select
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session

from bench.artifacts import StoredArtifact
from bench.errors import BenchError
from bench.evaluation.rows import CertificateRow, ResultRow
from bench.storage.models import Artifact, Certificate, Flag, Job, Result, Run, RunJob
from bench.uses import JobUse

MIGRATIONS = Path(__file__).parent / "migrations"


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class JobRecord:
    """Everything one finished job writes, applied atomically by :meth:`Store.record_job`."""

    key: str
    kind: str
    label: str
    config: dict[str, Any]
    started_at: datetime
    ended_at: datetime
    metrics: dict[str, Any]
    artifacts: Sequence[StoredArtifact]
    results: Sequence[ResultRow]
    flags: Sequence[dict[str, Any]]
    certificates: Sequence[CertificateRow] = ()


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = create_engine(f"sqlite:///{self.path}")
        event.listen(self.engine, "connect", _sqlite_pragmas)
        self._migrate()

    def _migrate(self) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except DatabaseError as exc:
            raise BenchError(f"{self.path} is not a Frontline results store (SQLite: {exc.orig})") from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    # -- runs ---------------------------------------------------------------------------------------------
    def start_run(
        self,
        *,
        matrix_name: str,
        matrix_path: str,
        matrix_sha256: str,
        matrix: dict[str, Any],
        git_commit: str | None,
        versions: dict[str, Any],
        device: str,
    ) -> int:
        with self.session() as s:
            run = Run(
                matrix_name=matrix_name,
                matrix_path=matrix_path,
                matrix_sha256=matrix_sha256,
                matrix=matrix,
                started_at=utcnow(),
                git_commit=git_commit,
                versions=versions,
                device=device,
                status="running",
            )
            s.add(run)
            s.flush()
            return run.id

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        with self.session() as s:
            run = s.get(Run, run_id)
            assert run is not None
            run.status, run.error, run.ended_at = status, error, utcnow()

    def link(self, run_id: int, job_key: str, uses: Sequence[JobUse], skipped: bool) -> None:
        with self.session() as s:
            self._link(s, run_id, job_key, uses, skipped)

    @staticmethod
    def _link(s: Session, run_id: int, job_key: str, uses: Sequence[JobUse], skipped: bool) -> None:
        labels = {"uses": [u.model_dump(mode="json") for u in uses]}
        stmt = insert(RunJob).values(run_id=run_id, job_key=job_key, labels=labels, skipped=skipped)
        s.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_id", "job_key"],
                set_={"labels": stmt.excluded.labels, "skipped": stmt.excluded.skipped},
            )
        )

    # -- jobs ---------------------------------------------------------------------------------------------
    def completed_artifacts(self, key: str) -> list[StoredArtifact] | None:
        """The artifacts of a job recorded as done, or None when it is not done."""
        with self.session() as s:
            job = s.get(Job, key)
            if job is None or job.status != "done":
                return None
            rows = s.scalars(select(Artifact).where(Artifact.job_key == key)).all()
            return [StoredArtifact(a.name, a.path, a.sha256, a.bytes) for a in rows]

    def record_job(self, run_id: int, record: JobRecord, uses: Sequence[JobUse]) -> None:
        with self.session() as s:
            key = record.key
            for table in (Artifact, Result, Flag, Certificate):
                s.execute(delete(table).where(table.job_key == key))
            s.merge(
                Job(
                    key=key,
                    kind=record.kind,
                    label=record.label,
                    config=record.config,
                    status="done",
                    started_at=record.started_at,
                    ended_at=record.ended_at,
                    wall_s=(record.ended_at - record.started_at).total_seconds(),
                    metrics=record.metrics,
                    run_id=run_id,
                    error=None,
                )
            )
            s.add_all(
                Artifact(job_key=key, name=a.name, path=a.path, sha256=a.sha256, bytes=a.bytes)
                for a in record.artifacts
            )
            now = utcnow()
            s.add_all(
                Result(job_key=key, run_id=run_id, created_at=now, **r.model_dump()) for r in record.results
            )
            s.add_all(Flag(job_key=key, **f) for f in record.flags)
            s.add_all(Certificate(job_key=key, **c.model_dump()) for c in record.certificates)
            self._link(s, run_id, key, uses, skipped=False)

    def record_failure(
        self,
        run_id: int,
        key: str,
        kind: str,
        label: str,
        config: dict[str, Any],
        started_at: datetime,
        error: str,
    ) -> None:
        """Mark a job failed without touching rows an earlier successful run of it wrote."""
        with self.session() as s:
            job = s.get(Job, key)
            if job is not None and job.status == "done":
                return
            s.merge(
                Job(
                    key=key,
                    kind=kind,
                    label=label,
                    config=config,
                    status="failed",
                    started_at=started_at,
                    ended_at=utcnow(),
                    wall_s=None,
                    metrics={},
                    run_id=run_id,
                    error=error,
                )
            )

    # -- queries for reports ------------------------------------------------------------------------------
    def runs(self) -> list[Run]:
        with self.session() as s:
            return list(s.scalars(select(Run).order_by(Run.id)).all())

    def run_jobs(self, run_id: int) -> list[RunJob]:
        with self.session() as s:
            return list(s.scalars(select(RunJob).where(RunJob.run_id == run_id).order_by(RunJob.id)).all())

    def results_for(self, keys: Sequence[str]) -> list[Result]:
        with self.session() as s:
            return list(s.scalars(select(Result).where(Result.job_key.in_(list(keys)))).all())

    def flags_for(self, keys: Sequence[str]) -> list[Flag]:
        with self.session() as s:
            return list(s.scalars(select(Flag).where(Flag.job_key.in_(list(keys)))).all())

    def certificates_for(self, keys: Sequence[str]) -> list[Certificate]:
        """The certify jobs' per-example certificates, each job's in its evaluation order."""
        with self.session() as s:
            q = select(Certificate).where(Certificate.job_key.in_(list(keys)))
            return list(s.scalars(q.order_by(Certificate.job_key, Certificate.position)).all())

    def jobs(self, keys: Sequence[str] | None = None) -> list[Job]:
        with self.session() as s:
            q = select(Job) if keys is None else select(Job).where(Job.key.in_(list(keys)))
            return list(s.scalars(q).all())

    def all_results(self) -> list[Result]:
        with self.session() as s:
            return list(s.scalars(select(Result).order_by(Result.id)).all())


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
