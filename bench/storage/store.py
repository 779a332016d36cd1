"""The SQLite results store: WAL mode, schema managed by alembic migrations, safe to share between processes.

Every job's outcome (its job row, artifacts, result rows and flags) is written in one transaction, after its
artifacts are safely on disk, so a run killed at any point leaves either the whole job or none of it, and a
rerun of the same job replaces its rows rather than adding to them.

Every write transaction starts with ``BEGIN IMMEDIATE``: SQLite's write lock is taken up front, so two
processes never interleave a read-then-write (which SQLite would refuse part-way), and setting up a new
store's schema is one transaction, all or nothing, that a second process starting at the same moment waits
for and then finds done. Python's sqlite3 module would otherwise run each ``CREATE TABLE`` outside any
transaction, so a kill during setup could leave half a schema.

Several runs may share a store. A run records its process, host and a heartbeat, so one whose process died is
told from a live one (:func:`interruption`), and it takes a lease on each job before computing it, so a
concurrent run on the same matrix waits for the job instead of computing it again.

Readers (the report, exports, checks) open the store read-only (:meth:`Store.open_readonly`): they never
create or migrate tables, refuse files that are not a results store, and can read an archived store in a
read-only folder.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Engine, create_engine, delete, event, inspect, select, text, update
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from bench.artifacts import StoredArtifact
from bench.errors import BenchError
from bench.evaluation.rows import CertificateRow, ResultRow
from bench.storage.models import Artifact, Base, Certificate, Flag, Job, Lease, Result, Run, RunJob
from bench.uses import JobUse

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_MAGIC = b"SQLite format 3\x00"
#: How long a statement waits for another process's write lock before the store reports it locked.
BUSY_TIMEOUT_S = 30.0
#: A running job renews its lease and its run's heartbeat this often (one short UPDATE).
HEARTBEAT_S = 30.0
#: A lease lapses this long after its last renewal, so a holder that died blocks the job at most this long
#: (a holder on this host whose process is gone stops blocking at once).
LEASE_S = 4 * HEARTBEAT_S
#: A running run not seen alive for this long is taken for interrupted, wherever it ran; ten missed
#: heartbeats, so a busy machine's late one is not mistaken for death.
STALE_S = 10 * HEARTBEAT_S


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class StoreLockedError(BenchError):
    """Another process held the store's write lock for longer than the busy timeout."""


