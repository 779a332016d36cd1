"""Where a matrix stands in a store: each planned job done, failed, running or pending.

A long matrix runs for hours, often in two processes sharing one store, so this answers "how far is it" from
the plan and the store's rows alone, without running or writing anything. Running means what makes a
concurrent ``bench run`` wait for the job: a lease that still holds (:func:`bench.storage.store.holds`), so
a job whose run died reads as pending, which is what the next run will do with it. Done means what ``bench
run`` takes as complete (:func:`bench.executor.completion`): a job recorded done whose artifacts are gone and
read by a job still to run, or below one that is redone, reads as pending too, with the reason.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from bench.artifacts import ArtifactStore
from bench.executor import completion
from bench.jobs.spec import JobGraph, JobSpec
from bench.storage import Store
from bench.storage.models import Job, Lease, Run
from bench.storage.store import utcnow

JobState = Literal["running", "failed", "pending", "done"]
#: The order jobs are listed in: what needs attention first.
STATES: tuple[JobState, ...] = ("running", "failed", "pending", "done")
#: The order of a kind's counts: how far it got first.
COUNTED: tuple[JobState, ...] = ("done", "failed", "running", "pending")


@dataclass(frozen=True)
class JobStatus:
    key: str
    kind: str
    label: str
    state: JobState
    #: A done job's wall time.
    wall_s: float | None = None
    #: The first line of a failed job's error.
    error: str | None = None
    #: The run whose lease holds a running job, and until when the lease holds unless renewed.
    holder: int | None = None
    lease_until: datetime | None = None
    #: When that run took the job (unknown for a lease taken by a release before store revision 0004).
    since: datetime | None = None
    #: Why a pending job recorded done is computed again by the next run.
    redo: str | None = None
    #: A done job whose files are gone or damaged: its rows stand, and a run computes it again only for a
    #: job still to run that reads them.
    files_gone: bool = False


@dataclass(frozen=True)
class MatrixStatus:
    #: Every planned job, in plan order (upstream first).
    jobs: tuple[JobStatus, ...]
    #: The runs working on the matrix now: running ones of its name, or holding a lease on one of its jobs.
    runs: tuple[Run, ...]

    @property
    def done(self) -> int:
        return sum(j.state == "done" for j in self.jobs)

    @property
    def files_gone(self) -> int:
        return sum(j.files_gone for j in self.jobs)

    @property
    def complete(self) -> bool:
        return self.done == len(self.jobs)

    def counts(self) -> dict[str, dict[JobState, int]]:
        """Jobs per state of each kind, kinds in plan order."""
        out: dict[str, dict[JobState, int]] = {}
        for job in self.jobs:
            per = out.setdefault(job.kind, dict.fromkeys(STATES, 0))
            per[job.state] += 1
        return out


def matrix_status(
    matrix_name: str,
    planned: Iterable[JobSpec],
    jobs: Iterable[Job],
    leases: Iterable[Lease],
    runs: Iterable[Run],
    stale: Mapping[str, str],
    absent: Collection[str] = frozenset(),
) -> MatrixStatus:
    """The status of each planned job from the store's rows; ``leases`` are the live ones
    (:meth:`Store.live_leases`), ``runs`` as :meth:`Store.runs` shows them (a dead one interrupted),
    ``stale`` the jobs recorded done that the next run redoes, with why (:attr:`Completion.stale`), and
    ``absent`` the done ones whose files are gone (:attr:`Completion.absent`). A live lease comes first: a
    run holding one on a job recorded done is computing it again."""
    rows = {j.key: j for j in jobs}
    held = {lease.job_key: lease for lease in leases}
    out = []
    for spec in planned:
        row, lease = rows.get(spec.key), held.get(spec.key)
        if lease is not None:
            status = JobStatus(
                spec.key,
                spec.kind,
                spec.label,
                "running",
                holder=lease.run_id,
                lease_until=lease.expires_at,
                since=lease.taken_at,
            )
            out.append(status)
        elif spec.key in stale:  # only jobs recorded done are ever stale
            out.append(JobStatus(spec.key, spec.kind, spec.label, "pending", redo=stale[spec.key]))
        elif row is not None and row.status == "done":
            gone = spec.key in absent
            out.append(JobStatus(spec.key, spec.kind, spec.label, "done", wall_s=row.wall_s, files_gone=gone))
        elif row is not None and row.status == "failed":
            error = (row.error or "").strip().splitlines()
            out.append(JobStatus(spec.key, spec.kind, spec.label, "failed", error=error[0] if error else ""))
        else:
            out.append(JobStatus(spec.key, spec.kind, spec.label, "pending"))
    holders = {lease.run_id for lease in held.values()}
    working = tuple(
        r for r in runs if r.status == "running" and (r.matrix_name == matrix_name or r.id in holders)
    )
    return MatrixStatus(tuple(out), working)


def read_status(store: Store, matrix_name: str, graph: JobGraph, artifacts: ArtifactStore) -> MatrixStatus:
    """The status of ``graph``'s jobs, each done one's artifacts checked against the sha256 recorded."""
    keys = [s.key for s in graph]
    found = completion(graph, store, artifacts)
    return matrix_status(
        matrix_name, graph, store.jobs(keys), store.live_leases(keys), store.runs(), found.stale, found.absent
    )


def render(status: MatrixStatus, show_done: bool = False, now: datetime | None = None) -> list[str]:
    """The lines ``bench status`` prints: a count line per kind, a line per job not done (every job with
    ``show_done``), and the total with the runs at work; a running job's time is counted up to ``now``
    (UTC, default the clock's)."""
    now = now or utcnow()
    counts = status.counts()
    kind_w = max((len(k) for k in counts), default=0)
    num_w = len(str(max((n for per in counts.values() for n in per.values()), default=0)))
    lines = [
        f"{kind.ljust(kind_w)}  " + "  ".join(f"{per[s]:>{num_w}} {s}" for s in COUNTED)
        for kind, per in counts.items()
    ]
    listed = [j for s in STATES for j in status.jobs if j.state == s and (s != "done" or show_done)]
    if listed:
        label_w = max(len(j.label) for j in listed)
        lines.append("")
        lines.extend(
            f"{j.state:<7}  {j.kind.ljust(kind_w)}  {j.label.ljust(label_w)}  {_detail(j, now)}".rstrip()
            for j in listed
        )
    lines.append("")
    gone = f" ({status.files_gone} of them without their files)" if status.files_gone else ""
    lines.append(f"{status.done}/{len(status.jobs)} jobs done{gone}; " + _runs(status.runs))
    return lines


def _detail(job: JobStatus, now: datetime) -> str:
    if job.state == "running" and job.lease_until is not None:
        running = "" if job.since is None else f" for {_duration(now - job.since)}"
        return f"run {job.holder}{running}, lease until {_time(job.lease_until)}"
    if job.state == "failed":
        return job.error or ""
    if job.redo is not None:
        return f"recorded done, but {job.redo}"
    if job.state != "done":
        return ""
    took = "" if job.wall_s is None else f"{job.wall_s:.1f} s"
    if job.files_gone:
        gone = "its files are gone: computed again if a job to run reads them"
        return f"{took}, {gone}" if took else gone
    return took


def _runs(runs: Sequence[Run]) -> str:
    if not runs:
        return "no run of this matrix is running"
    shown = [
        f"run {r.id} (pid {r.pid} on {r.host}, started {_time(r.started_at)}, last heartbeat "
        f"{_time(r.heartbeat_at) if r.heartbeat_at else 'never'})"
        for r in runs
    ]
    return "running now: " + ", ".join(shown)


def _duration(span: timedelta) -> str:
    seconds = max(0, int(span.total_seconds()))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _time(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S} UTC"
