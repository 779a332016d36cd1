"""The ``bench`` command line: run a matrix, render the report, list what is registered."""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click
import torch

from bench.api import JobContext, load_plugins
from bench.errors import BenchError
from bench.regression import CORRECTIONS

if TYPE_CHECKING:
    from bench.config import MatrixConfig
    from bench.executor import Executor
    from bench.plan import Planned

DEFAULT_DB = "results.db"
DEFAULT_ARTIFACTS = "artifacts"
#: Where ``git describe`` looks for the repository the running code was checked out from.
PACKAGE_DIR = Path(__file__).resolve().parent


def data_root(data_dir: str | None) -> Path:
    """``--data-dir`` > ``BENCH_DATA_DIR`` > ``./data``."""
    return Path(data_dir or os.environ.get("BENCH_DATA_DIR") or "data").expanduser()


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError("--device cuda was asked for but no CUDA device is available")
    return torch.device(name)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def package_versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": sys.version.split()[0]}
    for pkg in ("frontline-bench", "torch", "torchvision", "numpy", "pyautoattack", "sqlalchemy", "pydantic"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def git_describe(where: Path = PACKAGE_DIR) -> str | None:
    """The commit the code came from, suffixed ``-dirty`` when the working tree had uncommitted changes."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            check=True,
            cwd=where,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def check_executor(_ctx: click.Context, _param: click.Parameter, name: str) -> str:
    """Validated here rather than by ``click.Choice`` so ``bench --help`` need not import the job code."""
    from bench.executor import EXECUTORS

    if name not in EXECUTORS:
        raise click.BadParameter(f"unknown executor {name!r}; valid names: {', '.join(sorted(EXECUTORS))}")
    return name


def make_executor(
    name: str, show_progress: bool, address: str | None, workers: int | None, job_resources: tuple[str, ...]
) -> Executor:
    """The engine ``--executor`` names, with the options only Ray takes (checked before the run starts)."""
    from bench.executor import EXECUTORS

    if name == "ray":
        from bench.jobs.resources import with_overrides
        from bench.ray_executor import RayExecutor

        resources = with_overrides(job_resources)
        return RayExecutor(show_progress, address=address, num_cpus=workers, resources=resources)
    ray_only = (("--address", address), ("--workers", workers), ("--job-resources", job_resources))
    given = [option for option, value in ray_only if value]
    if given:
        raise BenchError(f"{', '.join(given)}: only --executor ray takes them")
    return EXECUTORS[name](show_progress=show_progress)


class BenchGroup(click.Group):
    """Prints :class:`BenchError` messages without a traceback: they are the user's to fix, not bugs."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BenchError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            ctx.exit(2)


@click.group(cls=BenchGroup)
@click.version_option(package_name="frontline-bench")
def main() -> None:
    """Frontline: benchmark model-agnostic front-end defenses against adaptive attacks."""


@main.command()
@click.option(
    "--matrix", "matrix_path", required=True, type=click.Path(path_type=Path), help="Matrix YAML file."
)
@click.option(
    "--db", default=DEFAULT_DB, show_default=True, type=click.Path(path_type=Path), help="SQLite store."
)
@click.option(
    "--artifacts",
    default=DEFAULT_ARTIFACTS,
    show_default=True,
    help="Folder or fsspec URL (s3://bucket/path, memory://x) for weights and per-example outcomes.",
)
@click.option("--data-dir", default=None, help="Data root (default: $BENCH_DATA_DIR, else ./data).")
@click.option("--download", is_flag=True, help="Download datasets that are not on disk.")
@click.option("--force", is_flag=True, help="Redo every job, even those already complete.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for PyTorch (default: its own choice; 1 is fastest on a busy 2-core box).")
@click.option("--executor", "executor_name", default="local", show_default=True, callback=check_executor,
              help="Engine that runs the jobs (local: in this process, one at a time; ray: each job a Ray "
                   "task, independent jobs in parallel).")
@click.option("--address", default=None,
              help="Ray: the cluster to run on, HOST:PORT or auto (the one `ray start` started here) "
                   "[default: a local cluster for this run].")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray, local cluster: the CPUs it offers [default: this machine's].")
@click.option("--job-resources", multiple=True, metavar="KIND:NAME=VALUE[,...]",
              help="Ray: override what one job of KIND reserves (num_cpus, num_gpus, memory), e.g. "
                   "cell:num_gpus=0.25,memory=2GiB; repeatable.")
def run(
    matrix_path: Path,
    db: Path,
    artifacts: str,
    data_dir: str | None,
    download: bool,
    force: bool,
    device: str,
    quiet: bool,
    threads: int | None,
    executor_name: str,
    address: str | None,
    workers: int | None,
    job_resources: tuple[str, ...],
) -> None:
    """Run every job of a matrix that is not already complete, then print its cells.

    A failed job does not stop the jobs that do not depend on it; failed and blocked jobs are listed at the
    end and the exit status is 1 (a rerun retries just those).
    """
    from bench.artifacts import ArtifactStore
    from bench.jobs.env import Env
    from bench.plan import plan_matrix
    from bench.report.summary import blocked_lines, failed_lines, print_run_summary
    from bench.storage import Store
    from bench.validate import load_valid_matrix

    if threads is not None:
        torch.set_num_threads(threads)
    executor = make_executor(executor_name, not quiet, address, workers, job_resources)
    root = data_root(data_dir)
    matrix = load_valid_matrix(matrix_path, root)
    dev = resolve_device(device)
    env = Env(root, download, ArtifactStore(artifacts), JobContext(device=dev, show_progress=not quiet))
    planned = plan_matrix(matrix, matrix_path.parent, env)
    store = Store(db)
    for gone in store.mark_interrupted():
        click.echo(f"run {gone.id} (matrix {gone.matrix_name!r}) was {gone.error}")
    run_id = store.start_run(
        matrix_name=matrix.name,
        matrix_path=str(matrix_path),
        matrix_sha256=hashlib.sha256(matrix_path.read_bytes()).hexdigest(),
        matrix=matrix.model_dump(mode="json"),
        git_commit=git_describe(),
        versions=package_versions(),
        device=describe_device(dev),
    )
    n_jobs = len(planned.graph)
    click.echo(f"run {run_id}: matrix {matrix.name!r}, {n_jobs} jobs, store {db}")
    try:
        summary = executor.run(planned.graph, store, env, run_id, force)
    except BenchError as exc:
        store.finish_run(run_id, "failed", str(exc))
        raise
    except KeyboardInterrupt:
        store.finish_run(run_id, "interrupted", "interrupted by the user")
        raise
    except Exception as exc:
        store.finish_run(run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    failed = failed_lines(planned.graph, summary.failed)
    counts = f"ran {len(summary.ran)} jobs, {len(summary.skipped)} already complete"
    if failed:
        counts += f", {len(summary.failed)} failed, {len(summary.blocked)} blocked by them"
        store.finish_run(run_id, "failed", "\n".join([*failed, counts]))
    else:
        store.finish_run(run_id, "done")
    click.echo(counts)
    print_run_summary(store, run_id)
    if failed:
        click.secho("\nfailed jobs (a rerun retries them and the jobs they blocked):", fg="red", err=True)
        for line in [*failed, *blocked_lines(planned.graph, summary.blocked)]:
            click.echo(f"  {line}", err=True)
        click.get_current_context().exit(1)


@main.command()
@click.option("--db", default=DEFAULT_DB, show_default=True, type=click.Path(path_type=Path))
@click.option("--out", default="reports", show_default=True, type=click.Path(path_type=Path))
@click.option(
    "--artifacts",
    default=DEFAULT_ARTIFACTS,
    show_default=True,
    help="The run's artifact folder or fsspec URL, for the pictures of what each front-end does to a few "
    "test images.",
)
@click.option("--data-dir", default=None, help="Data root (default: $BENCH_DATA_DIR, else ./data).")
def report(db: Path, out: Path, artifacts: str, data_dir: str | None) -> None:
    """Render the HTML leaderboard and transferability tables (self-contained, works offline).

    Exit status: 0 written; 2 bad input (a missing, foreign or unreadable store; an --out that is a file,
    cannot be created or written, or holds HTML pages the report did not write).
    """
    from bench.report.render import render_site
    from bench.storage import Store

    store = Store.open_readonly(db)  # a report never writes: a foreign or archived store stays as it is
    for shown in store.runs():
        if shown.status == "interrupted":
            click.echo(f"run {shown.id} (matrix {shown.matrix_name!r}): {shown.error}")
    check_report_folder(out)
    try:
        index = render_site(store, out, artifacts, Path(data_dir) if data_dir else None)
    except OSError as exc:
        raise BenchError(f"cannot write the report to {out}: {exc.strerror or exc} ({exc.filename})") from exc
    click.echo(f"wrote {index}")


#: How the title of every page the report writes (of every version) ends, so it overwrites its own pages
#: and no one else's.
REPORT_MARK = " · Frontline</title>"


def check_report_folder(out: Path) -> None:
    """Refuses an ``--out`` the report cannot write, before any page is rendered: a file, a folder that
    cannot be created or is read-only, or one holding web pages the report did not write (``--out .`` in a
    site's folder would replace its ``index.html``)."""
    if out.exists() and not out.is_dir():
        raise BenchError(f"--out {out} is a file; the report is a folder of pages, so give a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BenchError(f"cannot create the report folder {out}: {exc.strerror or exc}") from exc
    if not os.access(out, os.W_OK | os.X_OK):
        raise BenchError(f"cannot write the report to {out}: the folder is read-only")
    for page in sorted(out.glob("*.html")):
        try:
            ours = REPORT_MARK in page.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise BenchError(f"cannot read {page} in the report folder: {exc.strerror or exc}") from exc
        if not ours:
            raise BenchError(
                f"--out {out} holds {page.name}, which the report did not write and would replace; give an "
                "empty folder or one the report wrote before"
            )


@main.command("list")
@click.argument("what", type=click.Choice(["classifiers", "defenses", "attacks", "datasets"]))
def list_(what: str) -> None:
    """List registered classifiers, defenses, attacks or datasets with a one-line description."""
    from bench.api import ATTACKS
    from bench.api.classifier import CLASSIFIERS
    from bench.api.datasets import DATASETS
    from bench.api.defense import DEFENSES

    load_plugins()
    listings = {
        "classifiers": lambda: [(e.name, e.description) for e in CLASSIFIERS],
        "defenses": lambda: [(e.name, e.description) for e in DEFENSES],
        "attacks": lambda: [(e.name, e.description) for e in ATTACKS],
        "datasets": lambda: [(e.name, e.description) for e in DATASETS],
    }
    entries = listings[what]()
    width = max(len(name) for name, _ in entries)
    for name, description in entries:
        click.echo(f"{name.ljust(width)}  {description}")


def plan_only(matrix_path: Path, data_dir: str | None) -> tuple[MatrixConfig, Planned]:
    """The matrix and its job graph as ``bench run`` plans them, with nothing downloaded or written."""
    from bench.artifacts import ArtifactStore
    from bench.jobs.env import Env
    from bench.plan import plan_matrix
    from bench.validate import load_valid_matrix

    root = data_root(data_dir)
    matrix = load_valid_matrix(matrix_path, root)
    env = Env(root, False, ArtifactStore(Path(DEFAULT_ARTIFACTS)), JobContext(show_progress=False))
    return matrix, plan_matrix(matrix, matrix_path.parent, env)


@main.command()
@click.option("--matrix", "matrix_path", required=True, type=click.Path(path_type=Path))
@click.option("--data-dir", default=None)
def validate(matrix_path: Path, data_dir: str | None) -> None:
    """Check a matrix file without running anything: schema, names, datasets on disk, weights files.

    It plans the job graph as ``bench run`` would, so a matrix it accepts gets past every check ``run``
    makes before its first job.
    """
    matrix, planned = plan_only(matrix_path, data_dir)
    click.echo(f"{matrix_path}: ok ({len(matrix.experiments)} experiments, {len(planned.graph)} jobs)")


@main.command()
@click.option("--matrix", "matrix_path", required=True, type=click.Path(path_type=Path),
              help="Matrix YAML file.")
@click.option("--db", default=DEFAULT_DB, show_default=True, type=click.Path(path_type=Path),
              help="Results store to read; it is opened read-only.")
@click.option(
    "--artifacts",
    default=DEFAULT_ARTIFACTS,
    show_default=True,
    help="The runs' artifact folder or fsspec URL: a job whose files are gone from it is not done.",
)
@click.option("--data-dir", default=None, help="Data root (default: $BENCH_DATA_DIR, else ./data).")
@click.option("--all", "show_all", is_flag=True, help="List the done jobs too, with their wall time.")
def status(matrix_path: Path, db: Path, artifacts: str, data_dir: str | None, show_all: bool) -> None:
    """Show how far a matrix has got in a store, without running or writing anything: per job kind how many
    jobs are done, failed, running (leased by a live run) and pending, then each job not done. Done is what
    ``bench run`` would not compute again: a job recorded done whose artifacts are gone (or below one that is
    redone) is pending, and says so.

    Exit status: 0 every job done; 1 some are not; 2 bad input (a missing, foreign or newer-schema store, an
    invalid matrix).
    """
    from bench.artifacts import ArtifactStore
    from bench.status import read_status, render
    from bench.storage import Store

    store = Store.open_readonly(db)  # first, so a wrong --db is refused before the matrix is planned
    matrix, planned = plan_only(matrix_path, data_dir)
    shown = read_status(store, matrix.name, planned.graph, ArtifactStore(artifacts))
    click.echo("\n".join(render(shown, show_all)))
    if not shown.complete:
        click.get_current_context().exit(1)


@main.command()
@click.option("--format", "fmt", required=True, type=click.Choice(["csv", "json", "parquet"]))
@click.option("--db", default=DEFAULT_DB, show_default=True, type=click.Path(path_type=Path),
              help="Results store to read; it is opened read-only.")
@click.option("--out", default=None, type=click.Path(path_type=Path),
              help="File to write [default: results.FORMAT].")
@click.option("--run", "run_id", type=int, default=None, help="Only this run.")
@click.option("--matrix", "matrix_name", default=None, help="Only the latest run of this matrix.")
def export(fmt: str, db: Path, out: Path | None, run_id: int | None, matrix_name: str | None) -> None:
    """Write one row per result with its provenance: run, matrix, commit, job key, labels, n, interval, scale.

    Exit status: 0 written; 2 bad input (a missing, empty or foreign store, one with a newer schema than this
    code, no such run, an unwritable path, parquet without pyarrow).
    """
    from bench.export import Format, write_rows
    from bench.results_table import read_rows

    frame = read_rows(db, run=run_id, matrix=matrix_name, latest=matrix_name is not None)
    target = out or Path(f"results.{fmt}")
    write_rows(frame, cast(Format, fmt), target)
    runs = ", ".join(str(r) for r in sorted(set(frame["run_id"])))
    click.echo(f"wrote {len(frame)} rows of run(s) {runs} to {target}")


@main.command()
@click.option("--db", required=True, type=click.Path(path_type=Path),
              help="Store (or JSON export) holding the run to check; it is opened read-only.")
@click.option("--run", "run_id", type=int, default=None, help="The run to check [default: the latest].")
@click.option("--matrix", "matrix_name", default=None, help="Check the latest run of this matrix.")
@click.option("--baseline", default=DEFAULT_DB, show_default=True, type=click.Path(path_type=Path),
              help="Reference rows: a results store or a `bench export --format json` file; never written.")
@click.option("--baseline-run", type=int, default=None,
              help="Reference run [default: the baseline's latest run of the checked run's matrix].")
@click.option("--level", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05,
              show_default=True, help="Significance level, after the correction across rows.")
@click.option("--correction", type=click.Choice(CORRECTIONS), default="holm", show_default=True,
              help="Multiple-comparison correction across the compared rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def check(
    db: Path,
    run_id: int | None,
    matrix_name: str | None,
    baseline: Path,
    baseline_run: int | None,
    level: float,
    correction: str,
    as_json: bool,
) -> None:
    """Compare a run's rows with reference rows; fail when accuracy dropped, or robust accuracy rose, beyond
    chance.

    Exit status: 0 ok; 1 regression; 2 bad input; 3 no overlap with the reference; 4 nothing regressed but
    reference rows drifted (another config at the same place) or are missing from the run.
    """
    import json

    from bench.regression import render
    from bench.regression.verdict import ExitCode
    from bench.regression.verdict import check as compare
    from bench.results_table import NoRunError, read_rows

    if db.exists() and baseline.exists() and db.samefile(baseline):
        raise BenchError(
            f"--db and --baseline are the same file ({db}): run the matrix into another store "
            "(`bench run --db ...`) so that the reference rows stay as they are"
        )
    current = read_rows(db, run=run_id, matrix=matrix_name, latest=True)
    try:
        reference = read_rows(
            baseline,
            run=baseline_run,
            matrix=None if baseline_run is not None else str(current["matrix"].iloc[0]),
            latest=True,
        )
    except NoRunError as exc:
        if baseline_run is not None:
            raise
        click.secho(f"no overlap: {exc}", fg="red", err=True)
        click.get_current_context().exit(int(ExitCode.NO_OVERLAP))
    outcome = compare(current, reference, level, correction)
    if as_json:
        click.echo(json.dumps(render.as_json(outcome, str(db), str(baseline)), indent=2))
    else:
        click.echo("\n".join(render.text(outcome, str(db), str(baseline))))
    click.get_current_context().exit(int(outcome.exit_code))