@dataclass(frozen=True)
class Claim:
    """The outcome of :meth:`Store.take_lease`: whether this run holds the job now, else who does and until
    when at the latest."""

    taken: bool
    holder: int
    expires_at: datetime


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
    """A store opened for writing (``Store(path)``: created or upgraded as needed) or for reading only
    (:meth:`open_readonly`)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        self.path = Path(path)
        self.read_only = False
        self.busy_timeout_s = busy_timeout_s
        _check_writable(self.path)
        self._refuse_foreign()
        self.engine: Engine = create_engine(
            f"sqlite:///{self.path}", connect_args={"timeout": busy_timeout_s}
        )
        _transactions(self.engine, "BEGIN IMMEDIATE")
        event.listen(self.engine, "connect", self._pragmas)
        self._migrate()

    @classmethod
    def open_readonly(cls, path: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Store:
        """Open an existing store without ever writing to it or its folder.

        A store at an older schema revision is upgraded in a private in-memory copy, so an archived store
        written by an earlier release can still be read; one at a newer revision, a foreign SQLite database
        and anything that is not SQLite are refused.
        """
        store = cls.__new__(cls)
        store.path = Path(path)
        store.read_only = True
        store.busy_timeout_s = busy_timeout_s
        _check_readable(store.path)
        try:
            probe = connect_readonly(store.path, busy_timeout_s)
            try:
                revision = _revision_of(store.path, probe)
                current = revision == _head()
                if not current:
                    copy = sqlite3.connect(":memory:", check_same_thread=False)
                    probe.backup(copy)
            finally:
                probe.close()
        except sqlite3.DatabaseError as exc:
            raise BenchError(f"{store.path} cannot be read as a results store (SQLite: {exc})") from exc
        if current:
            store.engine = create_engine(
                "sqlite://", creator=lambda: connect_readonly(store.path, busy_timeout_s)
            )
        else:
            store.engine = create_engine("sqlite://", creator=lambda: copy, poolclass=StaticPool)
        _transactions(store.engine, "BEGIN")
        if not current:
            store._upgrade()
        return store

    def _pragmas(self, dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        # The busy timeout first: switching a new file to WAL needs a lock another process may hold.
        cur.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
        _switch_to_wal(cur, self.busy_timeout_s)
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    def _migrate(self) -> None:
        try:
            with self._errors("setting up its schema"):
                self._upgrade(adopt=True)
        except DatabaseError as exc:
            raise BenchError(f"{self.path} is not a Frontline results store (SQLite: {exc.orig})") from exc

    def _upgrade(self, adopt: bool = False) -> None:
        """Bring the schema to head in one transaction, which other writers wait for (``BEGIN IMMEDIATE``)."""
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as conn:
            if adopt:
                self._adopt(conn)
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except CommandError as exc:
                raise BenchError(
                    f"{self.path} has a schema revision this code does not know ({exc}); it was written by a "
                    "newer Frontline: use that release, or pass another --db"
                ) from exc

    def _refuse_foreign(self) -> None:
        """Check an existing file before the first write (switching it to WAL), so a database that is not
        a store is refused untouched; setup checks again in its transaction, against a concurrent writer."""
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return
        probe = create_engine("sqlite://", creator=lambda: connect_readonly(self.path, self.busy_timeout_s))
        try:
            with self._errors("checking it"), probe.connect() as conn:
                self._adopt(conn, clear=False)
        except DatabaseError as exc:
            raise BenchError(f"{self.path} is not a Frontline results store (SQLite: {exc.orig})") from exc
        finally:
            probe.dispose()

    def _adopt(self, conn: Connection, clear: bool = True) -> None:
        """Refuse a database holding anything but Frontline's tables; clear (if ``clear``) the empty tables an
        older release left when it was killed while creating a store, so that setup can start over."""
        tables = set(inspect(conn).get_table_names())
        versioned = "alembic_version" in tables
        if versioned and conn.execute(text("SELECT count(*) FROM alembic_version")).scalar():
            return
        foreign = sorted(tables - {*Base.metadata.tables, "alembic_version"})
        if foreign:
            raise BenchError(
                f"{self.path} is not a Frontline results store: it holds other tables "
                f"({', '.join(foreign)}); pass --db a new file"
            )
        filled = [t for t in sorted(tables) if conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar()]
        if filled:
            raise BenchError(
                f"{self.path} is a Frontline results store whose setup never finished (no schema revision) "
                f"but holds rows in {', '.join(filled)}; move it aside and pass --db a new file"
            )
        for t in tables if clear else ():
            conn.execute(text(f'DROP TABLE "{t}"'))

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """SQLite's lock and permission errors as messages a user can act on."""
        try:
            yield
        except OperationalError as exc:
            detail = str(exc.orig)
            if "locked" in detail or "busy" in detail:
                raise StoreLockedError(
                    f"results store {self.path} is locked by another process (waited "
                    f"{self.busy_timeout_s:g} s) while {doing}; nothing was written by this step, what was "
                    "recorded before it is intact, and a rerun picks up from there"
                ) from exc
            if "readonly" in detail or "read-only" in detail:
                raise BenchError(_read_only_message(self.path)) from exc
            raise BenchError(f"results store {self.path}: SQLite failed while {doing} ({detail})") from exc

    @contextmanager
    def session(self) -> Iterator[Session]:
        with (
            self._errors("reading or writing it"),
            Session(self.engine, expire_on_commit=False) as s,
            s.begin(),
        ):
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
                heartbeat_at=utcnow(),
                pid=os.getpid(),
                host=socket.gethostname(),
            )
            s.add(run)
            s.flush()
            return run.id

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        with self.session() as s:
            run = s.get(Run, run_id)
            assert run is not None
            run.status, run.error, run.ended_at = status, error, utcnow()
            s.execute(delete(Lease).where(Lease.run_id == run_id))

    def mark_interrupted(self) -> list[Run]:
        """Record as interrupted the runs still marked running whose process is gone (see
        :func:`interruption`), releasing their leases; returns them. Only a writer marks them: a reader shows
        them so without writing."""
        now, host = utcnow(), socket.gethostname()
        with self.session() as s:
            found = []
            for run in s.scalars(select(Run).where(Run.status == "running")).all():
                why = interruption(run, now, host)
                if why is not None:
                    run.status, run.error = "interrupted", why
                    found.append(run)
            s.execute(delete(Lease).where(Lease.run_id.in_([r.id for r in found])))
        return found

    def heartbeat(self, run_id: int) -> None:
        with self.session() as s:
            s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=utcnow()))

    # -- leases -------------------------------------------------------------------------------------------
    def take_lease(self, run_id: int, key: str, seconds: float = LEASE_S) -> Claim:
        """Claim job ``key`` for ``run_id`` for ``seconds``, unless a live run holds an unexpired claim on it.

        The check and the claim are one ``BEGIN IMMEDIATE`` transaction, so two runs never both get it. A
        claim lapses at its expiry, or at once when its holder is no longer running or its process is gone.
        Counts as the run's heartbeat.
        """
        now = utcnow()
        with self.session() as s:
            s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=now))
            lease = s.get(Lease, key)
            holder = None if lease is None or lease.run_id == run_id else s.get(Run, lease.run_id)
            if lease is not None and holds(lease, holder, now, socket.gethostname()):
                return Claim(taken=False, holder=lease.run_id, expires_at=lease.expires_at)
            expires = now + timedelta(seconds=seconds)
            taken = lease.taken_at if lease is not None and lease.run_id == run_id else now
            s.merge(Lease(job_key=key, run_id=run_id, expires_at=expires, taken_at=taken))
            return Claim(taken=True, holder=run_id, expires_at=expires)

    def renew_lease(self, run_id: int, key: str, seconds: float = LEASE_S) -> None:
        """Extend this run's claim on ``key`` and record it alive: what a long job does every heartbeat."""
        now = utcnow()
        with self.session() as s:
            s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=now))
            s.execute(
                update(Lease)
                .where(Lease.job_key == key, Lease.run_id == run_id)
                .values(expires_at=now + timedelta(seconds=seconds))
            )

    def release_lease(self, run_id: int, key: str) -> None:
        with self.session() as s:
            s.execute(delete(Lease).where(Lease.job_key == key, Lease.run_id == run_id))

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
    def completed_artifacts(self, key: str, since: datetime | None = None) -> list[StoredArtifact] | None:
        """The artifacts of a job recorded as done (and finished at ``since`` or later, if given), or None."""
        with self.session() as s:
            job = s.get(Job, key)
            if job is None or job.status != "done":
                return None
            if since is not None and (job.ended_at is None or job.ended_at < since):
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
            s.execute(delete(Lease).where(Lease.job_key == key, Lease.run_id == run_id))
            s.execute(update(Run).where(Run.id == run_id).values(heartbeat_at=now))

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
            s.execute(delete(Lease).where(Lease.job_key == key, Lease.run_id == run_id))
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
        """Every run; one still marked running whose process is gone reads as interrupted (in memory only,
        so a reader can show it without writing), its ``error`` saying when it was last seen alive."""
        with self.session() as s:
            runs = list(s.scalars(select(Run).order_by(Run.id)).all())
        now, host = utcnow(), socket.gethostname()
        for run in runs:
            why = interruption(run, now, host)
            if why is not None:
                run.status, run.error = "interrupted", why
        return runs

    def live_leases(self, keys: Sequence[str]) -> list[Lease]:
        """The leases on ``keys`` that hold their job now (see :func:`holds`): the jobs a live run is
        computing. Read only, like :meth:`runs`."""
        with self.session() as s:
            q = select(Lease, Run).join(Run, Run.id == Lease.run_id).where(Lease.job_key.in_(list(keys)))
            rows = s.execute(q).all()
        now, host = utcnow(), socket.gethostname()
        return [lease for lease, run in rows if holds(lease, run, now, host)]

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


