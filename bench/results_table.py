"""Result rows with their provenance as one pandas table, read from a results store or a JSON export of one.

Reading never writes. A store is opened read-only (SQLite ``mode=ro``) and never migrated, so an export or a
check cannot change reference rows; a store whose schema revision this code does not know (written by newer
code) is refused rather than misread. A store at an older revision is read as it is: columns it lacks come
out empty. A JSON export (``bench export --format json``) reads back as the same table, so a committed export
can stand in for the store it came from.

One table row is one ``results`` row of one run: the run's provenance (matrix, commit, device, versions),
the labels that run's matrix gave the job (``run_jobs``), the number with its n and interval, and the
configs of the job and of the front-end and classifier jobs it evaluated, by which a change of configuration
is told apart from a change of outcome.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.exc import DatabaseError

from bench.errors import BenchError
from bench.storage.models import Result
from bench.storage.store import MIGRATIONS, connect_readonly
from bench.uses import EvaluationUse

SQLITE_MAGIC = b"SQLite format 3\x00"
REQUIRED_TABLES = ("alembic_version", "runs", "run_jobs", "jobs", "results")

PROVENANCE = ["run_id", "matrix", "matrix_sha256", "run_status", "git_commit", "run_started_at", "device"]
PROVENANCE += ["versions"]
#: The names the run's matrix gave the job; for a row whose run did not label it, the row's own columns.
LABELS = list(EvaluationUse.model_fields)
NUMBER = ["metric", "epsilon", "n", "successes", "value", "ci_low", "ci_high", "scale"]
#: The rest of a ``results`` row, as the code's schema has it (so the columns do not depend on the store's).
OWN = [
    c.name
    for c in Result.__table__.columns
    if c.name not in {"id", "job_key", "run_id", "created_at", *LABELS, *NUMBER}
]
JOB = [
    "computed_in_run",
    "computed_at",
    "config",
    "frontend_job",
    "frontend_config",
    "classifier_job",
    "classifier_config",
]
COLUMNS = [*PROVENANCE, "job_key", "job_kind", *LABELS, *NUMBER, *OWN, *JOB]
#: Columns holding lists or dicts: JSON text in formats without nesting (CSV, parquet).
NESTED = ["versions", "guides", "attacks", "cascade", "details", "config"]
NESTED += ["frontend_config", "classifier_config"]
#: The order rows are written in: by the matrix's names, so a regenerated store gives the same file.
ORDER = ["matrix", "run_id", "experiment", "defense", "guides", "target", "m", "draw", "threat", "eps"]
ORDER += ["attack", "metric", "epsilon", "job_key"]


class StoreReadError(BenchError):
    """A path that holds no readable results: missing, empty, foreign, or written by newer code."""


class NoRunError(BenchError):
    """The source is readable but holds no run the selection names."""


def read_rows(
    path: Path, *, run: int | None = None, matrix: str | None = None, latest: bool = False
) -> pd.DataFrame:
    """The rows of the selected runs of a store or a JSON export, in :data:`COLUMNS` order.

    ``run`` selects one run; ``matrix`` the runs of one matrix; ``latest`` keeps only the newest selected
    run. Raises :class:`StoreReadError` for an unreadable source and :class:`NoRunError` when nothing matches.
    """
    if not path.exists():
        raise StoreReadError(f"no results store at {path}")
    if path.is_dir():
        raise StoreReadError(f"{path} is a folder, not a results store or a JSON export")
    with path.open("rb") as f:
        head = f.read(len(SQLITE_MAGIC))
    if not head:
        raise StoreReadError(f"{path} is empty: not a results store (run `bench run --matrix ...` into it)")
    if head == SQLITE_MAGIC:
        return _read_store(path, run, matrix, latest)
    if head.lstrip()[:1] == b"[":
        return _read_export(path, run, matrix, latest)
    raise StoreReadError(f"{path} is neither a SQLite results store nor a JSON export of one")


def _read_export(path: Path, run: int | None, matrix: str | None, latest: bool) -> pd.DataFrame:
    try:
        records = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreReadError(f"{path} is not a JSON export of results ({exc})") from exc
    if not isinstance(records, list) or not all(
        isinstance(r, dict) and {"run_id", "matrix", "job_key", "metric"} <= r.keys() for r in records
    ):
        raise StoreReadError(f"{path} is not a JSON export of results (expected `bench export` rows)")
    if not records:
        raise StoreReadError(f"{path} is an export with no rows")
    runs = {int(r["run_id"]): str(r["matrix"]) for r in records}
    chosen = _select(path, runs, run, matrix, latest)
    return _nonempty(path, chosen, table([r for r in records if int(r["run_id"]) in chosen]))


def _read_store(path: Path, run: int | None, matrix: str | None, latest: bool) -> pd.DataFrame:
    engine = sa.create_engine("sqlite://", creator=lambda: connect_readonly(path))
    try:
        with engine.connect() as conn:
            return _query(path, conn, run, matrix, latest)
    except DatabaseError as exc:
        raise StoreReadError(f"{path} cannot be read as a results store (SQLite: {exc.orig})") from exc
    finally:
        engine.dispose()


def _query(
    path: Path, conn: sa.Connection, run: int | None, matrix: str | None, latest: bool
) -> pd.DataFrame:
    present = set(sa.inspect(conn).get_table_names())
    missing = [t for t in REQUIRED_TABLES if t not in present]
    if missing:
        raise StoreReadError(f"{path} is not a Frontline results store (no table {', '.join(missing)})")
    check_revision(path, conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all())
    meta = sa.MetaData()
    runs_t, links_t, jobs_t, results_t = (
        sa.Table(name, meta, autoload_with=conn) for name in ("runs", "run_jobs", "jobs", "results")
    )
    runs = {r.id: r for r in conn.execute(sa.select(runs_t))}
    if not runs:
        raise StoreReadError(f"{path} holds no runs (run `bench run --matrix ...` into it first)")
    chosen = _select(path, {i: r.matrix_name for i, r in runs.items()}, run, matrix, latest)
    links = conn.execute(sa.select(links_t).where(links_t.c.run_id.in_(chosen)).order_by(links_t.c.id)).all()
    keys = sorted({link.job_key for link in links})
    jobs = {j.key: j for j in conn.execute(sa.select(jobs_t).where(jobs_t.c.key.in_(keys)))} if keys else {}
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    if keys:
        for r in conn.execute(sa.select(results_t).where(results_t.c.job_key.in_(keys))).mappings():
            by_job.setdefault(r["job_key"], []).append(dict(r))
    upstream = _upstream_jobs(links)
    upstream_configs = {
        j.key: j.config
        for j in conn.execute(sa.select(jobs_t).where(jobs_t.c.key.in_(sorted(set(upstream.values())))))
    }
    records = []
    for link in links:
        job = jobs.get(link.job_key)
        for result in by_job.get(link.job_key, []):
            records.append(_record(runs[link.run_id], link, job, result, upstream, upstream_configs))
    return _nonempty(path, chosen, table(records))


def _nonempty(path: Path, runs: Sequence[int], frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty:
        which = f"run {runs[0]}" if len(runs) == 1 else f"runs {', '.join(map(str, runs))}"
        raise NoRunError(f"{which} of {path} holds no result rows")
    return frame


def check_revision(path: Path, versions: Sequence[str]) -> None:
    """Refuse a store whose schema this code does not know: newer code wrote it, and reading it with this
    code's idea of the columns could silently drop what the new ones mean."""
    script = ScriptDirectory(str(MIGRATIONS))
    known = {rev.revision for rev in script.walk_revisions()}
    if len(versions) != 1:
        raise StoreReadError(f"{path} records {len(versions)} schema revisions; a results store has one")
    if versions[0] not in known:
        head = script.get_current_head()
        raise StoreReadError(
            f"{path} has schema revision {versions[0]!r}, newer than this code knows (its newest is "
            f"{head!r}); read it with the Frontline release that wrote it, or upgrade Frontline"
        )


