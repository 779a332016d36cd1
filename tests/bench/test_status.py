"""``bench status`` tells, from the plan and the store alone, which of a matrix's jobs are done, failed,
running (leased by a live run) or pending, and never writes to the store."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result
from sqlalchemy import update

from bench.api import JobContext
from bench.artifacts import ArtifactStore, StoredArtifact
from bench.cli import main
from bench.jobs.env import Env
from bench.jobs.spec import JobGraph, JobSpec
from bench.plan import plan_matrix
from bench.status import MatrixStatus, read_status, render
from bench.storage import JobRecord, Store
from bench.storage.models import Lease, Run
from bench.validate import load_valid_matrix

MATRIX = {
    "name": "st",
    "classifiers": {"A": {"arch": "mnist-a", "dataset": "mnist", "train": {"epochs": 1, "n_train": 100}}},
    "defenses": {"none": {"kind": "none"}, "aaa": {"kind": "aaa", "n_train": 50}},
    "threats": {"linf": {"norm": "linf", "epsilons": [0.1]}},
    "attacks": {"fgsm": {"kind": "fgsm"}},
    "evaluation": {"n_eval": 20},
    "experiments": [{"kind": "native", "defenses": ["none", "aaa"], "guides": ["A"]}],
}
#: Above the default pid_max, so no process has it: a run that recorded it is dead.
DEAD_PID = 2**22 + 12345


@pytest.fixture(scope="module")
def matrix_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("matrix") / "st.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    return path


@pytest.fixture(scope="module")
def graph(matrix_file: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> JobGraph:
    matrix = load_valid_matrix(matrix_file, data_dir)
    env = Env(data_dir, False, ArtifactStore(tmp_path_factory.mktemp("art")), JobContext(show_progress=False))
    return plan_matrix(matrix, matrix_file.parent, env).graph


@pytest.fixture(scope="module")
def jobs(graph: JobGraph) -> dict[str, JobSpec]:
    """The planned jobs by label: a classifier, the two front-ends, and an attack and a cell for each."""
    by_label = {spec.label: spec for spec in graph}
    assert len(by_label) == len(graph) == 7
    return by_label


def find(jobs: dict[str, JobSpec], kind: str, defense: str) -> JobSpec:
    (spec,) = [s for s in jobs.values() if s.kind == kind and defense in s.label]
    return spec


def start(store: Store, name: str = "st") -> int:
    return store.start_run(
        matrix_name=name, matrix_path="st.yaml", matrix_sha256="0" * 64, matrix={}, git_commit=None,
        versions={}, device="cpu",
    )


def done(store: Store, run: int, spec: JobSpec, artifacts: Sequence[StoredArtifact] = ()) -> None:
    at = datetime(2026, 1, 1, 12)
    record = JobRecord(
        key=spec.key, kind=spec.kind, label=spec.label, config=spec.config, started_at=at,
        ended_at=datetime(2026, 1, 1, 12, 0, 3), metrics={}, artifacts=list(artifacts), results=[], flags=[],
    )
    store.record_job(run, record, [])


def failed(store: Store, run: int, spec: JobSpec) -> None:
    error = "ValueError: boom\nTraceback (most recent call last):\n  ..."
    store.record_failure(run, spec.key, spec.kind, spec.label, spec.config, datetime(2026, 1, 1), error)


def status_of(store: Store, graph: JobGraph, tmp_path: Path) -> MatrixStatus:
    return read_status(store, "st", graph, ArtifactStore(tmp_path / "art"))


def kill(store: Store, run: int) -> None:
    """Make ``run`` one whose process is gone, as a run killed without finishing leaves it."""
    with store.session() as s:
        s.execute(update(Run).where(Run.id == run).values(pid=DEAD_PID))


def mixed_store(path: Path, jobs: dict[str, JobSpec]) -> tuple[int, int]:
    """A store where the none branch is done but its cell failed, aaa's front-end is being trained by a
    live run, and aaa's attack is leased by a run that died; returns (live run, dead run)."""
    store = Store(path)
    live, dead = start(store), start(store)
    done(store, live, find(jobs, "train-classifier", "A"))
    done(store, live, find(jobs, "train-defense", "none"))
    done(store, live, find(jobs, "attack", "none"))
    failed(store, live, find(jobs, "cell", "none"))
    assert store.take_lease(live, find(jobs, "train-defense", "aaa").key).taken
    assert store.take_lease(dead, find(jobs, "attack", "aaa").key).taken
    kill(store, dead)
    store.engine.dispose()
    return live, dead


