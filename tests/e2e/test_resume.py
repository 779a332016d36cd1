"""A run killed at any point resumes where it stopped: nothing lost, nothing duplicated."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.tiny import MATRIX

pytestmark = pytest.mark.e2e


def done_jobs(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return int(conn.execute("select count(*) from jobs where status='done'").fetchone()[0])
    except sqlite3.OperationalError:  # schema not created yet
        return 0


def test_sigkill_mid_run_then_resume(tmp_path: Path, data_dir: Path) -> None:
    matrix = {**MATRIX, "name": "resume"}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(matrix))
    db = tmp_path / "r.db"
    cmd = [
        sys.executable,
        "-m",
        "bench",
        "run",
        "--matrix",
        str(path),
        "--db",
        str(db),
        "--artifacts",
        str(tmp_path / "artifacts"),
        "--data-dir",
        str(data_dir),
        "--quiet",
    ]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while done_jobs(db) < 5 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed; make the matrix slower"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = done_jobs(db)
    assert 5 <= killed_at < 16

    finished = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert f"ran {16 - killed_at} jobs, {killed_at} already complete" in finished.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from jobs where status='done'").fetchone()[0] == 16
        assert conn.execute("select count(*) from results").fetchone()[0] == 24
        dupes = conn.execute(
            "select job_key, metric, count(*) from results group by job_key, metric having count(*) > 1"
        ).fetchall()
        assert dupes == []
        statuses = [s for (s,) in conn.execute("select status from runs order by id")]
    assert statuses == ["interrupted", "done"], "the rerun marks the killed run, whose process is gone"
