"""``bench run``'s own options and provenance: the executor by name, the code's commit and its dirtiness."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import git_describe, main


def test_an_unknown_executor_is_refused_with_the_valid_names(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["run", "--executor", "dask", "--matrix", str(tmp_path / "m.yaml")])
    assert result.exit_code == 2
    assert "--executor" in result.output and "'dask'" in result.output
    assert "valid names: local, ray" in result.output


def git(repo: Path, *args: str) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", *identity, *args], cwd=repo, check=True, capture_output=True)


def test_describe_says_when_the_tree_is_dirty(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "f.py").write_text("x = 1\n")
    git(tmp_path, "add", "f.py")
    git(tmp_path, "commit", "-q", "-m", "one")
    clean = git_describe(tmp_path)
    assert clean is not None and len(clean) >= 7 and not clean.endswith("-dirty")
    (tmp_path / "f.py").write_text("x = 2\n")
    assert git_describe(tmp_path) == f"{clean}-dirty"


def test_describe_is_none_outside_a_repository_or_without_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert git_describe(tmp_path) is None
    monkeypatch.setenv("PATH", str(tmp_path))
    assert git_describe(Path(__file__).parent) is None