def test_each_job_is_done_failed_running_or_pending(
    tmp_path: Path, graph: JobGraph, jobs: dict[str, JobSpec]
) -> None:
    live, dead = mixed_store(tmp_path / "r.db", jobs)
    status = status_of(Store.open_readonly(tmp_path / "r.db"), graph, tmp_path)
    assert status.counts() == {
        "train-classifier": {"running": 0, "failed": 0, "pending": 0, "done": 1},
        "train-defense": {"running": 1, "failed": 0, "pending": 0, "done": 1},
        "attack": {"running": 0, "failed": 0, "pending": 1, "done": 1},
        "cell": {"running": 0, "failed": 1, "pending": 1, "done": 0},
    }
    by_key = {j.key: j for j in status.jobs}
    training = by_key[find(jobs, "train-defense", "aaa").key]
    assert training.state == "running" and training.holder == live and training.lease_until is not None
    assert by_key[find(jobs, "attack", "aaa").key].state == "pending", "a dead run's lease holds nothing"
    assert by_key[find(jobs, "cell", "none").key].error == "ValueError: boom"
    assert by_key[find(jobs, "attack", "none").key].wall_s == 3.0
    assert [r.id for r in status.runs] == [live], "the dead run is not running now"
    assert not status.complete and status.done == 3


def test_the_lines_name_the_holder_the_error_and_the_runs_at_work(
    tmp_path: Path, graph: JobGraph, jobs: dict[str, JobSpec]
) -> None:
    live, _ = mixed_store(tmp_path / "r.db", jobs)
    with Store(tmp_path / "r.db").session() as s:
        s.execute(update(Lease).where(Lease.run_id == live).values(taken_at=datetime(2026, 1, 1, 12)))
    status = status_of(Store.open_readonly(tmp_path / "r.db"), graph, tmp_path)
    lines = render(status, now=datetime(2026, 1, 1, 13, 5, 9))
    assert lines[1].split() == ["train-defense", "1", "done", "0", "failed", "1", "running", "0", "pending"]
    listed = [line.split()[0] for line in lines[5:-2]]
    assert listed == ["running", "failed", "pending", "pending"], "needing attention first, done left out"
    assert f"run {live} for 1 h 05 min, lease until " in lines[5] and "front-end aaa" in lines[5]
    assert lines[6].endswith("  ValueError: boom") and "Traceback" not in "\n".join(lines)
    assert lines[-1].startswith(f"3/7 jobs done; running now: run {live} (pid ")
    assert "run 2" not in lines[-1]
    everything = render(status, show_done=True, now=datetime(2026, 1, 1, 13, 5, 9))
    assert len(everything) == len(lines) + 3 and any(line.endswith("  3.0 s") for line in everything)


def test_a_failed_job_a_live_run_retries_is_running(
    tmp_path: Path, graph: JobGraph, jobs: dict[str, JobSpec]
) -> None:
    store = Store(tmp_path / "r.db")
    first, retry = start(store), start(store, name="other matrix")
    attack = find(jobs, "attack", "none")
    failed(store, first, attack)
    store.finish_run(first, "failed")
    assert store.take_lease(retry, attack.key).taken
    status = status_of(store, graph, tmp_path)
    (job,) = [j for j in status.jobs if j.key == attack.key]
    assert job.state == "running" and job.holder == retry
    assert [r.id for r in status.runs] == [retry], "a run of another matrix at work on one of its jobs"


