"""What the Ray executor costs and buys on one machine: speed-up of independent jobs with 1 vs 2 workers, and
the overhead of one job (task start and artifact round trip), hence the smallest job worth distributing.

The jobs are synthetic so that their compute is fixed and known: a ``busy`` job runs ``--steps`` products of
two 256x256 float32 matrices on one thread and writes a ``--payload-kib`` tensor artifact; each job of the
round-trip chain also reads its upstream job's artifact. They go through the executors' whole path (run_job,
artifact write and sha256, the driver's store transaction), on a local Ray cluster started here with
``--workers`` CPUs, whose workers run the synthetic job through Ray's worker setup hook.

- **speed-up**: ``--jobs`` independent busy jobs, by the local executor and by Ray with 1 and 2 workers;
- **overhead**: ``--jobs`` independent jobs with no compute (``steps=0``), local vs Ray, per job, and a chain
  of ``--jobs`` jobs each reading its upstream's artifact (the round trip a dependency costs: task start,
  upstream artifact read and sha256 check, artifact write, the driver's lease and store transactions);
- **cluster start**: ``ray.init`` of a local cluster and the first task (worker start-up, imports).

Each timing is the best of ``--repeats`` runs (fresh job keys each time): on a shared machine the other
tenants' load only ever slows a run down, so the minimum is the least disturbed estimate. The 1-minute load
average before and after is recorded with the timings.

    python -m benchmarks.ray_overhead [--jobs 16] [--steps 400] [--payload-kib 64] [--repeats 3]
                                      [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import ray
import torch

from bench.api import JobContext
from bench.artifacts import ArtifactStore
from bench.executor import Executor, LocalExecutor
from bench.jobs import RUNNERS
from bench.jobs.configs import JobConfig, JobKind
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobGraph, JobSpec
from bench.jobs.upstream import Upstream
from bench.ray_executor import RayExecutor
from bench.storage import Store

REPO = Path(__file__).resolve().parents[1]


class Busy(JobConfig):
    """A synthetic job: fixed compute, one artifact; ``run`` keeps the keys of otherwise equal jobs apart."""

    job_kind: ClassVar[JobKind] = "train-classifier"
    index: int
    run: str
    steps: int
    payload_kib: int


def busy(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
    c = spec.settings_as(Busy)
    for dep in spec.deps:
        upstream.tensors(dep, "payload")
    a = torch.randn(256, 256)
    for _ in range(c.steps):
        a = torch.tanh(a @ a)
    return JobOutput(tensors={"payload": {"x": torch.zeros(c.payload_kib * 256)}})


def use_busy_jobs() -> None:
    """Ray's worker setup hook."""
    torch.set_num_threads(1)
    RUNNERS["train-classifier"] = busy


def graph_of(n: int, steps: int, payload_kib: int, run: str, chain: bool) -> JobGraph:
    graph = JobGraph()
    previous: tuple[str, ...] = ()
    for i in range(n):
        spec = graph.add(JobSpec(f"busy {i}", Busy(index=i, run=run, steps=steps, payload_kib=payload_kib),
                                 deps=previous if chain else ()))
        previous = (spec.key,)
    return graph


def timed(executor: Executor, graph: JobGraph, work: Path) -> float:
    work.mkdir(parents=True)
    store = Store(work / "r.db")
    run_id = store.start_run(matrix_name="bench", matrix_path="-", matrix_sha256="0" * 64, matrix={},
                             git_commit=None, versions={}, device="cpu")
    env = Env(work, False, ArtifactStore(work / "artifacts"), JobContext(show_progress=False))
    start = time.perf_counter()
    summary = executor.run(graph, store, env, run_id, force=False)
    wall = time.perf_counter() - start
    assert len(summary.ran) == len(graph), summary
    return wall


def best_of(repeats: int, executor: Executor, n: int, steps: int, kib: int, tag: str, chain: bool,
            root: Path) -> float:
    """The fastest of ``repeats`` runs of the same graph shape, each with its own keys and folder."""
    return min(
        timed(executor, graph_of(n, steps, kib, f"{tag}-{i}", chain), root / f"{tag}-{i}")
        for i in range(repeats)
    )


def with_cluster(workers: int, body: Callable[[], dict[str, float]]) -> dict[str, float]:
    start = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR,
             runtime_env={"worker_process_setup_hook": f"{__name__}.use_busy_jobs",
                          "env_vars": {"PYTHONPATH": str(REPO)}})
    try:
        up = time.perf_counter() - start
        ray.get([ray.remote(lambda: None).remote() for _ in range(workers)])  # workers started and warm
        return {"cluster_start_s": up, "first_tasks_s": time.perf_counter() - start - up, **body()}
    finally:
        ray.shutdown()


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--jobs", type=int, default=16)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--payload-kib", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    use_busy_jobs()  # the local executor runs in this process
    tag = str(time.time_ns())
    n, steps, kib, k = args.jobs, args.steps, args.payload_kib, args.repeats
    out: dict[str, Any] = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "jobs": n,
                           "steps": steps, "payload_kib": kib, "repeats": k,
                           "load_1min_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        local = LocalExecutor(show_progress=False)
        out["local_busy_s"] = best_of(k, local, n, steps, kib, tag + "lb", False, root)
        out["local_empty_s"] = best_of(k, local, n, 0, kib, tag + "le", False, root)
        out["local_chain_s"] = best_of(k, local, n, 0, kib, tag + "lc", True, root)
        for workers in (1, 2):
            ray_ex = RayExecutor(show_progress=False)

            def body(w: int = workers, ex: RayExecutor = ray_ex) -> dict[str, float]:
                busy_s = best_of(k, ex, n, steps, kib, f"{tag}rb{w}", False, root)
                if w != 2:
                    return {"busy_s": busy_s}
                empty_s = best_of(k, ex, n, 0, kib, f"{tag}re", False, root)
                chain_s = best_of(k, ex, n, 0, kib, f"{tag}rc", True, root)
                return {"busy_s": busy_s, "empty_s": empty_s, "chain_s": chain_s}

            out[f"ray_{workers}"] = with_cluster(workers, body)
    out["load_1min_after"] = os.getloadavg()[0]
    r1, r2 = out["ray_1"], out["ray_2"]
    out["speedup_2_vs_1"] = r1["busy_s"] / r2["busy_s"]
    out["speedup_2_vs_local"] = out["local_busy_s"] / r2["busy_s"]
    out["job_s_local"] = out["local_busy_s"] / n
    # Per job with no compute: what Ray adds to (or, where the driver's store writes overlap the next task,
    # saves on) the local executor's own bookkeeping; negative means Ray is the cheaper of the two.
    out["empty_per_job_s_local"] = out["local_empty_s"] / n
    out["empty_per_job_s_ray"] = r2["empty_s"] / n
    out["overhead_per_job_s"] = (r2["empty_s"] - out["local_empty_s"]) / n
    # A chain runs one job at a time, so its per-job time is the latency of a dependency on Ray (only the
    # driver's store write of a job overlaps the next job).
    out["chain_per_job_s"] = r2["chain_s"] / n
    out["chain_per_job_s_local"] = out["local_chain_s"] / n
    out["chain_overhead_per_job_s"] = (r2["chain_s"] - out["local_chain_s"]) / n
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    # Ray pickles what ``__main__`` defines by value and workers cannot import it by that name: run the
    # module under its importable name instead.
    import importlib

    raise SystemExit(importlib.import_module("benchmarks.ray_overhead").main())
