"""Kill anywhere: a run SIGKILLed at seeded random points (once in each job kind that computes: classifier
training, front-end training, an attack and a certification) and rerun to completion ends with the store an
uninterrupted run writes: the same jobs, result rows, flags, certificates and weights, nothing twice, no
half-written artifact, no stray ``.tmp``. Each kill waits for the run to take the lease of a job of its kind
(a run takes a job's lease as it starts it), so it lands in that kind whatever the machine's load.

On CPU with one thread every job is bit-deterministic, and a killed training or certify job resumes from its
checkpoint to the same bytes, so the two stores are compared exactly, timings aside.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from safetensors.torch import load_file

from tests.e2e.tiny import bench_run

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_thread")]

#: Every job kind, each about a second on one CPU thread: classifier and front-end training of two epochs
#: (checkpointed per epoch, so a kill in the second resumes from the first), PGD on a trained front-end and
#: on a smoothed pipeline, and a certify job (checkpointed per image).
MATRIX: dict[str, Any] = {
    "name": "kill-anywhere",
    "classifiers": {
        "B": {
            "arch": "mnist-b",
            "dataset": "mnist",
            "train": {"epochs": 2, "n_train": 800, "batch_size": 50},
        }
    },
    "defenses": {
        "aaa": {
            "kind": "aaa",
            "n_train": 192,
            "params": {"epochs": 2, "warmup_epochs": 0, "width": 4, "attack_steps": 2, "batch_size": 64},
        },
        "smooth": {"kind": "smoothing", "params": {"sigma": 0.25}},
    },
    "threats": {"l2": {"norm": "l2", "epsilons": [0.5]}},
    "attacks": {"pgd": {"kind": "pgd", "params": {"steps": 3}}},
    "evaluation": {"n_eval": 16, "batch_size": 16, "checks": False, "eot_samples": 2, "vote_draws": 3},
    "certify": {"n0": 20, "n": 300, "n_images": 16, "radii": [0.0, 0.25, 0.5]},
    "experiments": [{"kind": "native", "defenses": ["aaa", "smooth"], "guides": ["B"]}],
}
SEED = 22
#: Where a kill may fall (the fraction of the job's uninterrupted wall time it waits), so it does not wait
#: past the job's end on a machine a little faster than the reference run's.
INTO_JOB = (0.2, 0.7)
#: Metrics that time a job or say it resumed; everything else a job records must match.
TIMINGS = {"wall_s", "train_wall_s", "train_images_per_s", "resumed_from_epoch", "resumed_images"}


def args(tmp: Path, data_dir: Path, store: str) -> list[str]:
    return [
        *("run", "--matrix", str(tmp / "m.yaml"), "--db", str(tmp / f"{store}.db")),
        *("--artifacts", str(tmp / store), "--data-dir", str(data_dir), "--threads", "1", "--quiet"),
    ]


def start(tmp: Path, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "bench", *args(tmp, data_dir, "killed")]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # the schema is not there yet
        return []


def timeline(db: Path) -> list[tuple[str, str, float]]:
    """(key, kind, wall seconds) of each job of an uninterrupted run, in the order it ran them."""
    return [
        (k, kind, float(w or 0))
        for k, kind, w in query(db, "select key, kind, wall_s from jobs order by started_at")
    ]


def kill_in(
    proc: subprocess.Popen[bytes], db: Path, runs_before: int, wall: dict[str, float], into: float
) -> str | None:
    """SIGKILL the run ``into`` of the way through the first of the jobs in ``wall`` it starts (by their
    uninterrupted wall times); the job's key, or None if the run ended first."""
    deadline = time.monotonic() + 300
    started: list[str] = []
    while not started and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never reached the job"
        time.sleep(0.02)
        leases = query(db, f"select job_key from leases where run_id > {runs_before:d}")
        started = [k for (k,) in leases if k in wall]
    if proc.poll() is None:
        time.sleep(into * wall[started[0]])
    if proc.poll() is not None:
        return None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return started[0]


def tensor_digest(path: Path) -> str:
    tensors = load_file(path)
    if "cost" in tensors:
        tensors["cost"][0] = 0.0
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].numpy().tobytes())
    return digest.hexdigest()


