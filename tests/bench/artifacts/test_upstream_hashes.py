"""The executor's use of artifacts: a job records the sha256 of what it was computed from and is redone when
an upstream artifact was rewritten with other bytes; a job whose files are gone or damaged is computed again
when a job that must run reads them, and what was built on it is kept only if it comes out the same; a
storage fault stops the run with nothing of the job recorded."""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from bench import artifacts as artifacts_module
from bench import executor
from bench.api import JobContext
from bench.artifacts import UPSTREAM_SHA256, ArtifactStorageError, ArtifactStore, tmp_name
from bench.executor import LocalExecutor, RunSummary, ancestors
from bench.jobs import RUNNERS
from bench.jobs.configs import JobConfig, JobKind
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobGraph, JobSpec
from bench.jobs.upstream import Upstream
from bench.storage import Store


class Named(JobConfig):
    """Test-only: a job identified by its name."""

    job_kind: ClassVar[JobKind] = "train-classifier"
    name: str


def chain(*names: str) -> tuple[JobGraph, dict[str, JobSpec]]:
    """``names[0]`` -> ``names[1]`` -> ...: each job depends on the one before it."""
    graph, specs = JobGraph(), {}
    deps: tuple[str, ...] = ()
    for name in names:
        specs[name] = graph.add(JobSpec(label=name, settings=Named(name=name), deps=deps))
        deps = (specs[name].key,)
    return graph, specs