def _upstream_jobs(links: Sequence[Any]) -> dict[tuple[Any, ...], str]:
    """Per run, the job keys of its front-ends (by defense and guides) and classifiers (by label)."""
    found: dict[tuple[Any, ...], str] = {}
    for link in links:
        for use in link.labels.get("uses", []):
            if "experiment" in use:
                continue
            if "classifier" in use and not use.get("trained_with"):
                found[(link.run_id, "classifier", use["classifier"])] = link.job_key
            elif "defense" in use:
                found[(link.run_id, "frontend", use["defense"], tuple(use.get("guides", ())))] = link.job_key
    return found


def _record(
    run: Any,
    link: Any,
    job: Any,
    result: Mapping[str, Any],
    upstream: Mapping[tuple[Any, ...], str],
    upstream_configs: Mapping[str, Any],
) -> dict[str, Any]:
    use: dict[str, Any] = next((u for u in link.labels.get("uses", []) if "experiment" in u), {})
    labels = {name: use.get(name, result.get(name)) for name in LABELS}
    if "eps" not in use:
        labels["eps"] = result["epsilon"]
    guides = tuple(labels["guides"] or ())
    frontend = upstream.get((link.run_id, "frontend", labels["defense"], guides)) or upstream.get(
        (link.run_id, "frontend", labels["defense"], ())
    )
    classifier = upstream.get((link.run_id, "classifier", labels["target"]))
    return {
        "run_id": run.id,
        "matrix": run.matrix_name,
        "matrix_sha256": run.matrix_sha256,
        "run_status": run.status,
        "git_commit": run.git_commit,
        "run_started_at": _iso(run.started_at),
        "device": run.device,
        "versions": run.versions,
        "job_key": link.job_key,
        "job_kind": job.kind if job is not None else None,
        **labels,
        **{name: result.get(name) for name in (*NUMBER, *OWN)},
        "computed_in_run": result["run_id"],
        "computed_at": _iso(result["created_at"]),
        "config": job.config if job is not None else None,
        "frontend_job": frontend,
        "frontend_config": upstream_configs.get(frontend) if frontend else None,
        "classifier_job": classifier,
        "classifier_config": upstream_configs.get(classifier) if classifier else None,
    }


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _select(
    path: Path, runs: Mapping[int, str], run: int | None, matrix: str | None, latest: bool
) -> list[int]:
    if run is not None:
        if run not in runs:
            raise NoRunError(f"{path} has no run {run} (its runs: {_listing(runs)})")
        if matrix is not None and runs[run] != matrix:
            raise NoRunError(f"run {run} of {path} is of matrix {runs[run]!r}, not {matrix!r}")
        return [run]
    chosen = sorted(i for i, name in runs.items() if matrix is None or name == matrix)
    if not chosen:
        raise NoRunError(f"{path} holds no run of matrix {matrix!r} (its runs: {_listing(runs)})")
    return chosen[-1:] if latest else chosen


def _listing(runs: Mapping[int, str]) -> str:
    return ", ".join(f"{i} ({name})" for i, name in sorted(runs.items()))


def table(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Records as a table in :data:`COLUMNS` and :data:`ORDER` order, values kept as Python objects (an
    integer column with gaps stays integers, not floats), columns a record lacks empty."""
    rows = sorted(({c: r.get(c) for c in COLUMNS} for r in records), key=_order)
    return pd.DataFrame(rows, columns=COLUMNS, dtype=object)


def _order(row: Mapping[str, Any]) -> tuple[tuple[bool, Any], ...]:
    """None first, then values; lists by their joined items."""
    return tuple(
        (v is not None, "+".join(map(str, v)) if isinstance(v, list) else v)
        for v in (row[c] for c in ORDER)
    )
