"""Shared fixtures: where the real data lives, and a fresh store per test.

Tests never touch the committed ``results.db``. The data root follows the CLI's rule (``BENCH_DATA_DIR``
first); when unset, the verified offline copies in ``../shared/data`` are used if present.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per worker: two workers with two OpenMP threads each on two cores thrash.
    torch.set_num_threads(1)


def data_root() -> Path:
    env = os.environ.get("BENCH_DATA_DIR")
    if env:
        return Path(env)
    shared = REPO.parent / "shared" / "data"
    return shared if shared.is_dir() else REPO / "data"


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One intra-op thread for a module of tiny models, which gain nothing from threads: on a shared 2-core
    machine a descheduled OpenMP worker makes every op wait (such files ran 7-10x slower). A module opts in
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return data_root()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decoded-dataset caches go to a per-session temp folder, never the user's home."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
