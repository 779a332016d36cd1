"""The results store's schema (SQLAlchemy 2 declarative models).

Rows are keyed by content, not by run: a result is identified by the key of the job that computed it (a hash
of its full resolved config, upstream keys and data identity) plus the metric, so writing it again is an
upsert, a resumed run never duplicates rows, and a run only *links* to the jobs it covered (``run_jobs``),
carrying the matrix-local labels the report shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    matrix_name: Mapped[str] = mapped_column(String(200), index=True)
    matrix_path: Mapped[str] = mapped_column(Text)
    matrix_sha256: Mapped[str] = mapped_column(String(64))
    matrix: Mapped[dict[str, Any]] = mapped_column(JSON)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    git_commit: Mapped[str | None] = mapped_column(String(64), nullable=True)
    versions: Mapped[dict[str, Any]] = mapped_column(JSON)
    device: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))  # running | done | failed | interrupted
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: When the run was last seen alive, and the process that ran it, by which a run whose process died is
    #: told from a live one; NULL in runs started before revision 0003.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(255), nullable=True)


class Job(Base):
    __tablename__ = "jobs"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(40), index=True)
    label: Mapped[str] = mapped_column(Text)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20))  # done | failed
    started_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    wall_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Lease(Base):
    """A run's claim on a job it is computing, so a concurrent run on the same store waits instead of
    computing it again; renewed while the job runs, so a claim whose holder died lapses at ``expires_at``."""

    __tablename__ = "leases"

    job_key: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    #: When its run took it, so a status can say how long the job has been running; NULL on a lease taken by a
    #: release before revision 0004.
    taken_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class RunJob(Base):
    """Which jobs a run covered, with the labels its matrix gave them (a job may serve many matrices)."""

    __tablename__ = "run_jobs"
    __table_args__ = (UniqueConstraint("run_id", "job_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"), index=True)
    job_key: Mapped[str] = mapped_column(String(64), index=True)
    labels: Mapped[dict[str, Any]] = mapped_column(JSON)
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("job_key", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_key: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(100))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(Integer)


class Result(Base):
    """One number: a cell x threat x epsilon x attack x metric, with n, a 95% interval and its cost.

    A job has one row per metric and radius: a certify job reports certified accuracy at many radii.
    """

    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("job_key", "metric", "epsilon", name="uq_results_job_metric_epsilon"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_key: Mapped[str] = mapped_column(String(64), index=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id"), nullable=True)
    dataset: Mapped[str] = mapped_column(String(50))
    defense: Mapped[str] = mapped_column(String(200))
    defense_kind: Mapped[str] = mapped_column(String(50))
    guides: Mapped[list[Any]] = mapped_column(JSON)
    target: Mapped[str] = mapped_column(String(200))
    relation: Mapped[str] = mapped_column(String(20))  # native | cross-model | cross-dataset | no-guides
    norm: Mapped[str] = mapped_column(String(8))
    epsilon: Mapped[float] = mapped_column(Float)
    attack: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(40))  # bench.evaluation.rows.Metric
    n: Mapped[int] = mapped_column(Integer)
    successes: Mapped[int] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float] = mapped_column(Float)
    ci_high: Mapped[float] = mapped_column(Float)
    wall_s: Mapped[float] = mapped_column(Float)
    n_forward: Mapped[int] = mapped_column(Integer)
    n_backward: Mapped[int] = mapped_column(Integer)
    scale: Mapped[str] = mapped_column(Text)  # "full", or what was reduced
    outcomes: Mapped[str] = mapped_column(Text)  # one '0'/'1' per example, in evaluation order
    examples_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    #: Forward passes of the pipeline per prediction: 1, the vote draws of a randomized pipeline, or n0 + n
    #: for CERTIFY; NULL in rows written before revision 0002.
    cost_per_prediction: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: A certify row's sigma, noise_space, n0, n, alpha, noise_batch, radius_declared and preset.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class Flag(Base):
    """A soundness check on one cell; a failed one marks the cell's number unreliable in the report."""

    __tablename__ = "flags"
    __table_args__ = (UniqueConstraint("job_key", "check"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_key: Mapped[str] = mapped_column(String(64), index=True)
    check: Mapped[str] = mapped_column(String(60))
    passed: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text)


class Certificate(Base):
    """CERTIFY's outcome on one example of a certify job (Cohen et al. 2019); radii are l2."""

    __tablename__ = "certificates"
    __table_args__ = (UniqueConstraint("job_key", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_key: Mapped[str] = mapped_column(String(64), index=True)
    #: The example's place in the job's evaluation order, and its position in the test split.
    position: Mapped[int] = mapped_column(Integer)
    test_index: Mapped[int] = mapped_column(Integer)
    label: Mapped[int] = mapped_column(Integer)
    #: The certified class; NULL where CERTIFY abstained.
    prediction: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: nA of the n estimation draws, and its one-sided (1 - alpha) Clopper-Pearson lower bound.
    count: Mapped[int] = mapped_column(Integer)
    p_lower: Mapped[float] = mapped_column(Float)
    #: In the defense's declared noise space, and in [0,1] pixel space; 0 on abstain.
    radius: Mapped[float] = mapped_column(Float)
    radius_pixel: Mapped[float] = mapped_column(Float)
