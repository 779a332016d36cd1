"""A run whose process died is shown as interrupted, with when it was last seen alive; per-job leases let one
run compute a job while another waits, and a dead holder stops blocking."""

from __future__ import annotations

import signal
import socket
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from bench.storage import Store
from bench.storage.models import Run
from bench.storage.store import STALE_S, interruption, utcnow
from tests.bench.storage.processes import digest, python, wait_for
from tests.bench.storage.test_store import USE, record, start

#: Starts a run, says so, and stays alive until killed.
HOLD = """
import sys, time
from pathlib import Path
from bench.storage import Store
store = Store(sys.argv[1])
run = store.start_run(matrix_name="held", matrix_path="m.yaml", matrix_sha256="0" * 64, matrix={},
                      git_commit=None, versions={}, device="cpu")
assert store.take_lease(run, "k1").taken
Path(sys.argv[2]).touch()
time.sleep(600)
"""


def run_row(**fields: object) -> Run:
    now = datetime(2026, 1, 1, 12)
    defaults: dict[str, object] = {"status": "running", "started_at": now, "heartbeat_at": now}
    return Run(**{**defaults, **fields})


def test_a_run_is_interrupted_when_its_process_is_gone_or_its_heartbeat_stale() -> None:
    host, now = socket.gethostname(), datetime(2026, 1, 1, 12, 1)
    dead = 2**22 + 12345  # above the default pid_max, so no process has it
    assert interruption(run_row(host=host, pid=dead), now, host) == (
        f"interrupted: its process {dead} on {host} is gone; last seen alive 2026-01-01 12:00:00 UTC"
    )
    assert interruption(run_row(host=host, pid=1), now, host) is None, "pid 1 is alive"
    elsewhere = run_row(host="elsewhere", pid=dead)
    assert interruption(elsewhere, now, host) is None, "a pid on another host says nothing here"
    late = now + timedelta(seconds=STALE_S + 60)
    assert interruption(elsewhere, late, host) is not None
    assert interruption(run_row(heartbeat_at=None), late, host) is not None, "judged by its start"
    assert interruption(run_row(host=host, pid=dead, status="done"), now, host) is None


def test_a_killed_run_reads_as_interrupted_and_the_next_writer_marks_it(tmp_path: Path) -> None:
    db, ready = tmp_path / "r.db", tmp_path / "ready"
    proc = python(HOLD, str(db), str(ready))
    wait_for(ready, proc)
    reader = Store.open_readonly(db)
    assert [r.status for r in reader.runs()] == ["running"]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = digest(tmp_path)["r.db"]
    (shown,) = reader.runs()
    assert shown.status == "interrupted" and "last seen alive" in (shown.error or "")
    assert digest(tmp_path)["r.db"] == before, "the reader only shows it"
    writer = Store(db)
    run = start(writer)
    assert writer.take_lease(run, "k1").taken, "the dead run's lease does not block"
    (marked,) = writer.mark_interrupted()
    assert marked.id == 1 and (marked.error or "").startswith("interrupted: its process")
    with sqlite3.connect(db) as conn:
        statuses = conn.execute("SELECT status FROM runs ORDER BY id").fetchall()
        assert statuses == [("interrupted",), ("running",)]
        assert conn.execute("SELECT count(*) FROM leases WHERE run_id = 1").fetchone() == (0,)


def test_a_job_leased_by_a_live_run_is_not_taken_until_done_or_expired(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    first, second = start(store), start(store)
    assert store.take_lease(first, "k1", seconds=60).taken
    claim = store.take_lease(second, "k1", seconds=60)
    assert not claim.taken and claim.holder == first
    store.record_job(first, record("k1", 0.5), [USE])
    assert store.take_lease(second, "k1", seconds=60).taken, "recording the job let the lease go"
    with store.session() as s:  # the second run is now on another host and went silent
        s.execute(update(Run).where(Run.id == second).values(host="elsewhere"))
    assert not store.take_lease(first, "k1").taken
    store.renew_lease(second, "k1", seconds=-1)
    assert store.take_lease(first, "k1").taken, "an expired lease stops blocking"
    store.finish_run(first, "done")
    assert store.take_lease(second, "k1").taken, "a finished run holds nothing"


def test_a_lease_remembers_when_its_run_took_it_through_renewals(tmp_path: Path) -> None:
    """What ``bench status`` counts a running job's time from: the first take, not the last renewal."""
    store = Store(tmp_path / "r.db")
    first, second = start(store), start(store)
    before = utcnow()
    assert store.take_lease(first, "k1").taken
    (lease,) = store.live_leases(["k1"])
    taken = lease.taken_at
    assert taken is not None and taken >= before
    store.renew_lease(first, "k1")
    assert store.take_lease(first, "k1").taken, "its own lease"
    assert [x.taken_at for x in store.live_leases(["k1"])] == [taken]
    store.finish_run(first, "done")
    assert store.take_lease(second, "k1").taken
    (lease,) = store.live_leases(["k1"])
    assert lease.run_id == second and lease.taken_at is not None and lease.taken_at >= taken


def test_a_heartbeat_is_recorded_when_a_run_starts_and_renews(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    before = utcnow()
    run = start(store)
    (row,) = store.runs()
    assert row.heartbeat_at is not None and row.heartbeat_at >= before and row.host == socket.gethostname()
    store.heartbeat(run)
    assert (store.runs()[0].heartbeat_at or before) >= row.heartbeat_at
