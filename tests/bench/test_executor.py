"""The executor keeps going past a failed job (as ``make -k``) and a rerun does only what is left."""

from __future__ import annotations

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


def execute(tmp: Path, graph: JobGraph) -> tuple[Store, int, RunSummary]:
    store = Store(tmp / "r.db")
    run_id = store.start_run(
        matrix_name="m", matrix_path="m.yaml", matrix_sha256="0" * 64, matrix={}, git_commit=None,
        versions={}, device="cpu",
    )
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
