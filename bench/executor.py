"""Executors run a job graph against a store; the local one runs jobs in-process in dependency order.

The interface is deliberately small (``run(graph, ...)``) so a distributed engine can replace the local one:
it decides which jobs are already complete (recorded done *and* their artifacts intact on disk), runs the
rest upstream-first, and hands each job's output to the store in one transaction after its files are written.
A failed job does not stop the others (as ``make -k``): only the jobs downstream of it are left out, so a
rerun has just those to do. ``bench run --executor NAME`` picks an engine from :data:`EXECUTORS`.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol

from bench.api import Checkpoints
from bench.artifacts import StoredArtifact
from bench.errors import BenchError
from bench.jobs import RUNNERS
from bench.jobs.env import Env
from bench.jobs.spec import JobGraph, JobSpec
from bench.jobs.upstream import Upstream
from bench.storage import JobRecord, Store
from bench.storage.store import utcnow


@dataclass
class RunSummary:
    """Job keys by outcome; every job of the graph is in exactly one of the four."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    #: Job key -> one line saying why it failed (the traceback is in the job's row).
    failed: dict[str, str] = field(default_factory=dict)
    #: Job key -> the failed jobs upstream of it, which it waits on.
    blocked: dict[str, list[str]] = field(default_factory=dict)


class JobFailed(BenchError):
    def __init__(self, spec: JobSpec, cause: BaseException) -> None:
        super().__init__(f"job {spec.label!r} ({spec.kind}, key {spec.key[:12]}) failed: {cause}")
        self.spec = spec
        self.cause = cause

    @property
    def reason(self) -> str:
        """A user's error speaks for itself; anything else is a bug, whose type says as much as its text."""
        line = next(iter(str(self.cause).strip().splitlines()), "")
        if isinstance(self.cause, BenchError) and line:
            return line
        return f"{type(self.cause).__name__}: {line}" if line else type(self.cause).__name__


class Executor(Protocol):
    def run(self, graph: JobGraph, store: Store, env: Env, run_id: int, force: bool) -> RunSummary: ...


class ExecutorFactory(Protocol):
    def __call__(self, *, show_progress: bool) -> Executor: ...


class LocalExecutor:
    def __init__(self, show_progress: bool = True) -> None:
        self.show_progress = show_progress

    def complete(self, store: Store, env: Env, key: str) -> dict[str, StoredArtifact] | None:
        found = store.completed_artifacts(key)
        if found is None or not all(env.artifacts.intact(a) for a in found):
            return None
        return {a.name: a for a in found}

    def run(self, graph: JobGraph, store: Store, env: Env, run_id: int, force: bool) -> RunSummary:
        done: dict[str, dict[str, StoredArtifact]] = {}
        if not force:
            for spec in graph:
                found = self.complete(store, env, spec.key)
                if found is not None:
                    done[spec.key] = found
        summary = RunSummary()
        todo = [s for s in graph if s.key not in done]
        upstream = Upstream(graph, env, lambda key: done[key])
        bar = _overall_bar(len(todo), self.show_progress)
        try:
            for spec in graph:
                if spec.key in done:
                    store.link(run_id, spec.key, graph.uses.get(spec.key, []), skipped=True)
                    summary.skipped.append(spec.key)
                    continue
                waits_on = failed_upstream(spec, summary)
                if waits_on:
                    summary.blocked[spec.key] = waits_on
                    bar.update(1)
                    continue
                bar.set_description(spec.label[:60])
                try:
                    done[spec.key] = self._run_one(spec, graph, store, env, upstream, run_id, force)
                except JobFailed as exc:
                    summary.failed[spec.key] = exc.reason
                else:
                    summary.ran.append(spec.key)
                bar.update(1)
        finally:
            bar.close()
        return summary

    def _run_one(
        self,
        spec: JobSpec,
        graph: JobGraph,
        store: Store,
        env: Env,
        upstream: Upstream,
        run_id: int,
        force: bool,
    ) -> dict[str, StoredArtifact]:
        started = utcnow()
        seed = spec.config.get("seed")
        checkpoints = Checkpoints(env.artifacts.checkpoints(spec.key))
        if force:
            checkpoints.clear()  # redo means from scratch, not from what a killed run left behind
        env.ctx = replace(
            env.ctx,
            seed=int(seed) if isinstance(seed, int) else int(spec.key[:12], 16),
            show_progress=self.show_progress,
            checkpoints=checkpoints,
        )
        # Every job starts from its own seed, whatever ran before it in this process: a model's initial
        # weights must not depend on whether its upstream jobs ran now or in an earlier, killed run.
        env.ctx.seed_everything()
        try:
            out = RUNNERS[spec.kind](spec, upstream, env)
            stored = [
                env.artifacts.write_tensors(spec.key, name, tensors, {"job": spec.key, "kind": spec.kind})
                for name, tensors in out.tensors.items()
            ]
            stored += [env.artifacts.write_json(spec.key, name, obj) for name, obj in out.json.items()]
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            store.record_failure(
                run_id,
                spec.key,
                spec.kind,
                spec.label,
                spec.config,
                started,
                detail + "\n" + traceback.format_exc(limit=8),
            )
            raise JobFailed(spec, exc) from exc
        store.record_job(
            run_id,
            JobRecord(
                key=spec.key,
                kind=spec.kind,
                label=spec.label,
                config=spec.config,
                started_at=started,
                ended_at=utcnow(),
                metrics={**out.metrics, "scale_notes": list(spec.scale_notes)},
                artifacts=stored,
                results=out.results,
                certificates=out.certificates,
                flags=out.flags,
            ),
            graph.uses.get(spec.key, []),
        )
        checkpoints.clear()  # the recorded artifacts supersede them
        return {a.name: a for a in stored}


def failed_upstream(spec: JobSpec, summary: RunSummary) -> list[str]:
    """The failed jobs ``spec`` depends on, directly or through blocked jobs (upstream ones are settled)."""
    found: dict[str, None] = {}
    for dep in spec.deps:
        if dep in summary.failed:
            found[dep] = None
        found.update(dict.fromkeys(summary.blocked.get(dep, [])))
    return list(found)


#: Executors by the name ``bench run --executor`` takes.
EXECUTORS: Mapping[str, ExecutorFactory] = {"local": LocalExecutor}


class _Bar(Protocol):
    def update(self, n: int = 1) -> object: ...
    def set_description(self, desc: str) -> object: ...
    def close(self) -> object: ...


def _overall_bar(total: int, show: bool) -> _Bar:
    from tqdm.auto import tqdm

    bar: _Bar = tqdm(total=total, desc="matrix", unit="job", disable=not show, dynamic_ncols=True)
    return bar
