"""The Ray executor gives the local executor's rows, reports failures as it does, survives dead workers,
and shares a store with other runs through the same per-job leases.

The matrix test runs ``bench run --executor ray --workers 2`` as a user types it: a local cluster of 2 CPUs
is started for the run and shut down after it. The other tests share one cluster whose workers run the
scripted job below in place of classifier training (a worker process cannot see a monkeypatch made here),
so a job can fail, kill its worker, fill the disk or watch its lease on cue. These are the module's only
two cluster starts.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import fsspec
import pytest
import ray
import yaml
from click.testing import CliRunner

from bench.api import JobContext
from bench.artifacts import ArtifactStorageError, ArtifactStore, StoredArtifact
from bench.cli import main
from bench.errors import BenchError, EvaluationError
from bench.executor import Executor, LocalExecutor, RunSummary, record_outcome, run_job
from bench.jobs import RUNNERS
from bench.jobs.configs import JobConfig, JobKind
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobGraph, JobSpec
from bench.jobs.upstream import Upstream
from bench.ray_executor import RayExecutor
from bench.storage import Store
from bench.storage.store import LEASE_S, Claim
from tests.e2e.tiny import bench_run

pytestmark = pytest.mark.usefixtures("one_thread")

MATRIX: dict[str, Any] = {
    "name": "ray-vs-local",
    "scale": "reduced for tests: 500 training images, 1 epoch, 32 evaluation images",
    "classifiers": {"C": {"arch": "mnist-c", "dataset": "mnist", "train": {"epochs": 1, "n_train": 500}}},
    "defenses": {
        "aaa": {"kind": "aaa", "n_train": 128, "params": {"epochs": 1, "width": 4, "attack_steps": 1}},
        "bits": {"kind": "bit-depth", "params": {"bits": 1}},
        "none": {"kind": "none"},
    },
    "threats": {"linf": {"norm": "linf", "epsilons": [0.3]}},
    "attacks": {"pgd": {"kind": "pgd", "params": {"steps": 3}}, "fgsm": {"kind": "fgsm"}},
    "evaluation": {"n_eval": 32, "batch_size": 32, "checks": False},
    "experiments": [{"kind": "native", "defenses": ["aaa", "bits", "none"], "guides": ["C"]}],
}

REPO = Path(__file__).resolve().parents[2]
#: Every column of a result but its row id, run, time of writing and wall time.
RESULT_COLUMNS = (
    "job_key, dataset, defense, defense_kind, guides, target, relation, norm, epsilon, attack, metric, n, "
    "successes, value, ci_low, ci_high, n_forward, n_backward, scale"
)
#: Artifacts that hold weights; the others record wall times beside their outcomes.
WEIGHTS = "name in ('model', 'frontend')"


def table(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute(sql).fetchall(), key=repr)


def test_a_matrix_on_two_ray_workers_gives_the_local_rows(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    local = bench_run(path, tmp_path / "local.db", tmp_path / "la", data_dir, catch_exceptions=False)
    assert local.exit_code == 0, local.output
    on_ray = bench_run(
        path, tmp_path / "ray.db", tmp_path / "ra", data_dir, "--executor", "ray", "--workers", "2",
        catch_exceptions=False,
    )
    assert on_ray.exit_code == 0, on_ray.output
    assert not ray.is_initialized(), "the run's local cluster is shut down after it"
    assert "ran 13 jobs, 0 already complete" in on_ray.output
    queries = [
        f"select {RESULT_COLUMNS} from results",
        'select job_key, "check", passed, detail from flags',
        "select key, kind, label, status, config from jobs",
        f"select job_key, name, sha256 from artifacts where {WEIGHTS}",
        "select job_key, skipped from run_jobs",
    ]
    for sql in queries:
        rows = table(tmp_path / "ray.db", sql)
        assert rows and rows == table(tmp_path / "local.db", sql), sql
    assert len(table(tmp_path / "ray.db", "select id from results")) == 18  # 3 cells x 2 attacks + worst x 2


class Scripted(JobConfig):
    """Test-only: a job that succeeds, raises, kills its worker while ``crash_marker`` does not exist, finds
    the artifact root full, or watches its lease in the store at ``watch_lease`` for ``watch_s`` seconds."""

    job_kind: ClassVar[JobKind] = "train-classifier"
    name: str
    fail: bool = False
    crash_marker: str | None = None
    disk_full: bool = False
    watch_lease: str | None = None
    watch_s: float = 0.0


def lease_expiry(db: str, key: str) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("select expires_at from leases where job_key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def scripted(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
    s = spec.settings_as(Scripted)
    if s.crash_marker is not None and not Path(s.crash_marker).exists():
        Path(s.crash_marker).touch()
        os._exit(1)  # as the OOM killer or a preempted node would end the worker
    if s.fail:
        raise EvaluationError(f"{s.name} cannot be evaluated\nsecond line")
    if s.disk_full:
        raise ArtifactStorageError(env.artifacts.folder(spec.key), OSError(errno.ENOSPC, "No space left"))
    flags = [{"check": "ran", "passed": True, "detail": f"in process {os.getpid()}"}]
    if s.watch_lease is not None:
        first = lease_expiry(s.watch_lease, spec.key)
        time.sleep(s.watch_s)
        last = lease_expiry(s.watch_lease, spec.key)
        renewed = first is not None and last is not None and last > first
        flags.append({"check": "lease renewed", "passed": renewed, "detail": f"{first} -> {last}"})
    return JobOutput(json={"card": {"label": spec.label}}, flags=flags)


def use_scripted_jobs() -> None:
    """Ray's worker setup hook: every worker of the shared cluster runs :func:`scripted` jobs."""
    RUNNERS["train-classifier"] = scripted


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level=logging.ERROR,
        runtime_env={
            "worker_process_setup_hook": f"{__name__}.use_scripted_jobs",
            # This checkout first: a dependency installs a top-level ``tests`` package of its own.
            "env_vars": {"PYTHONPATH": str(REPO)},
        },
    )
    yield
    ray.shutdown()


