"""Run a job graph on a Ray cluster: every job a Ray task holding the resources its kind declares.

The driver (the ``bench run`` process) submits at once every job that is not complete. A job's task takes
the artifact listings of the upstream jobs computed in this run as object references, so Ray starts it when
they are done and independent branches run side by side; the graph's order is Ray's to keep, not ours. A
task runs the job with the local executor's code (:func:`bench.executor.run_job`) and writes its files to the
artifact root, which every worker must reach (one folder on one machine, a shared file system or an fsspec
URL across machines); it returns the job's record. Only the driver writes the SQLite store, one transaction
per job as each finishes (:func:`bench.executor.record_outcome`), so a cluster never contends for the file.
It also takes each job's lease before submitting it and renews the leases of the jobs in flight, with the
local executor's code, so a Ray run and any other run on the same store compute each job once; a task that
finds the artifact root full or read-only stops the run with the local executor's message.

A job that raises is recorded as it is locally, and the tasks downstream of it return without running, so
failed and blocked jobs come out as the local executor's (``make -k``). A worker that dies (a crash, the OOM
killer, a preempted node) is retried by Ray up to ``max_retries`` times, resuming from the job's checkpoints;
the driver records each job once whatever Ray re-executes, so a retry never duplicates a row.

Without an address a local cluster is started for the run and shut down after it. Workers on other hosts
must have Frontline and the matrix's plug-ins installed, the data at the same path and the same
``BENCH_*`` environment; the local cluster's workers are started from this interpreter and inherit both.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

import torch

from bench.api import load_plugins
from bench.artifacts import StoredArtifact
from bench.errors import BenchError
from bench.executor import (
    POLL_S,
    Failure,
    ProgressBar,
    Rounds,
    RunSummary,
    already_complete,
    ancestors,
    failed_upstream,
    overall_bar,
    prepare_artifacts,
    record_outcome,
    renew_leases,
    run_job,
)
from bench.jobs.configs import JobKind
from bench.jobs.env import Env
from bench.jobs.resources import RESOURCES, Resources
from bench.jobs.spec import JobGraph, JobSpec
from bench.jobs.upstream import Upstream
from bench.storage import JobRecord, Store
from bench.storage.store import HEARTBEAT_S, LEASE_S, utcnow

Artifacts = dict[str, StoredArtifact]
#: What a task returns for the driver when a job upstream of it failed: it did not run.
Blocked = Literal["blocked"]
Outcome = JobRecord | Failure | Blocked

#: Retries of a job whose worker died; a job that raises is not retried (it would raise again).
MAX_RETRIES = 3


def execute(
    graph: JobGraph,
    key: str,
    env: Env,
    force: bool,
    threads: int,
    known: Mapping[str, Artifacts],
    computed: tuple[str, ...],
    *upstream: Artifacts | None,
) -> tuple[Artifacts | None, Outcome]:
    """A job's task: ``upstream`` are the artifact listings of the ``computed`` jobs, which Ray resolves
    before the task starts; ``known`` those of upstream jobs complete before the run. Returns the job's own
    listing, for the tasks downstream of it (None when it did not produce one), and its outcome."""
    if any(found is None for found in upstream):
        return None, "blocked"
    load_plugins()  # a worker is a fresh interpreter: registries fill from entry points
    torch.set_num_threads(threads)
    artifacts: dict[str, Artifacts] = {**known}
    artifacts.update((k, found) for k, found in zip(computed, upstream, strict=True) if found is not None)
    upstream_models = Upstream(graph, env, artifacts.__getitem__)
    outcome = run_job(graph[key], upstream_models, env, force, show_progress=False)
    if isinstance(outcome, Failure):
        return None, outcome
    return {a.name: a for a in outcome.artifacts}, outcome


class RayExecutor:
    """Before submitting a job the driver takes its lease in the store as :class:`LocalExecutor` does, so a
    Ray run and any other run on the same store compute each job once: a job another run holds is passed
    over with what depends on it, and looked at again once everything submitted has finished."""

    def __init__(
        self,
        show_progress: bool = True,
        address: str | None = None,
        num_cpus: int | None = None,
        resources: Mapping[JobKind, Resources] = RESOURCES,
        max_retries: int = MAX_RETRIES,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        lease_s: float = LEASE_S,
        poll_s: float = POLL_S,
    ) -> None:
        if importlib.util.find_spec("ray") is None:
            raise BenchError("--executor ray needs Ray: pip install 'frontline-bench[ray]'")
        if address is not None and num_cpus is not None:
            raise BenchError("--workers sizes the local cluster; a cluster at --address has its own size")
        self.show_progress = show_progress
        self.address = address
        self.num_cpus = num_cpus
        self.resources = resources
        self.max_retries = max_retries
        self.heartbeat_s = heartbeat_s
        self.lease_s = lease_s
        self.poll_s = poll_s

    def init_options(self) -> dict[str, Any]:
        """``ray.init`` arguments: the cluster at ``address``, else a new local one for this run alone."""
        # Worker output reaches the terminal only when the user asked for progress; failures come back in
        # the jobs' rows either way.
        common: dict[str, Any] = {
            "log_to_driver": self.show_progress,
            "logging_level": logging.INFO if self.show_progress else logging.ERROR,
        }
        if self.address is not None:
            return {"address": self.address, **common}
        return {"address": "local", "num_cpus": self.num_cpus, "include_dashboard": False, **common}

    def run(self, graph: JobGraph, store: Store, env: Env, run_id: int, force: bool) -> RunSummary:
        import ray

        since = utcnow()
        complete = already_complete(graph, store, env, force)
        done = complete.done
        todo = [s for s in graph if s.key not in done]
        prepare_artifacts(graph, env, todo)
        owns = False
        bar = overall_bar(len(todo), self.show_progress)
        todo_keys = {s.key for s in todo}
        rounds = Rounds(graph, store, env, run_id, force, since, complete, todo_keys, bar, self.lease_s)
        try:
            for claims in rounds.until_settled(self.poll_s):
                claimed = list(claims)
                if claimed:
                    if not owns and not ray.is_initialized():
                        ray.init(**self.init_options())
                        owns = True
                        if self.address is None:
                            self._check_fits(todo, env)
                    outcomes = self._submit_and_collect(claimed, graph, store, env, run_id, force, done, bar)
                    self._settle(claimed, outcomes, graph, store, env, run_id, done, rounds.summary)
        finally:
            bar.close()
            if owns:
                ray.shutdown()
        return rounds.summary

    def _settle(
        self,
        claimed: list[JobSpec],
        outcomes: Mapping[str, Outcome],
        graph: JobGraph,
        store: Store,
        env: Env,
        run_id: int,
        done: dict[str, Artifacts],
        summary: RunSummary,
    ) -> None:
        """File the outcomes upstream first, as the local executor settles them: a job whose worker died
        because one upstream of it did is blocked, not failed."""
        for spec in claimed:
            waits_on = failed_upstream(spec, summary)
            outcome = outcomes[spec.key]
            if waits_on:
                store.release_lease(run_id, spec.key)
                summary.blocked[spec.key] = waits_on
            elif isinstance(outcome, Failure):
                record_outcome(store, run_id, spec, graph, env, outcome)
                summary.failed[spec.key] = outcome.reason
            elif isinstance(outcome, JobRecord):
                done[spec.key] = {a.name: a for a in outcome.artifacts}
                summary.ran.append(spec.key)
            else:
                raise AssertionError(f"job {spec.label!r} was blocked with no failed job upstream of it")

    def _gpu(self, env: Env) -> bool:
        return env.ctx.device.type == "cuda"

    def _check_fits(self, todo: list[JobSpec], env: Env) -> None:
        """A local cluster is one node and nothing will be added: a job it cannot hold would wait forever."""
        import ray

        ray_state: Any = ray  # ray.cluster_resources is untyped
        node: dict[str, float] = ray_state.cluster_resources()
        names = {"num_cpus": "CPU", "num_gpus": "GPU", "memory": "memory"}
        for kind in dict.fromkeys(s.kind for s in todo):
            asked = self.resources[kind].ray_options(self._gpu(env))
            if not all(node.get(names[r], 0) >= v for r, v in asked.items()):
                offered = ", ".join(f"{r}={node.get(names[r], 0):g}" for r in asked)
                raise BenchError(
                    f"{kind} jobs ask for {', '.join(f'{r}={v:g}' for r, v in asked.items())} but the local "
                    f"Ray cluster offers {offered}; lower the request with --job-resources "
                    f"{kind}:NAME=VALUE or give the cluster more with --workers"
                )

    def _submit_and_collect(
        self,
        todo: list[JobSpec],
        graph: JobGraph,
        store: Store,
        env: Env,
        run_id: int,
        force: bool,
        done: Mapping[str, Artifacts],
        bar: ProgressBar,
    ) -> dict[str, Outcome]:
        """Submit the claimed jobs and record each success as it comes; failures wait until it is known what
        they blocked. Until a job is filed, the driver renews its lease every ``heartbeat_s``."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        # Ray's stubs type a task's result as one reference; it returns two (``num_returns=2``).
        task: Any = ray.remote(execute)
        graph_ref = ray.put(graph)
        # A GPU task sees only the GPUs Ray gave it, numbered from 0.
        device = torch.device("cuda") if self._gpu(env) else env.ctx.device
        env_ref = ray.put(replace(env, ctx=replace(env.ctx, device=device, show_progress=False)))
        listings: dict[str, Any] = {}
        pending: dict[Any, tuple[JobSpec, datetime]] = {}
        for spec in todo:
            up = ancestors(graph, spec.key)
            computed = tuple(k for k in up if k in listings)
            known = {k: dict(done[k]) for k in up if k in done}
            resources = self.resources[spec.kind]
            listing, outcome_ref = task.options(
                num_returns=2,
                max_retries=self.max_retries,
                retry_exceptions=False,
                name=f"{spec.kind} {spec.label}",
                **resources.ray_options(self._gpu(env)),
            ).remote(graph_ref, spec.key, env_ref, force, resources.threads, known, computed,
                     *(listings[k] for k in computed))
            listings[spec.key] = listing
            pending[outcome_ref] = (spec, utcnow())
        outcomes: dict[str, Outcome] = {}
        leased = {spec.key: None for spec in todo}  # the jobs not yet filed in the store
        renewed = time.monotonic()
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.heartbeat_s)
                if time.monotonic() - renewed >= self.heartbeat_s:
                    renew_leases(store, run_id, leased.keys(), self.lease_s)
                    renewed = time.monotonic()
                if not ready:
                    continue
                spec, submitted = pending.pop(ready[0])
                try:
                    outcome: Outcome = ray.get(ready[0])
                except RayError as exc:
                    cause = exc.cause if isinstance(exc, RayTaskError) else exc
                    if isinstance(cause, BenchError):
                        # The artifact root is full or read-only: every job would fail the same way.
                        raise cause from exc
                    if not isinstance(cause, RayError):
                        raise  # a bug outside the job's own code, which run_job catches
                    # The worker died more than max_retries times, here or upstream (then it is blocked).
                    line = next(iter(str(exc).strip().splitlines()), "")
                    outcome = Failure(
                        submitted,
                        f"{type(exc).__name__} after {self.max_retries} retries: {line}",
                        f"{type(exc).__name__}: {exc}",
                    )
                if isinstance(outcome, JobRecord):
                    record_outcome(store, run_id, spec, graph, env, outcome)
                    del leased[spec.key]
                outcomes[spec.key] = outcome
                bar.set_description(spec.label[:60])
                bar.update(1)
        except BaseException:
            for ref in pending:  # a cluster that outlives the run must not go on computing for it
                ray.cancel(ref, force=True)
            raise
        return outcomes
