"""The executor keeps going past a failed job (as ``make -k``) and a rerun does only what is left."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import ClassVar

import pytest

from bench.api import JobContext
from bench.artifacts import ArtifactStore
from bench.errors import EvaluationError
from bench.executor import EXECUTORS, LocalExecutor, RunSummary
from bench.jobs import RUNNERS
from bench.jobs.configs import JobConfig, JobKind
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobGraph, JobSpec
from bench.jobs.upstream import Upstream
from bench.report.summary import blocked_lines, failed_lines
from bench.storage import Store
from tests.bench.storage.processes import finish, python, wait_for


class Named(JobConfig):
    """Test-only: a job identified by its name, run by the runner the ``broken`` fixture installs."""

    job_kind: ClassVar[JobKind] = "train-classifier"
    name: str


def diamond() -> tuple[JobGraph, dict[str, JobSpec]]:
    """``bad`` -> ``mid`` -> ``top`` <- ``ok``, and ``alone`` on its own."""
    graph = JobGraph()
    specs: dict[str, JobSpec] = {}
    for name, deps in (("bad", ()), ("ok", ()), ("mid", ("bad",)), ("top", ("mid", "ok")), ("alone", ())):
        spec = JobSpec(label=name, settings=Named(name=name), deps=tuple(specs[d].key for d in deps))
        specs[name] = graph.add(spec)
    return graph, specs


@pytest.fixture
def broken(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """Labels of the jobs that raise; the others return an empty output."""
    failing = {"bad"}

    def runner(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
        if spec.label in failing:
            raise EvaluationError(f"{spec.label} cannot be evaluated\nsecond line")
        return JobOutput(json={"card": {"label": spec.label}})

    monkeypatch.setitem(RUNNERS, "train-classifier", runner)
    return failing


def start_run(store: Store) -> int:
    return store.start_run(
        matrix_name="m", matrix_path="m.yaml", matrix_sha256="0" * 64, matrix={}, git_commit=None,
        versions={}, device="cpu",
    )


def execute(tmp: Path, graph: JobGraph) -> tuple[Store, int, RunSummary]:
    store = Store(tmp / "r.db")
    run_id = start_run(store)
    env = Env(tmp, False, ArtifactStore(tmp / "a"), JobContext(show_progress=False))
    return store, run_id, LocalExecutor(show_progress=False).run(graph, store, env, run_id, force=False)


def test_a_failed_job_blocks_only_what_depends_on_it(tmp_path: Path, broken: set[str]) -> None:
    graph, s = diamond()
    store, _, summary = execute(tmp_path, graph)
    assert summary.ran == [s["ok"].key, s["alone"].key]
    assert summary.failed == {s["bad"].key: "bad cannot be evaluated"}
    assert summary.blocked == {s["mid"].key: [s["bad"].key], s["top"].key: [s["bad"].key]}
    status = {j.label: j.status for j in store.jobs()}
    assert status == {"bad": "failed", "ok": "done", "alone": "done"}
    assert [j.error for j in store.jobs([s["bad"].key])][0].startswith("EvaluationError: bad cannot")


def test_a_job_below_two_failures_names_both(tmp_path: Path, broken: set[str]) -> None:
    broken.add("ok")
    graph, s = diamond()
    _, _, summary = execute(tmp_path, graph)
    assert summary.blocked[s["top"].key] == [s["bad"].key, s["ok"].key]
    assert summary.ran == [s["alone"].key]


def test_a_rerun_after_the_fix_runs_the_failed_and_blocked_jobs_only(
    tmp_path: Path, broken: set[str]
) -> None:
    graph, s = diamond()
    execute(tmp_path, graph)
    broken.clear()
    _, _, summary = execute(tmp_path, graph)
    assert summary.ran == [s["bad"].key, s["mid"].key, s["top"].key]
    assert summary.skipped == [s["ok"].key, s["alone"].key]
    assert not summary.failed and not summary.blocked


def test_a_bug_is_reported_with_its_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def runner(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
        raise KeyError("weights")

    monkeypatch.setitem(RUNNERS, "train-classifier", runner)
    graph, s = diamond()
    _, _, summary = execute(tmp_path, graph)
    assert summary.failed[s["bad"].key] == "KeyError: 'weights'"
    assert set(summary.failed) == {s["bad"].key, s["ok"].key, s["alone"].key}


def test_an_interrupt_is_not_a_job_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def runner(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
        raise KeyboardInterrupt

    monkeypatch.setitem(RUNNERS, "train-classifier", runner)
    with pytest.raises(KeyboardInterrupt):
        execute(tmp_path, diamond()[0])


def test_failure_listing_names_jobs_and_what_they_wait_on(tmp_path: Path, broken: set[str]) -> None:
    graph, s = diamond()
    _, _, summary = execute(tmp_path, graph)
    assert failed_lines(graph, summary.failed) == [
        f"failed   bad (train-classifier, key {s['bad'].key[:12]}): bad cannot be evaluated"
    ]
    blocked = ["blocked  mid: waits on bad", "blocked  top: waits on bad"]
    assert blocked_lines(graph, summary.blocked) == blocked


def test_the_local_executor_is_registered_by_name() -> None:
    assert isinstance(EXECUTORS["local"](show_progress=False), LocalExecutor)


#: Runs the diamond graph into a store shared with another process; each job logs that it ran and takes a
#: while, so the two runs overlap.
CONCURRENT = """
import json, sys, time
from pathlib import Path
from bench.api import JobContext
from bench.artifacts import ArtifactStore
from bench.executor import LocalExecutor
from bench.jobs import RUNNERS
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.storage import Store
from tests.bench.storage.test_store import row
from tests.bench.test_executor import diamond

