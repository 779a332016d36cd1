"""Property tests: whatever a matrix file or the command line holds, the harness ends in success or in a
clean error (a :class:`BenchError`, or click's usage error, with a non-zero exit status), never a
traceback."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.cli import main
from bench.errors import BenchError
from bench.validate import load_valid_matrix
from tests.bench.test_config import BASE

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
#: Each example that gets past the schema builds the matrix's untrained networks to check them.
FUZZ_VALIDATION = settings(FUZZ, max_examples=10)

KEYS = ["name", "classifiers", "defenses", "threats", "attacks", "evaluation", "experiments", "kind", "arch",
        "dataset", "params", "epsilons", "norm", "guides", "targets", "n_eval", "scale", "A", "C", "aaa"]
text = st.text(st.characters(codec="utf-8"), max_size=12)
scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | text
values = st.recursive(
    scalars | st.sampled_from(KEYS),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(KEYS) | text, inner, max_size=4),
    max_leaves=12,
)


def paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a matrix a value can be put: each key and list position, at any depth."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    out = []
    for key, value in items:
        out.append((*prefix, key))
        out += paths(value, (*prefix, key))
    return out


ALL_PATHS = paths(BASE)


def put(node: Any, where: tuple[Any, ...], value: Any) -> None:
    """Sets ``value`` at ``where`` unless an earlier change replaced a part of the way there."""
    for i, key in enumerate(where):
        fits = isinstance(node, dict) if isinstance(key, str) else isinstance(node, list) and key < len(node)
        if not fits or (i < len(where) - 1 and isinstance(node, dict) and key not in node):
            return
        if i == len(where) - 1:
            node[key] = value
        else:
            node = node[key]


def check(path: Path, tmp_path: Path) -> None:
    with contextlib.suppress(BenchError):
        load_valid_matrix(path, tmp_path)


@FUZZ_VALIDATION
@given(changes=st.lists(st.tuples(st.sampled_from(ALL_PATHS), values), min_size=1, max_size=3))
def test_a_matrix_with_any_values_anywhere_is_accepted_or_refused_cleanly(
    tmp_path: Path, changes: list[tuple[tuple[Any, ...], Any]]
) -> None:
    raw = copy.deepcopy(BASE)
    for where, value in changes:
        put(raw, where, value)
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    check(path, tmp_path)


@FUZZ
@given(data=st.binary(max_size=200) | text.map(lambda s: s.encode("utf-8")))
def test_any_bytes_as_a_matrix_file_are_refused_cleanly(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(data)
    check(path, tmp_path)


TOKENS = ["name: t\n", "classifiers:", " {A: ", "[", "]", "{", "}", ", ", "&a ", "*a", "!!python/",
          "!!binary ", "? ", "- ", "\n  ", "'", '"', "|\n", "<<: *a\n", "%YAML 1.1\n", "---\n", "0x1F"]
YAMLISH = st.lists(st.sampled_from(TOKENS) | text, max_size=12).map("".join)


@FUZZ
@given(source=YAMLISH)
def test_yaml_ish_text_is_parsed_or_refused_cleanly(tmp_path: Path, source: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(source, encoding="utf-8")
    check(path, tmp_path)


def cli_args(tmp: Path) -> st.SearchStrategy[list[str]]:
    """Commands, options and values that cannot start real work: the only matrix file is broken, and every
    store and folder is under ``tmp``."""
    broken = tmp / "broken.yaml"
    broken.write_text("name: [unclosed\n", encoding="utf-8")
    words = st.sampled_from([
        "run", "report", "validate", "list", "export", "check", "--matrix", str(broken),
        str(tmp / "none.yaml"), "--db", str(tmp / "x.db"), str(tmp), "--out", str(tmp / "out"), "--format",
        "csv", "json", "parquet",
        "--run", "-1", "0", "7", "--level", "1.5", "--correction", "holm", "--device", "cuda:9", "--download",
        "--force", "--quiet", "--json", "--baseline", "classifiers", "defenses", "--help", "--version", "--",
        "--data-dir", "--artifacts", "--matrix=", "--executor", "local",
    ])
    return st.lists(words | text, max_size=8)


def test_command_lines_end_in_success_or_a_clean_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default store, reports and artifacts are looked for here
    runner = CliRunner()

    @FUZZ
    @given(args=cli_args(tmp_path))
    def one(args: list[str]) -> None:
        result = runner.invoke(main, args)
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"bench {args}: {result.exception!r}\n{result.output}"
        )
        assert "Traceback" not in result.output

    one()
