"""Executors run a job graph against a store; the local one runs jobs in-process in dependency order.

The interface is deliberately small (``run(graph, ...)``) so a distributed engine can replace the local one:
it decides which jobs are already complete (recorded done, and computed from the upstream artifacts recorded
now; their files on disk only where a job still to run reads them), runs the rest upstream-first, and hands
each job's output to the store in one transaction after its files are written. A failed job does not stop
the others (as ``make -k``): only the jobs downstream of it are left out, so a rerun has just those to do.
``bench run --executor NAME`` picks an engine from :data:`EXECUTORS`.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from bench.api import Checkpoints
from bench.artifacts import UPSTREAM_SHA256, ArtifactStorageError, ArtifactStore, StoredArtifact
from bench.errors import BenchError
from bench.jobs import RUNNERS
from bench.jobs.env import Env
from bench.jobs.spec import JobGraph, JobSpec
from bench.jobs.upstream import ArtifactLookup, Upstream
from bench.storage import JobRecord, Store
from bench.storage.store import HEARTBEAT_S, LEASE_S, StoreLockedError, utcnow

#: How often a run waiting on jobs another run holds looks again.
POLL_S = 2.0


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
    """Runs jobs one at a time in this process. Before computing a job it takes the job's lease in the
    store, so another run on the same store and matrix computes each job once: a job the other run holds is
    passed over, together with what depends on it, and looked at again once the rest is done; a job it
    finished meanwhile is used as it is."""

    def __init__(
        self,
        show_progress: bool = True,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        lease_s: float = LEASE_S,
        poll_s: float = POLL_S,
    ) -> None:
        self.show_progress = show_progress
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.poll_s = poll_s

    def run(self, graph: JobGraph, store: Store, env: Env, run_id: int, force: bool) -> RunSummary:
        since = utcnow()
        complete = already_complete(graph, store, env, force)
        done = complete.done
        todo = [s for s in graph if s.key not in done]
        prepare_artifacts(graph, env, todo)
        upstream = Upstream(graph, env, lambda key: done[key])
        bar = overall_bar(len(todo), self.show_progress)
        todo_keys = {s.key for s in todo}
        rounds = Rounds(graph, store, env, run_id, force, since, complete, todo_keys, bar, self.lease_s)
        try:
            for claims in rounds.until_settled(self.poll_s):
                for spec in claims:
                    bar.set_description(spec.label[:60])
                    with keepalive(store, run_id, [spec.key], self.heartbeat_s, self.lease_s):
                        outcome = run_job(spec, upstream, env, force, self.show_progress)
                    found = record_outcome(store, run_id, spec, graph, env, outcome)
                    if isinstance(outcome, Failure):
                        rounds.summary.failed[spec.key] = outcome.reason
                    else:
                        done[spec.key] = found
                        rounds.summary.ran.append(spec.key)
                    bar.update(1)
        finally:
            bar.close()
        return rounds.summary


@dataclass
class Rounds:
    """The passes both executors make over a graph while another run may hold some of its jobs.

    Each pass goes through the jobs not yet settled in graph order: a job downstream of a failure is
    blocked, a complete one (before this run, or finished meanwhile by a concurrent one) is linked as
    skipped, and the rest are claimed, each by taking its lease, and handed to the executor. A job another run
    holds is passed over, with what depends on it, and the next pass, after ``poll_s``, looks at those again.

    A job complete before this run but below one this run computes again (its files were gone, and a job that
    must run reads them) waits for it, and is kept only if it wrote the bytes recorded before: otherwise it
    is computed again too, from the new ones, and so is everything below it.
    """

    graph: JobGraph
    store: Store
    env: Env
    run_id: int
    force: bool
    #: When this run began: a job another run finished after it is used, not computed again.
    since: datetime
    #: What was complete when the run began; its ``done`` holds the artifacts of the complete jobs by key,
    #: and the executor adds each job it runs.
    complete: Completion
    #: The jobs that were not complete when the run began (the progress bar counts them).
    todo: set[str]
    bar: ProgressBar
    lease_s: float
    summary: RunSummary = field(default_factory=RunSummary)

    @property
    def done(self) -> dict[str, dict[str, StoredArtifact]]:
        return self.complete.done

    def until_settled(self, poll_s: float) -> Iterator[Iterator[JobSpec]]:
        """One iterator of claimed jobs per pass; exhaust each (running its jobs, for an executor that runs
        them as they come) before asking for the next, since a pass's claims see the jobs run before them.
        Only jobs another run holds are waited for; the next pass over jobs put back starts at once."""
        pending = list(self.graph)
        while pending:
            held: dict[str, None] = {}
            elsewhere: set[str] = set()
            yield self._claims(pending, held, elsewhere)
            pending = [spec for spec in self.graph if spec.key in held]
            if elsewhere:
                self.bar.set_description(f"waiting on {len(elsewhere)} jobs another run holds")
                self.store.heartbeat(self.run_id)
                time.sleep(poll_s)

    def _claims(
        self, pending: list[JobSpec], held: dict[str, None], elsewhere: set[str]
    ) -> Iterator[JobSpec]:
        """The jobs of ``pending`` this run computes now; the rest go in ``held`` for the next pass, and those
        whose lease another run has in ``elsewhere`` too."""
        for spec in pending:
            if spec.key in self.complete.read and not self._stands(spec, held):
                continue
            if spec.key not in self.done:
                waits_on = failed_upstream(spec, self.summary)
                if waits_on:
                    self.summary.blocked[spec.key] = waits_on
                    self.bar.update(1)
                    continue
                if not held.keys().isdisjoint(spec.deps):
                    held[spec.key] = None
                    continue
                if not claim(
                    self.store, self.env, self.graph, spec, self.run_id, self.done, self.since, self.force,
                    self.lease_s,
                ):
                    held[spec.key] = None
                    elsewhere.add(spec.key)
                    continue
            if spec.key in self.done:  # complete before this run, or finished by a concurrent one
                self.store.link(self.run_id, spec.key, self.graph.uses.get(spec.key, []), skipped=True)
                self.summary.skipped.append(spec.key)
                if spec.key in self.todo:
                    self.bar.update(1)
                continue
            yield spec

    def _stands(self, spec: JobSpec, held: dict[str, None]) -> bool:
        """Whether a job complete before this run is kept, once the jobs above it that this run computes
        again are settled; False leaves it blocked, or ``held`` for the next pass (waiting on them, or put
        back to be computed again)."""
        redone = [k for k in ancestors(self.graph, spec.key) if k in self.todo]
        if not redone:
            return True
        failed = [k for k in redone if k in self.summary.failed or k in self.summary.blocked]
        if failed:  # not one of the jobs the bar counts: it was complete when the run began
            self.summary.blocked[spec.key] = failed
            return False
        if not all(k in self.done for k in redone):
            held[spec.key] = None
            return False
        read = self.complete.read[spec.key]
        if read is None or read == upstream_sha256(self.graph, spec.key, self.done.__getitem__):
            return True
        self._put_back(spec.key, held)
        return False

    def _put_back(self, key: str, held: dict[str, None]) -> None:
        """Compute ``key`` again in the next pass, with the jobs above it whose files are gone, and look
        again at what was kept below those (it may have been computed from bytes they no longer write)."""
        gone = self.complete.absent & self.complete.read.keys()
        back = [key, *(k for k in ancestors(self.graph, key) if k in gone)]
        below = descendants(self.graph, back)
        again = [k for k in self.summary.skipped if k in below or k in back]
        # The bar counts the jobs put back, and once more those of ``again`` it counted as skipped.
        self.bar.total = (self.bar.total or 0) + len(back) + sum(k in self.todo for k in again)
        for k in back:
            del self.done[k]
            self.complete.read.pop(k, None)
            self.todo.add(k)
        self.summary.skipped = [k for k in self.summary.skipped if k not in again]
        held.update(dict.fromkeys([*back, *again]))


def descendants(graph: JobGraph, keys: Collection[str]) -> set[str]:
    """Every job downstream of any of ``keys``."""
    below = graph.downstream()
    found: set[str] = set()
    todo = [k for key in keys for k in below[key]]
    while todo:
        k = todo.pop()
        if k not in found:
            found.add(k)
            todo.extend(below[k])
    return found


def claim(
    store: Store,
    env: Env,
    graph: JobGraph,
    spec: JobSpec,
    run_id: int,
    done: dict[str, dict[str, StoredArtifact]],
    since: datetime,
    force: bool,
    lease_s: float,
) -> bool:
    """Take the job's lease; False while another live run holds it. A job another run finished since
    ``since`` is put in ``done`` (and its lease let go) instead of being computed again. One whose upstream
    jobs this run is still computing cannot have been finished from their artifacts: it is not looked up."""
    if not store.take_lease(run_id, spec.key, lease_s).taken:
        return False
    settled = all(k in done for k in ancestors(graph, spec.key))
    found = finished_meanwhile(store, env, graph, spec.key, done, since) if settled and not force else None
    if found is not None:
        store.release_lease(run_id, spec.key)
        done[spec.key] = found
    return True


def finished_meanwhile(
    store: Store,
    env: Env,
    graph: JobGraph,
    key: str,
    done: Mapping[str, dict[str, StoredArtifact]],
    since: datetime,
) -> dict[str, StoredArtifact] | None:
    """The artifacts of a job a concurrent run recorded done since ``since``, if they are intact and were
    computed from the upstream artifacts this run uses (``done`` holds every job upstream of it)."""
    found = store.completed_artifacts(key, since=since)
    if found is None or not all(env.artifacts.intact(a) for a in found):
        return None
    read = next(iter(store.jobs([key]))).metrics.get(UPSTREAM_SHA256)
    if read is not None and read != upstream_sha256(graph, key, done.__getitem__):
        return None
    return {a.name: a for a in found}


def renew_leases(store: Store, run_id: int, keys: Collection[str], lease_s: float) -> None:
    """Renew the leases of the jobs this run is computing and its heartbeat, so neither a concurrent run nor
    a report takes a long job's run for a dead one. A renewal the store's lock delays past its busy timeout
    is left to the next one: a lease outlives several of them."""
    with suppress(StoreLockedError):
        for key in keys:
            store.renew_lease(run_id, key, lease_s)
        if not keys:
            store.heartbeat(run_id)


@contextmanager
def keepalive(
    store: Store, run_id: int, keys: Collection[str], every_s: float, lease_s: float
) -> Iterator[None]:
    """While jobs run in this process, :func:`renew_leases` every ``every_s`` seconds from a thread."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(every_s):
            renew_leases(store, run_id, keys, lease_s)

    thread = threading.Thread(target=renew, name=f"leases of run {run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def already_complete(graph: JobGraph, store: Store, env: Env, force: bool) -> Completion:
    """The jobs a run takes as complete (:func:`completion`); none under ``force``."""
    return Completion({}, {}, frozenset(), {}) if force else completion(graph, store, env.artifacts)


@dataclass(frozen=True)
class Completion:
    #: Jobs whose rows stand: recorded done, and computed from the artifacts recorded now for every job
    #: upstream of them. Their artifacts by name, as recorded, whether or not their files are on disk.
    done: dict[str, dict[str, StoredArtifact]]
    #: Jobs recorded done that the next run computes again, and why.
    stale: dict[str, str]
    #: The jobs of ``done`` whose files are gone or damaged: the store is the record and the artifact folder
    #: a cache, so their rows stand until a job that must run reads them (then they are computed again).
    absent: frozenset[str]
    #: Per job of ``done``, the sha256 of the upstream artifacts it recorded being computed from (None for a
    #: job recorded before upstream hashes were), checked again when one of them is computed again.
    read: dict[str, dict[str, dict[str, str]] | None]


def completion(graph: JobGraph, store: Store, artifacts: ArtifactStore) -> Completion:
    """Which jobs recorded done still stand, one rule for ``bench run`` and ``bench status``.

    A row never outlives the bytes it was computed from: a job below one that is redone is redone too, and
    so is one that recorded other upstream bytes than the store holds now. Files are another matter: rows
    are committed and shared where artifact folders are not (a GPU machine's, a lost one's), so a job whose
    files are gone stands until a job that must run needs them, and is computed again only then. Whether
    that redo keeps what was built on it is settled in the run, by the bytes it writes (:class:`Rounds`)."""
    done: dict[str, dict[str, StoredArtifact]] = {}
    stale: dict[str, str] = {}
    absent: set[str] = set()
    recorded = {job.key: job.metrics.get(UPSTREAM_SHA256) for job in store.jobs([s.key for s in graph])}
    for spec in graph:  # upstream first, so ``done`` holds every upstream job that stands
        found = store.completed_artifacts(spec.key)
        if found is None:
            continue
        if not all(d in done for d in ancestors(graph, spec.key)):
            # an upstream job is redone, and may come out different (non-deterministic training)
            stale[spec.key] = "an upstream job is redone"
        elif (read := recorded.get(spec.key)) is not None and read != upstream_sha256(
            graph, spec.key, done.__getitem__
        ):
            stale[spec.key] = "computed from upstream artifacts since rewritten"
        else:
            done[spec.key] = {a.name: a for a in found}
            if not all(artifacts.intact(a) for a in found):
                absent.add(spec.key)
    for spec in reversed(list(graph)):  # downstream first, so a job put back to run has its own inputs found
        if spec.key not in done:
            for key in ancestors(graph, spec.key):
                if key in absent and key in done:
                    del done[key]
                    stale[key] = f"its artifacts are missing or damaged, and {spec.label!r} reads them"
    return Completion(done, stale, frozenset(absent & done.keys()), {k: recorded.get(k) for k in done})


def ancestors(graph: JobGraph, key: str) -> list[str]:
    """Every job upstream of ``key``, near ones first: a job may read any of them (an attack reads its
    front-end's guide classifier), and its key does not change when their bytes do."""
    found: dict[str, None] = {}
    todo = list(graph[key].deps)
    while todo:
        k = todo.pop(0)
        if k not in found:
            found[k] = None
            todo.extend(graph[k].deps)
    return list(found)


def upstream_sha256(graph: JobGraph, key: str, artifacts: ArtifactLookup) -> dict[str, dict[str, str]]:
    """The sha256 of every artifact of every job upstream of ``key``, as a job records what it was computed
    from (an upstream job recomputed with other bytes must not leave the rows computed from the old ones
    standing as if they described the new ones)."""
    return {k: {name: a.sha256 for name, a in sorted(artifacts(k).items())} for k in ancestors(graph, key)}


def prepare_artifacts(graph: JobGraph, env: Env, todo: list[JobSpec]) -> None:
    """Before any job runs: fail at once if the artifact root cannot take a file (not hours into training),
    and delete what writes killed in an earlier run left in this graph's folders."""
    if todo:
        env.artifacts.check_writable()
    env.artifacts.sweep([s.key for s in graph])


@dataclass(frozen=True)
class Failure:
    """A job that raised, as plain data, so it crosses a process boundary whatever the exception was."""

    started_at: datetime
    #: One line for the run's summary.
    reason: str
    #: The exception and its traceback, for the job's row.
    error: str


def run_job(
    spec: JobSpec, upstream: Upstream, env: Env, force: bool, show_progress: bool
) -> JobRecord | Failure:
    """Run one job and write its files, wherever the job runs (this process or a worker of a distributed
    engine); the store is left to :func:`record_outcome`, which only the process that owns the store calls."""
    started = utcnow()
    seed = spec.config.get("seed")
    checkpoints = Checkpoints(env.artifacts.checkpoints(spec.key))
    if force:
        checkpoints.clear()  # redo means from scratch, not from what a killed run left behind
    env.ctx = replace(
        env.ctx,
        seed=int(seed) if isinstance(seed, int) else int(spec.key[:12], 16),
        show_progress=show_progress,
        checkpoints=checkpoints,
    )
    # Every job starts from its own seed, whatever ran before it in this process: a model's initial
    # weights must not depend on whether its upstream jobs ran now or in an earlier, killed run.
    env.ctx.seed_everything()
    hashes = upstream_sha256(upstream.graph, spec.key, upstream.artifacts)
    read = {UPSTREAM_SHA256: hashes} if hashes else {}
    try:
        out = RUNNERS[spec.kind](spec, upstream, env)
        stored = [
            env.artifacts.write_tensors(spec.key, name, tensors, {"job": spec.key, "kind": spec.kind})
            for name, tensors in out.tensors.items()
        ]
        stored += [env.artifacts.write_json(spec.key, name, obj) for name, obj in out.json.items()]
    except ArtifactStorageError:
        raise  # every job after it would fail the same way: stop the run, recording nothing of this job
    except Exception as exc:
        detail = f"{type(exc).__name__}: {exc}"
        return Failure(started, JobFailed(spec, exc).reason, detail + "\n" + traceback.format_exc(limit=8))
    return JobRecord(
        key=spec.key,
        kind=spec.kind,
        label=spec.label,
        config=spec.config,
        started_at=started,
        ended_at=utcnow(),
        metrics={**out.metrics, "scale_notes": list(spec.scale_notes), **read},
        artifacts=stored,
        results=out.results,
        certificates=out.certificates,
        flags=out.flags,
    )


def record_outcome(
    store: Store, run_id: int, spec: JobSpec, graph: JobGraph, env: Env, outcome: JobRecord | Failure
) -> dict[str, StoredArtifact]:
    """Write a job's outcome to the store in one transaction, after its files are written; returns its
    artifacts by name (none for a failure)."""
    if isinstance(outcome, Failure):
        store.record_failure(
            run_id, spec.key, spec.kind, spec.label, spec.config, outcome.started_at, outcome.error
        )
        return {}
    store.record_job(run_id, outcome, graph.uses.get(spec.key, []))
    Checkpoints(env.artifacts.checkpoints(spec.key)).clear()  # the recorded artifacts supersede them
    return {a.name: a for a in outcome.artifacts}


def failed_upstream(spec: JobSpec, summary: RunSummary) -> list[str]:
    """The failed jobs ``spec`` depends on, directly or through blocked jobs (upstream ones are settled)."""
    found: dict[str, None] = {}
    for dep in spec.deps:
        if dep in summary.failed:
            found[dep] = None
        found.update(dict.fromkeys(summary.blocked.get(dep, [])))
    return list(found)


def ray_executor(*, show_progress: bool) -> Executor:
    """Imported on use: Ray is an optional extra, and slow to import."""
    from bench.ray_executor import RayExecutor

    return RayExecutor(show_progress=show_progress)


#: Executors by the name ``bench run --executor`` takes.
EXECUTORS: Mapping[str, ExecutorFactory] = {"local": LocalExecutor, "ray": ray_executor}


class ProgressBar(Protocol):
    #: How many jobs the bar counts to: those to run, grown when a job kept is put back to run.
    total: float | None

    def update(self, n: int = 1) -> object: ...
    def set_description(self, desc: str) -> object: ...
    def close(self) -> object: ...


def overall_bar(total: int, show: bool) -> ProgressBar:
    from tqdm.auto import tqdm

    bar: ProgressBar = tqdm(total=total, desc="matrix", unit="job", disable=not show, dynamic_ncols=True)
    return bar