def interruption(run: Run, now: datetime, host: str) -> str | None:
    """Why a run marked running is not running any more, or None while it may still be.

    Its process is gone when it ran on this host under a pid that no longer exists; wherever it ran, it is
    gone when not seen alive for :data:`STALE_S` (runs from before heartbeats were recorded are judged by
    their start). A reused pid only delays the verdict until the heartbeat goes stale.
    """
    if run.status != "running":
        return None
    seen = run.heartbeat_at or run.started_at
    if run.host == host and run.pid is not None and not pid_alive(run.pid):
        why = f"its process {run.pid} on {host} is gone"
    elif (now - seen).total_seconds() > STALE_S:
        why = f"no heartbeat for {(now - seen).total_seconds() / 60:.0f} min"
    else:
        return None
    return f"interrupted: {why}; last seen alive {seen:%Y-%m-%d %H:%M:%S} UTC"


def holds(lease: Lease, holder: Run | None, now: datetime, host: str) -> bool:
    """Whether a lease still keeps its job from other runs: unexpired, and its run still running with its
    process not gone (:func:`interruption`)."""
    if lease.expires_at <= now or holder is None or holder.status != "running":
        return False
    return interruption(holder, now, host) is None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def connect_readonly(path: Path, busy_timeout_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A connection that cannot write to ``path`` or create anything beside it.

    SQLite's ``mode=ro`` still needs the WAL index file beside a WAL database; in an archived store's
    read-only folder it cannot create one, and nothing can write there either, so the file is then opened as
    immutable. That is only safe without a write-ahead log holding committed pages, which is refused.
    """
    uri = f"file:{quote(str(path.resolve()))}"
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False, timeout=busy_timeout_s)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError as exc:
        conn.close()
        if "unable to open" not in str(exc) or os.access(path.parent, os.W_OK):
            raise
        wal = path.with_name(path.name + "-wal")
        if wal.exists() and wal.stat().st_size > 0:
            raise BenchError(
                f"{path} is in a read-only folder and its write-ahead log {wal.name} holds changes that were "
                "never merged into it; open it once where its folder is writable (e.g. a copy of both files)"
            ) from exc
        conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)
    return conn


def _head() -> str | None:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def _revision_of(path: Path, conn: sqlite3.Connection) -> str:
    """The store's schema revision; refuses a database that is not a complete store of a known schema."""
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables:
        raise BenchError(
            f"{path} holds no results: an empty SQLite database (a run killed while creating it?); "
            "`bench run --db` sets it up"
        )
    if "alembic_version" not in tables or not {"runs", "jobs", "results"} <= tables:
        raise BenchError(f"{path} is not a Frontline results store (an SQLite database without its tables)")
    versions = [v for (v,) in conn.execute("SELECT version_num FROM alembic_version")]
    if len(versions) != 1:
        raise BenchError(
            f"{path} records {len(versions)} schema revisions, not one: its setup never finished; "
            "`bench run --db` completes it"
        )
    known = {rev.revision for rev in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if versions[0] not in known:
        raise BenchError(
            f"{path} has schema revision {versions[0]!r}, newer than this code knows (its newest is "
            f"{_head()!r}); read it with the Frontline release that wrote it, or upgrade Frontline"
        )
    return str(versions[0])


def _switch_to_wal(cur: sqlite3.Cursor, timeout_s: float) -> None:
    """Switch to WAL, waiting as the busy timeout would for a lock another process holds.

    SQLite refuses the switch at once ("database is locked"), without calling its busy handler, while another
    connection holds the write lock of a file still in rollback mode: waiting could deadlock it. That is the
    state of a new store while a run started at the same moment sets it up, and the lock is brief.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _transactions(engine: Engine, begin: str) -> None:
    """Let SQLAlchemy, not Python's sqlite3 module, open every transaction, with ``begin``; sqlite3 would run
    DDL outside any transaction and take the write lock only at the first write (SQLAlchemy's documented
    recipe for pysqlite)."""

    @event.listens_for(engine, "connect")
    def _no_implicit_transactions(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql(begin)


def _read_only_message(path: Path) -> str:
    folder = not os.access(path.parent, os.W_OK)
    what = f"its folder {path.parent} is read-only" if folder else "the file is read-only"
    return (
        f"results store {path} cannot be written: {what}; `bench run` records results in it, so make it "
        "writable or pass another --db (`bench report`, `export` and `check` can read it as it is)"
    )


def _check_writable(path: Path) -> None:
    """Fail before SQLite does, whose messages ("unable to open database file") do not say what is wrong."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(
            f"cannot create the folder of results store {path}: {exc.strerror or exc}; pass --db a path "
            "in a writable folder"
        ) from exc
    if path.is_dir():
        raise BenchError(f"results store {path} is a folder; pass --db a file")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise BenchError(_read_only_message(path))
    _check_header(path)


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise BenchError(f"no results store at {path}; run `bench run --matrix ...` first or pass --db")
    if path.is_dir():
        raise BenchError(f"{path} is a folder, not a results store")
    if not os.access(path, os.R_OK):
        raise BenchError(f"results store {path} cannot be read: permission denied")
    if path.stat().st_size == 0:
        raise BenchError(f"{path} is empty: not a results store (run `bench run --matrix ... --db {path}`)")
    _check_header(path)


def _check_header(path: Path) -> None:
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if head != SQLITE_MAGIC:
        raise BenchError(f"{path} is not a Frontline results store (not an SQLite database)")