def diamond(tmp: Path, **settings: dict[str, Any]) -> tuple[JobGraph, dict[str, JobSpec]]:
    """``bad`` -> ``mid`` -> ``top`` <- ``ok``, and ``alone`` on its own; ``settings`` per job name."""
    graph = JobGraph()
    specs: dict[str, JobSpec] = {}
    for name, deps in (("bad", ()), ("ok", ()), ("mid", ("bad",)), ("top", ("mid", "ok")), ("alone", ())):
        config = Scripted(name=name, **settings.get(name, {}))
        specs[name] = graph.add(JobSpec(label=name, settings=config, deps=tuple(specs[d].key for d in deps)))
    return graph, specs


def start_run(store: Store) -> int:
    return store.start_run(
        matrix_name="m", matrix_path="m.yaml", matrix_sha256="0" * 64, matrix={}, git_commit=None,
        versions={}, device="cpu",
    )


def tmp_env(tmp: Path) -> Env:
    return Env(tmp, False, ArtifactStore(tmp / "a"), JobContext(show_progress=False))


def execute(tmp: Path, graph: JobGraph, executor: Executor) -> tuple[Store, RunSummary]:
    store = Store(tmp / "r.db")
    run_id = start_run(store)
    return store, executor.run(graph, store, tmp_env(tmp), run_id, force=False)


@pytest.mark.usefixtures("cluster")
def test_a_failed_job_is_reported_as_the_local_executor_reports_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(RUNNERS, "train-classifier", scripted)
    settings = {"bad": {"fail": True}}
    outcomes = []
    for name, executor in (("local", LocalExecutor(show_progress=False)), ("ray", RayExecutor(False))):
        (tmp_path / name).mkdir()
        store, summary = execute(tmp_path / name, diamond(tmp_path, **settings)[0], executor)
        jobs = sorted((j.label, j.status, (j.error or "").splitlines()[:1]) for j in store.jobs())
        outcomes.append((summary, jobs))
    assert outcomes[0] == outcomes[1]
    summary, jobs = outcomes[1]
    s = diamond(tmp_path, **settings)[1]
    assert summary.failed == {s["bad"].key: "bad cannot be evaluated"}
    assert summary.blocked == {s["mid"].key: [s["bad"].key], s["top"].key: [s["bad"].key]}
    assert summary.ran == [s["ok"].key, s["alone"].key]