root = Path(sys.argv[1])

def runner(spec, upstream, env):
    with (root / "calls.log").open("a") as f:
        f.write(spec.label + "\\n")
    time.sleep(1.0)
    return JobOutput(json={"card": {"label": spec.label}},
                     results=[row("robust_accuracy", 0.5).model_copy(update={"defense": spec.label})])

RUNNERS["train-classifier"] = runner
store = Store(root / "r.db")
run = store.start_run(matrix_name="m", matrix_path="m.yaml", matrix_sha256="0" * 64, matrix={},
                      git_commit=None, versions={}, device="cpu")
env = Env(root, False, ArtifactStore(root / "a"), JobContext(show_progress=False))
Path(sys.argv[2]).touch()
while not (root / "go").exists():
    time.sleep(0.005)
summary = LocalExecutor(show_progress=False, poll_s=0.1).run(diamond()[0], store, env, run, force=False)
store.finish_run(run, "done")
print(json.dumps({"ran": len(summary.ran), "skipped": len(summary.skipped)}))
"""


def rows(db: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT job_key, metric, value, defense FROM results ORDER BY job_key, metric"
        ).fetchall() + conn.execute("SELECT key, status FROM jobs ORDER BY key").fetchall() + conn.execute(
            "SELECT job_key, name, sha256 FROM artifacts ORDER BY job_key, name"
        ).fetchall()


def test_two_runs_on_one_store_compute_each_job_once_and_both_finish(tmp_path: Path) -> None:
    procs = [python(CONCURRENT, str(tmp_path), str(tmp_path / f"ready{i}")) for i in range(2)]
    for i, proc in enumerate(procs):
        wait_for(tmp_path / f"ready{i}", proc)
    (tmp_path / "go").touch()
    outcomes = [finish(p) for p in procs]
    assert [code for code, _ in outcomes] == [0, 0], [out for _, out in outcomes]
    calls = (tmp_path / "calls.log").read_text().split()
    assert sorted(calls) == sorted({"bad", "ok", "mid", "top", "alone"}), "every job ran once in all"
    counts = [json.loads(out.strip().splitlines()[-1]) for _, out in outcomes]
    assert sum(c["ran"] for c in counts) == 5 and all(c["ran"] + c["skipped"] == 5 for c in counts)
    single = tmp_path / "single"
    single.mkdir()
    (single / "go").touch()
    code, out = finish(python(CONCURRENT, str(single), str(single / "ready")))
    assert code == 0, out
    assert rows(tmp_path / "r.db") == rows(single / "r.db"), "the same rows as one run alone"


def test_a_long_job_renews_its_lease_and_heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[datetime, datetime | None]] = []

    def runner(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
        (lease,) = leases(tmp_path / "r.db")
        seen.append((lease, store.runs()[0].heartbeat_at))
        time.sleep(0.5)
        (renewed,) = leases(tmp_path / "r.db")
        seen.append((renewed, store.runs()[0].heartbeat_at))
        return JobOutput()

    monkeypatch.setitem(RUNNERS, "train-classifier", runner)
    store = Store(tmp_path / "r.db")
    run_id = start_run(store)
    graph = JobGraph()
    graph.add(JobSpec(label="long", settings=Named(name="long"), deps=()))
    env = Env(tmp_path, False, ArtifactStore(tmp_path / "a"), JobContext(show_progress=False))
    LocalExecutor(show_progress=False, heartbeat_s=0.1, lease_s=5.0).run(graph, store, env, run_id, False)
    (first, beat), (later, later_beat) = seen
    assert later > first and beat is not None and later_beat is not None and later_beat > beat
    assert leases(tmp_path / "r.db") == [], "recording the job let its lease go"


def leases(db: Path) -> list[datetime]:
    with sqlite3.connect(db) as conn:
        return [datetime.fromisoformat(e) for (e,) in conn.execute("SELECT expires_at FROM leases")]