@pytest.fixture
def draws(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every job writes weights from the next value of a stream no seed controls, as non-deterministic
    training does, plus what it read upstream; returns the values drawn so far."""
    drawn: list[float] = []

    def runner(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
        drawn.append(float(len(drawn)))
        read = [float(upstream.tensors(d, "model")["w"].sum()) for d in spec.deps]
        return JobOutput(tensors={"model": {"w": torch.tensor([drawn[-1], *read])}}, metrics={"read": read})

    monkeypatch.setitem(RUNNERS, "train-classifier", runner)
    return drawn


def execute(tmp: Path, graph: JobGraph, force: bool = False) -> RunSummary:
    store = Store(tmp / "r.db")
    run_id = store.start_run(
        matrix_name="m", matrix_path="m.yaml", matrix_sha256="0" * 64, matrix={}, git_commit=None,
        versions={}, device="cpu",
    )
    env = Env(tmp, False, ArtifactStore(tmp / "a"), JobContext(show_progress=False))
    return LocalExecutor(show_progress=False).run(graph, store, env, run_id, force=force)


def metrics(tmp: Path, spec: JobSpec) -> dict[str, object]:
    (job,) = Store(tmp / "r.db").jobs([spec.key])
    return job.metrics


def artifact_path(tmp: Path, spec: JobSpec) -> Path:
    return tmp / "a" / spec.key[:2] / spec.key / "model.safetensors"


def test_a_job_records_the_sha256_of_every_upstream_artifact(tmp_path: Path, draws: list[float]) -> None:
    graph, s = chain("a", "b", "c")
    execute(tmp_path, graph)
    shas = {a: Store(tmp_path / "r.db").completed_artifacts(s[a].key) for a in "ab"}
    sha = {a: {x.name: x.sha256 for x in shas[a] or []} for a in "ab"}
    assert UPSTREAM_SHA256 not in metrics(tmp_path, s["a"]), "a job with nothing upstream records nothing"
    assert metrics(tmp_path, s["b"])[UPSTREAM_SHA256] == {s["a"].key: sha["a"]}
    assert metrics(tmp_path, s["c"])[UPSTREAM_SHA256] == {s["b"].key: sha["b"], s["a"].key: sha["a"]}
    assert ancestors(graph, s["c"].key) == [s["b"].key, s["a"].key]


def test_a_job_computed_from_rewritten_upstream_bytes_is_redone(tmp_path: Path, draws: list[float]) -> None:
    graph, s = chain("a", "b", "c")
    execute(tmp_path, graph)
    # Another run (of a matrix holding only ``a``, forced) redoes ``a``, and its training comes out different.
    only_a, _ = chain("a")
    assert execute(tmp_path, only_a, force=True).ran == [s["a"].key]
    summary = execute(tmp_path, graph)
    assert summary.skipped == [s["a"].key]
    assert summary.ran == [s["b"].key, s["c"].key], "rows from the old weights are not kept"
    assert metrics(tmp_path, s["b"])["read"] == [draws[3]], "b is computed from the new a"
    assert execute(tmp_path, graph).skipped == [s[x].key for x in "abc"], "and then kept"


def lose(tmp: Path, spec: JobSpec, how: str) -> None:
    """Delete a job's file, or flip one bit of it, as a lost or damaged artifact folder leaves it."""
    path = artifact_path(tmp, spec)
    if how == "deleted":
        path.unlink()
        return
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    artifacts_module._HASHES.clear()  # the next run is a new process (damage within one mtime tick is unseen)


@pytest.fixture
def same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every job writes the same bytes each time it runs, as seeded training on one machine does."""

    def runner(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
        read = [float(upstream.tensors(d, "model")["w"].sum()) for d in spec.deps]
        return JobOutput(tensors={"model": {"w": torch.tensor([float(len(spec.label)), *read])}})

    monkeypatch.setitem(RUNNERS, "train-classifier", runner)


def fork(graph: JobGraph, s: dict[str, JobSpec], name: str, parent: str) -> JobGraph:
    """``graph`` with one more job, ``name``, below ``parent``."""
    grown = JobGraph()
    for spec in graph:
        grown.add(spec)
    s[name] = grown.add(JobSpec(label=name, settings=Named(name=name), deps=(s[parent].key,)))
    return grown


def done_then_lost(tmp: Path, how: str) -> tuple[JobGraph, dict[str, JobSpec]]:
    """a -> b, run, then both files lost the same way."""
    graph, s = chain("a", "b")
    execute(tmp, graph)
    lose(tmp, s["a"], how)
    lose(tmp, s["b"], how)
    return graph, s


@pytest.mark.parametrize("how", ["deleted", "damaged"])
def test_rows_outlive_lost_files_that_no_job_to_run_reads(
    tmp_path: Path, draws: list[float], how: str
) -> None:
    graph, s = done_then_lost(tmp_path, how)
    summary = execute(tmp_path, graph)
    assert summary.ran == [] and summary.skipped == [s["a"].key, s["b"].key]


@pytest.mark.parametrize("how", ["deleted", "damaged"])
def test_lost_files_a_job_to_run_reads_are_computed_again_first(
    tmp_path: Path, draws: list[float], how: str
) -> None:
    graph, s = done_then_lost(tmp_path, how)
    summary = execute(tmp_path, fork(graph, s, "c", "b"))
    assert summary.ran == [s["a"].key, s["b"].key, s["c"].key]
    assert metrics(tmp_path, s["c"])["read"] == [draws[3] + draws[2]], "c reads the new b, built on the new a"


def test_a_job_kept_below_one_computed_again_with_other_bytes_is_redone(
    tmp_path: Path, draws: list[float]
) -> None:
    graph, s = chain("a", "b")
    execute(tmp_path, graph)
    artifact_path(tmp_path, s["a"]).unlink()
    summary = execute(tmp_path, fork(graph, s, "c", "a"))
    assert summary.ran == [s["a"].key, s["c"].key, s["b"].key], "a comes out different, so b goes with it"
    assert summary.skipped == []
    assert metrics(tmp_path, s["b"])["read"] == [draws[2]]


@dataclass
class Bar:
    """What the progress bar is told: the jobs it counts to, and how many it has counted."""

    total: float | None
    n: int = 0

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_description(self, desc: str) -> None:
        pass

    def close(self) -> None:
        pass


def test_what_was_kept_below_a_lost_file_is_redone_down_to_the_bottom(
    tmp_path: Path, draws: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    graph, s = chain("a", "b", "c")
    execute(tmp_path, graph)
    artifact_path(tmp_path, s["a"]).unlink()
    artifact_path(tmp_path, s["b"]).unlink()
    bars: list[Bar] = []

    def bar(total: int, show: bool) -> Bar:
        bars.append(Bar(total))
        return bars[-1]

    monkeypatch.setattr(executor, "overall_bar", bar)
    naps: list[float] = []
    monkeypatch.setattr(time, "sleep", naps.append)
    summary = execute(tmp_path, fork(graph, s, "d", "a"))
    assert summary.ran == [s["a"].key, s["d"].key, s["b"].key, s["c"].key]
    assert (bars[0].n, bars[0].total) == (4, 4), "the bar grows by the jobs put back"
    assert naps == [], "no other run holds anything: the passes over jobs put back do not wait"
    assert metrics(tmp_path, s["c"])["read"] == [draws[5] + draws[3]], "b is redone, unread"
    assert execute(tmp_path, graph).skipped == [s[x].key for x in "abc"], "and then kept"


def test_a_job_computed_again_with_the_same_bytes_keeps_what_was_built_on_it(
    tmp_path: Path, same: None
) -> None:
    graph, s = chain("a", "b")
    execute(tmp_path, graph)
    artifact_path(tmp_path, s["a"]).unlink()
    summary = execute(tmp_path, fork(graph, s, "c", "a"))
    assert summary.ran == [s["a"].key, s["c"].key] and summary.skipped == [s["b"].key]


def test_jobs_of_a_store_written_before_upstream_hashes_are_kept(tmp_path: Path, draws: list[float]) -> None:
    graph, s = chain("a", "b")
    execute(tmp_path, graph)
    with sqlite3.connect(tmp_path / "r.db") as conn:
        conn.execute("update jobs set metrics = json_remove(metrics, '$.upstream_sha256')")
    assert UPSTREAM_SHA256 not in metrics(tmp_path, s["b"])
    assert execute(tmp_path, graph).skipped == [s["a"].key, s["b"].key]


def test_a_run_starts_by_sweeping_tmp_files_killed_writes_left(tmp_path: Path, draws: list[float]) -> None:
    graph, s = chain("a", "b")
    execute(tmp_path, graph)
    folder = artifact_path(tmp_path, s["a"]).parent
    stray = folder / tmp_name("model.safetensors").replace(f".{os.getpid()}.", ".999999999.")
    stray.write_bytes(b"half")
    assert execute(tmp_path, graph).skipped == [s["a"].key, s["b"].key]
    assert not stray.exists()


def test_a_full_disk_stops_the_run_and_records_nothing_of_the_job(
    tmp_path: Path, draws: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    graph, s = chain("a", "b")
    execute(tmp_path, chain("a")[0])

    def full(fd: int, data: bytes | memoryview) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(ArtifactStorageError, match="No space left on device"):
        execute(tmp_path, graph)
    monkeypatch.undo()
    assert [j.key for j in Store(tmp_path / "r.db").jobs()] == [s["a"].key], "no row for b, not even failed"
    assert not artifact_path(tmp_path, s["b"]).parent.exists() or not any(
        artifact_path(tmp_path, s["b"]).parent.iterdir()
    )


def test_a_root_that_cannot_take_a_file_fails_before_any_job(
    tmp_path: Path, draws: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    graph, _ = chain("a")
    (tmp_path / "a").write_text("a file where the artifact folder should be")
    with pytest.raises(ArtifactStorageError, match="cannot write artifacts into"):
        execute(tmp_path, graph)
    assert draws == [], "nothing was computed"
