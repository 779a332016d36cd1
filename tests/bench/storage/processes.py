"""Helpers that run store code in other processes, or take away the right to write: a store is shared by
processes, so its guarantees are tested across real ones (killed, or started together)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
#: Generous: importing torch alone took 100 s on a 2-core machine shared by several test runs.
TIMEOUT_S = 600.0


def python(code: str, *args: str) -> subprocess.Popen[str]:
    """Start ``python -c code args...`` with the repository importable."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = TIMEOUT_S) -> tuple[int, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended before {path.name}: {finish(proc)[1]}")
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.05)


def digest(folder: Path) -> dict[str, str]:
    """Every file in ``folder`` by name with its sha256: what reading must leave as it was."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@contextmanager
def read_only(*paths: Path) -> Iterator[None]:
    """Files and folders nobody may write while inside, root included: file modes do not stop root, so as
    root they are also made immutable (``chattr +i``), or the test is skipped where that is not allowed."""
    modes = {p: p.stat().st_mode for p in paths}
    immutable: list[Path] = []
    try:
        for p in paths:
            p.chmod(p.stat().st_mode & ~0o222)
            if os.geteuid() == 0:
                if subprocess.run(["chattr", "+i", str(p)], capture_output=True).returncode != 0:
                    pytest.skip("root without chattr +i: nothing is read-only to root")
                immutable.append(p)
        yield
    finally:
        for p in immutable:
            subprocess.run(["chattr", "-i", str(p)], check=True)
        for p, mode in modes.items():
            p.chmod(mode)