def snapshot(db: Path, root: Path) -> dict[str, Any]:
    """Everything a run records that does not depend on when it ran or in how many goes."""
    jobs = {}
    for key, kind, status, config, metrics in query(
        db, "select key, kind, status, config, metrics from jobs"
    ):
        kept = {k: v for k, v in json.loads(metrics).items() if k not in TIMINGS and k != "upstream_sha256"}
        jobs[key] = (kind, status, json.loads(config), kept)
    # A card (JSON) holds its job's timings, and an attack's outcomes its wall time (``cost[0]``); every
    # other tensor (weights, adversarial examples, certificates) is compared bit for bit.
    rows = query(db, "select job_key, name, path from artifacts")
    artifacts = sorted(
        (k, n, p, tensor_digest(root / p) if p.endswith(".safetensors") else "") for k, n, p in rows
    )
    results = query(db, "select * from results")
    columns = [c for (_, c, *_) in query(db, "pragma table_info(results)")]
    skip = {"id", "run_id", "wall_s", "created_at"}
    rows = sorted(tuple(v for c, v in zip(columns, r, strict=True) if c not in skip) for r in results)
    flags = sorted(query(db, 'select job_key, "check", passed, detail from flags'))
    certificates = sorted(
        query(
            db,
            "select job_key, position, test_index, label, prediction, count, p_lower, radius, radius_pixel "
            "from certificates",
        )
    )
    return {
        "jobs": jobs,
        "artifacts": artifacts,
        "results": rows,
        "flags": flags,
        "certificates": certificates,
    }


def test_a_run_killed_anywhere_and_rerun_ends_as_an_uninterrupted_run(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(MATRIX))
    ran = bench_run(
        tmp_path / "m.yaml", tmp_path / "reference.db", tmp_path / "reference", data_dir, "--threads", "1"
    )
    assert ran.exit_code == 0, ran.output
    jobs = timeline(tmp_path / "reference.db")

    # One kill in each job kind, in the order the uninterrupted run first reached them, each at a seeded
    # random point of the first job of that kind the rerun starts.
    rng = random.Random(SEED)
    kinds = list(dict.fromkeys(kind for _, kind, _ in jobs if kind != "cell"))
    assert set(kinds) == {"train-classifier", "train-defense", "attack", "certify"}
    killed_in: list[str] = []
    db = tmp_path / "killed.db"
    for kind in kinds:
        wall = {k: w for k, of_kind, w in jobs if of_kind == kind}
        runs = max((r for (r,) in query(db, "select id from runs")), default=0)
        key = kill_in(start(tmp_path, data_dir), db, runs, wall, rng.uniform(*INTO_JOB))
        assert key is not None, f"the run ended before a {kind} job started"
        done = {k for (k,) in query(db, "select key from jobs where status = 'done'")}
        assert key not in done, f"the {kind} job ended before the kill; make it slower"
        killed_in.append(kind)

    finished = bench_run(tmp_path / "m.yaml", db, tmp_path / "killed", data_dir, "--threads", "1")
    assert finished.exit_code == 0, finished.output

    expected = snapshot(tmp_path / "reference.db", tmp_path / "reference")
    got = snapshot(db, tmp_path / "killed")
    assert len(expected["jobs"]) == len(jobs) == 8 and expected["results"] and expected["certificates"]
    assert set(got["jobs"]) == set(expected["jobs"])
    for key, job in expected["jobs"].items():
        assert got["jobs"][key] == job, f"job {job[0]} {key[:12]} differs after kills in {killed_in}"
    for part in ("artifacts", "results", "flags", "certificates"):
        assert got[part] == expected[part], f"{part} differ after kills in {killed_in}"
    assert len(set(got["results"])) == len(got["results"]), "a result row written twice"

    # On disk: exactly the recorded artifacts, whole, and nothing else (no .tmp, no leftover checkpoint).
    recorded = {p: s for _, _, p, s in query(db, "select job_key, name, path, sha256 from artifacts")}
    root = tmp_path / "killed"
    files = {str(f.relative_to(root)) for f in root.rglob("*") if f.is_file()}
    assert files == set(recorded), f"unrecorded files: {sorted(files - set(recorded))}"
    for path, sha in recorded.items():
        assert hashlib.sha256((root / path).read_bytes()).hexdigest() == sha, f"{path} is not whole"
