"""A third-party package plugs in through its entry points alone: the README's example, installed and run.

The package is ``tests/data/plugin_example``, which the README shows file for file. It is installed into a
temporary folder (no network: this environment's setuptools builds it) that only the ``bench`` subprocesses
see on their PYTHONPATH, so this test process's registries never hold its entries.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_architecture import REPO, all_imports

EXAMPLE = REPO / "tests" / "data" / "plugin_example"
#: A README code block captioned with the example file it shows: **`name`**, a blank line, the fence.
CAPTIONED = re.compile(r"^\*\*`(?P<name>[^`]+)`\*\*\n\n```\w*\n(?P<body>.*?)^```$", re.M | re.S)


def test_the_readme_shows_the_example_package_file_for_file() -> None:
    shown = {m["name"]: m["body"] for m in CAPTIONED.finditer((REPO / "README.md").read_text())}
    assert shown == {p.name: p.read_text() for p in EXAMPLE.iterdir() if p.is_file()}


def test_the_example_plug_ins_reach_bench_only_through_bench_api() -> None:
    for name in ("frontline_median.py", "frontline_mlp.py"):
        assert {m for m in all_imports(EXAMPLE / name) if m.split(".")[0] == "bench"} == {"bench.api"}, name


@pytest.mark.e2e
def test_the_example_package_installs_lists_and_runs(tmp_path: Path, data_dir: Path) -> None:
    src, site = tmp_path / "src", tmp_path / "site"
    shutil.copytree(EXAMPLE, src)  # building writes build/ and *.egg-info beside the sources
    pip = ["-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--target", site]
    # One thread: tiny models gain nothing from more, and on a shared machine OpenMP workers thrash (10x).
    env = {**os.environ, "PYTHONPATH": str(site), "BENCH_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}

    def python(*args: str | Path) -> str:
        done = subprocess.run(
            [sys.executable, *map(str, args)], cwd=src, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    python(*pip, src)
    assert re.search(r"^median +Median smoothing", python("-m", "bench", "list", "defenses"), re.M)
    python("train_mlp.py", data_dir)
    db = tmp_path / "results.db"
    python("-m", "bench", "run", "--matrix", "matrix.yaml", "--db", db, "--artifacts", tmp_path / "art",
           "--threads", "1", "--quiet")

    with sqlite3.connect(db) as conn:
        job = "select config, metrics from jobs where kind='train-classifier'"
        config, metrics = conn.execute(job).fetchone()
        rows = conn.execute(
            "select defense, metric, value from results where attack='worst-case' and target='M'"
        ).fetchall()
    assert json.loads(config)["normalization"] == {"mean": [0.0], "std": [1.0]}
    assert json.loads(metrics)["normalization_from"] == "matrix"
    values = {(defense, metric): value for defense, metric, value in rows}
    assert set(values) == {(d, m) for d in ("median", "none") for m in ("clean_accuracy", "robust_accuracy")}
    assert values["none", "clean_accuracy"] > 0.8, "the rows are the trained MLP's, with its weights as saved"