@pytest.mark.usefixtures("cluster")
def test_a_killed_worker_is_retried_and_its_job_recorded_once(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    graph, s = diamond(tmp_path, ok={"crash_marker": str(marker)})
    store, summary = execute(tmp_path, graph, RayExecutor(False))
    assert marker.exists(), "the first attempt killed its worker"
    assert summary.failed == {} and summary.blocked == {}
    assert summary.ran == [s[n].key for n in ("bad", "ok", "mid", "top", "alone")]
    assert len(store.flags_for([s["ok"].key])) == 1
    assert {j.label: j.status for j in store.jobs()}["ok"] == "done"


@pytest.mark.usefixtures("cluster")
def test_a_worker_dying_past_its_retries_fails_its_job_and_blocks_what_follows(tmp_path: Path) -> None:
    graph, s = diamond(tmp_path, ok={"crash_marker": str(tmp_path / "crashed")})
    store, summary = execute(tmp_path, graph, RayExecutor(False, max_retries=0))
    assert list(summary.failed) == [s["ok"].key]
    assert "after 0 retries" in summary.failed[s["ok"].key]
    assert summary.blocked == {s["top"].key: [s["ok"].key]}
    assert {j.label: j.status for j in store.jobs()}["ok"] == "failed"


def test_ray_options_are_refused_for_the_local_executor(tmp_path: Path, data_dir: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(MATRIX))
    result = bench_run(path, tmp_path / "r.db", tmp_path / "a", data_dir, "--address", "auto")
    assert result.exit_code == 2
    assert "--address: only --executor ray takes them" in result.output
    assert not (tmp_path / "r.db").exists(), "refused before the run was recorded"


def test_an_address_and_a_local_size_together_are_refused() -> None:
    with pytest.raises(BenchError, match="--workers sizes the local cluster"):
        RayExecutor(address="auto", num_cpus=2)


@pytest.mark.usefixtures("cluster")
def test_a_job_another_run_holds_is_left_to_it_and_its_outcome_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(RUNNERS, "train-classifier", scripted)  # the other run computes in this process
    graph, s = diamond(tmp_path)
    ok = s["ok"]
    store, other_store = Store(tmp_path / "r.db"), Store(tmp_path / "r.db")
    other = start_run(other_store)
    assert other_store.take_lease(other, ok.key).taken
    run_id = start_run(store)
    refused = threading.Event()
    take = store.take_lease

    def watched(run: int, key: str, seconds: float = LEASE_S) -> Claim:
        claim = take(run, key, seconds)
        if key == ok.key and not claim.taken:
            refused.set()
        return claim

    monkeypatch.setattr(store, "take_lease", watched)

    def other_run_finishes_ok() -> None:
        assert refused.wait(120), "the Ray run never asked for the held job"
        env = tmp_env(tmp_path)
        nothing: dict[str, dict[str, StoredArtifact]] = {}  # ok has no upstream jobs
        outcome = run_job(ok, Upstream(graph, env, nothing.__getitem__), env, False, False)
        record_outcome(other_store, other, ok, graph, env, outcome)

    elsewhere = threading.Thread(target=other_run_finishes_ok)
    elsewhere.start()
    summary = RayExecutor(False, poll_s=0.05).run(graph, store, tmp_env(tmp_path), run_id, force=False)
    elsewhere.join()
    assert refused.is_set()
    assert summary.skipped == [ok.key], "finished by the other run meanwhile, so not computed again"
    assert summary.ran == [s[n].key for n in ("bad", "mid", "alone", "top")], "top waited for ok"
    assert [f.detail for f in store.flags_for([ok.key])] == [f"in process {os.getpid()}"]
    assert table(tmp_path / "r.db", "select job_key from leases") == []


@pytest.mark.usefixtures("cluster")
def test_the_driver_renews_the_lease_of_a_running_job(tmp_path: Path) -> None:
    graph, s = diamond(tmp_path, alone={"watch_lease": str(tmp_path / "r.db"), "watch_s": 0.6})
    store, summary = execute(tmp_path, graph, RayExecutor(False, heartbeat_s=0.1))
    assert s["alone"].key in summary.ran
    watched = [f for f in store.flags_for([s["alone"].key]) if f.check == "lease renewed"]
    assert len(watched) == 1 and watched[0].passed, watched[0].detail


@pytest.mark.usefixtures("cluster")
def test_a_full_artifact_root_stops_the_run_with_the_local_executors_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(RUNNERS, "train-classifier", scripted)
    messages = []
    for name, executor in (("local", LocalExecutor(show_progress=False)), ("ray", RayExecutor(False))):
        graph, s = diamond(tmp_path / name, alone={"disk_full": True})
        (tmp_path / name).mkdir()
        with pytest.raises(ArtifactStorageError) as caught:
            execute(tmp_path / name, graph, executor)
        messages.append(str(caught.value).replace(str(tmp_path / name), "<tmp>"))
        recorded = {j.label for j in Store(tmp_path / name / "r.db").jobs()}
        assert "alone" not in recorded
    assert messages[0] == messages[1]
    assert "No space left; free some space there and rerun" in messages[1]


def test_an_fsspec_url_artifact_root_is_used_as_given(
    tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    matrix = {
        **MATRIX,
        "defenses": {"bits": {"kind": "bit-depth", "params": {"bits": 1}}, "none": {"kind": "none"}},
        "attacks": {"fgsm": {"kind": "fgsm"}},
        "experiments": [{"kind": "native", "defenses": ["bits", "none"], "guides": ["C"]}],
    }
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(matrix))
    root = f"memory://{tmp_path.name}/artifacts"
    args = ["--matrix", "m.yaml", "--db", "r.db", "--artifacts", root, "--data-dir", str(data_dir), "--quiet"]
    runs = [CliRunner().invoke(main, ["run", *args], catch_exceptions=False) for _ in range(2)]
    assert [r.exit_code for r in runs] == [0, 0], runs[0].output + runs[1].output
    assert "ran 7 jobs, 0 already complete" in runs[0].output
    assert "ran 0 jobs, 7 already complete" in runs[1].output, "the second run read the first's artifacts"
    written = set(fsspec.filesystem("memory").find(f"/{tmp_path.name}/artifacts"))
    paths = table(tmp_path / "r.db", "select path from artifacts")
    recorded = {f"/{tmp_path.name}/artifacts/{p}" for (p,) in paths}
    assert recorded and written == recorded, "every artifact there, and nothing else (no .tmp, no probe)"
    shown = CliRunner().invoke(main, ["report", "--db", "r.db", "--out", "site", "--artifacts", root])
    assert shown.exit_code == 0, shown.output
    assert not [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "site"], "nothing written here"