def test_a_job_done_without_its_artifacts_is_pending_only_while_a_job_to_run_reads_them(
    tmp_path: Path, graph: JobGraph, jobs: dict[str, JobSpec], matrix_file: Path, data_dir: Path
) -> None:
    """What ``bench run`` would compute again is not done, though the store recorded it so: a run whose
    artifact folder was lost retrains the classifier because jobs still to run read it, while the rows
    computed through it stand (the run keeps them if the classifier comes out the same). Once nothing left
    to run reads it, lost files are no reason to compute anything again."""
    weights = tmp_path / "art" / "cls" / "model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"weights")
    stored = StoredArtifact("model", "cls/model.safetensors", hashlib.sha256(b"weights").hexdigest(), 7)
    store = Store(tmp_path / "r.db")
    run = start(store)
    classifier = find(jobs, "train-classifier", "A")
    kept = [find(jobs, "train-defense", "none"), find(jobs, "attack", "none")]
    done(store, run, classifier, [stored])
    for spec in kept:
        done(store, run, spec)
    store.finish_run(run, "done")
    assert status_of(store, graph, tmp_path).done == 3

    weights.unlink()
    status = status_of(store, graph, tmp_path)
    redo = {j.label: j.redo for j in status.jobs if j.redo is not None}
    assert list(redo) == [classifier.label]
    assert redo[classifier.label].startswith("its artifacts are missing or damaged, and '")
    assert redo[classifier.label].endswith("' reads them")
    assert {j.label for j in status.jobs if j.state == "done"} == {spec.label for spec in kept}
    result = status_cli(matrix_file, tmp_path / "r.db", data_dir, "--artifacts", str(tmp_path / "art"))
    assert result.exit_code == 1, result.output
    assert "recorded done, but its artifacts are missing or damaged, and " in result.output

    rerun = start(store)
    assert store.take_lease(rerun, classifier.key).taken
    (training,) = [j for j in status_of(store, graph, tmp_path).jobs if j.key == classifier.key]
    assert training.state == "running" and training.holder == rerun, "being computed again"

    store.release_lease(rerun, classifier.key)
    for spec in jobs.values():
        if spec.key != classifier.key and spec not in kept:
            done(store, rerun, spec)
    status = status_of(store, graph, tmp_path)
    assert status.done == 7, "nothing left to run reads the lost weights"
    assert [j.label for j in status.jobs if j.files_gone] == [classifier.label] and status.files_gone == 1
    lines = render(status, show_done=True)
    (shown,) = [line for line in lines if classifier.label in line]
    assert shown.startswith("done ") and shown.endswith(
        "3.0 s, its files are gone: computed again if a job to run reads them"
    )
    assert lines[-1].startswith("7/7 jobs done (1 of them without their files); ")


def status_cli(matrix: Path, db: Path, data_dir: Path, *more: str) -> Result:
    args = ["status", "--matrix", str(matrix), "--db", str(db), "--data-dir", str(data_dir), *more]
    return CliRunner().invoke(main, args)


def test_the_command_exits_1_while_jobs_remain_and_writes_nothing(
    tmp_path: Path, jobs: dict[str, JobSpec], matrix_file: Path, data_dir: Path
) -> None:
    db = tmp_path / "r.db"
    mixed_store(db, jobs)
    before, mtime = db.read_bytes(), db.stat().st_mtime_ns
    assert not db.with_name("r.db-wal").exists()
    result = status_cli(matrix_file, db, data_dir)
    assert result.exit_code == 1, result.output
    assert "train-defense     1 done  0 failed  1 running  0 pending" in result.output
    assert "3/7 jobs done; running now: run 1 " in result.output
    assert db.read_bytes() == before and db.stat().st_mtime_ns == mtime
    wal = db.with_name("r.db-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "SQLite may make an empty log beside it, no more"


def test_the_command_exits_0_when_every_job_is_done(
    tmp_path: Path, jobs: dict[str, JobSpec], matrix_file: Path, data_dir: Path
) -> None:
    store = Store(tmp_path / "r.db")
    run = start(store)
    for spec in jobs.values():
        done(store, run, spec)
    store.finish_run(run, "done")
    result = status_cli(matrix_file, tmp_path / "r.db", data_dir, "--all")
    assert result.exit_code == 0, result.output
    assert result.output.count("\ndone ") == 7
    assert result.output.endswith("7/7 jobs done; no run of this matrix is running\n")


@pytest.mark.parametrize(
    ("content", "message"), [(None, "no results store at"), (b"not sqlite", "not an SQLite database")]
)
def test_a_missing_or_foreign_store_is_refused_with_exit_2(
    tmp_path: Path, matrix_file: Path, content: bytes | None, message: str
) -> None:
    db = tmp_path / "r.db"
    if content is not None:
        db.write_bytes(content)
    result = status_cli(matrix_file, db, tmp_path / "no data")
    assert result.exit_code == 2 and result.output.startswith("error: ") and message in result.output
