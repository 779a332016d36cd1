"""Hostile and broken input ends in a message the user can act on and a documented exit code: names that
would reach a path, a web page or the terminal, YAML that builds objects or expands without bound, files
that are not UTF-8, a matrix with schema and rule errors at once, report and store paths that cannot be
used."""

from __future__ import annotations

import codecs
import copy
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from bench.cli import REPORT_MARK, main
from bench.config import load_matrix, read_matrix
from bench.errors import ConfigError
from bench.report.render import render_site
from bench.report.summary import print_run_summary
from bench.storage import Store
from bench.validate import load_valid_matrix
from tests.bench.test_config import BASE, edit

HOSTILE_NAMES = [
    "../escape",
    "/etc/passwd",
    "a/b",
    "a\\b",
    ".hidden",
    "<script>alert(1)</script>",
    "\x1b]0;pwned\x07",
    "a\rb",
    "",
    "x" * 65,
    "A+B",
    "std:pgd-ce",
    "a\u202eb",
]


def write(tmp_path: Path, raw: dict[str, Any] | str | bytes, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    if isinstance(raw, bytes):
        path.write_bytes(raw)
    else:
        path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw), encoding="utf-8")
    return path


def all_problems(tmp_path: Path, raw: dict[str, Any] | str | bytes) -> str:
    with pytest.raises(ConfigError) as err:
        load_valid_matrix(write(tmp_path, raw), tmp_path)
    return str(err.value)


def renamed(section: str, old: str, new: str) -> dict[str, Any]:
    raw = copy.deepcopy(BASE)
    raw[section] = {new if k == old else k: v for k, v in raw[section].items()}
    return raw


def refused_name(msg: str, name: str) -> bool:
    """A name is refused by the name rule, or, holding a control character, by the check of every string
    in the file, which comes first; either way the message shows it escaped."""
    return "is not a valid name" in msg or "control character U+" in msg


def printable(text: str) -> bool:
    """Nothing in the text would steer a terminal: no control character but newlines."""
    return not any(ord(ch) < 32 and ch != "\n" or 0x7F <= ord(ch) < 0xA0 for ch in text)


# -- names ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("section, old", [("classifiers", "C"), ("defenses", "none"), ("threats", "linf"),
                                          ("attacks", "pgd")])
def test_a_label_that_would_reach_a_path_html_or_the_terminal_is_refused(
    tmp_path: Path, section: str, old: str, name: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_matrix(write(tmp_path, renamed(section, old, name)))
    msg = str(err.value)
    assert refused_name(msg, name) and repr(name) in msg and printable(msg)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_matrix_name_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_matrix(write(tmp_path, edit(name=name)))
    assert refused_name(str(err.value), name) and printable(str(err.value))


@pytest.mark.parametrize(
    "name, why",
    [("../x", "path separator"), (".x", "starts with '.'"), ("x" * 65, "65 characters long"),
     ("a<b", "holds '<'"), ("a:b", "holds ':'")],
)
def test_a_refused_name_says_what_is_wrong_with_it(tmp_path: Path, name: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        load_matrix(write(tmp_path, renamed("threats", "linf", name)))


@pytest.mark.parametrize("where", ["scale", "description", "classifiers__A__arch", "experiments__0__guides"])
def test_a_control_character_anywhere_in_the_file_is_refused_with_its_key_path(
    tmp_path: Path, where: str
) -> None:
    value: Any = ["A\x1b[2J"] if where.endswith("guides") else "x\x1b]0;pwned\x07y"
    msg = all_problems(tmp_path, edit(**{where: value}))
    assert "control character U+001B" in msg and where.replace("__", ".").split(".")[0] in msg
    assert printable(msg)


def test_a_control_character_in_a_key_is_shown_escaped(tmp_path: Path) -> None:
    msg = all_problems(tmp_path, edit(defenses__aaa__params={"\x1b[31mred": 1}))
    assert "defenses.aaa.params.'\\x1b[31mred'" in msg and printable(msg)


def test_free_text_may_span_lines(tmp_path: Path) -> None:
    matrix = load_valid_matrix(write(tmp_path, edit(scale="reduced:\n\t2 epochs")), tmp_path)
    assert matrix.scale == "reduced:\n\t2 epochs"


def test_bench_validate_refuses_hostile_names_without_a_traceback(tmp_path: Path) -> None:
    raw = renamed("classifiers", "C", "\x1b]0;pwned\x07")
    raw["experiments"] = [{"kind": "native", "defenses": ["aaa"], "guides": ["\x1b]0;pwned\x07"]}]
    result = invoke(["validate", "--matrix", str(write(tmp_path, raw)), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2 and "control character U+001B" in result.output
    assert printable(result.output) and "Traceback" not in result.output


# -- YAML ----------------------------------------------------------------------------------------------------
def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'name: !!python/object/apply:os.system ["touch pwned"]\n')
    with pytest.raises(ConfigError, match="could not determine a constructor"):
        read_matrix(path)
    assert not Path("pwned").exists()


def test_an_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines += ["name: t", "classifiers: {A: {arch: mnist-a, dataset: mnist, train: {x: *a9}}}"]
    bomb = "\n".join(lines) + "\n"
    start = time.monotonic()
    with pytest.raises(ConfigError, match="alias bomb"):
        read_matrix(write(tmp_path, bomb))
    assert time.monotonic() - start < 5


def test_a_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="infinite"):
        read_matrix(write(tmp_path, "name: t\ndescription: &loop [*loop]\n"))


def test_nesting_deeper_than_any_matrix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nests deeper"):
        read_matrix(write(tmp_path, "name: t\ndescription: " + "[" * 5000 + "]" * 5000 + "\n"))


@pytest.mark.parametrize("value", ["2024-01-01", "!!binary aGk=", "!!set {a: null}"])
def test_values_json_has_no_type_for_are_refused(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="is not a matrix value"):
        read_matrix(write(tmp_path, f"name: t\ndescription: {value}\n"))


@pytest.mark.parametrize(
    "data, expected",
    [
        (codecs.BOM_UTF16_LE + "name: t\n".encode("utf-16-le"), "is UTF-16 text; save it as UTF-8"),
        (codecs.BOM_UTF32_BE + "name: t\n".encode("utf-32-be"), "is UTF-32 text; save it as UTF-8"),
        ("name: t\n".encode("utf-16-le"), "holds NUL bytes"),
        (bytes(range(256)), "holds NUL bytes"),
        ("name: t\ndescription: café\n".encode("latin-1"), "line 2 is not UTF-8 text"),
    ],
)
def test_a_file_that_is_not_utf8_text_gets_a_clear_error(tmp_path: Path, data: bytes, expected: str) -> None:
    result = invoke(["validate", "--matrix", str(write(tmp_path, data))])
    assert result.exit_code == 2 and expected in result.output and "Traceback" not in result.output


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    assert read_matrix(write(tmp_path, codecs.BOM_UTF8 + b"name: t\n")) == {"name": "t"}


def test_a_folder_as_matrix_file_gets_a_clear_error(tmp_path: Path) -> None:
    result = invoke(["validate", "--matrix", str(tmp_path)])
    assert result.exit_code == 2 and "cannot read the matrix file" in result.output


# -- every problem in one pass -------------------------------------------------------------------------------
def test_a_schema_error_does_not_hide_the_rule_errors_of_the_same_file(tmp_path: Path) -> None:
    raw = edit(classifiers__A__arch="mnist-zz", threats__linf__epsilons=[-0.3], evaluation={"n_eval": 0})
    msg = all_problems(tmp_path, raw)
    assert "the matrix has 3 problems" in msg
    assert "evaluation.n_eval" in msg and "unknown classifier 'mnist-zz'" in msg
    assert "threats.linf.epsilons[0]: epsilon must be > 0" in msg


def test_an_entry_left_out_for_its_schema_error_is_not_reported_again_as_unknown(tmp_path: Path) -> None:
    raw = edit(classifiers__C={"arch": "mnist-c"}, defenses__aaa__kind="aab")  # C misses its dataset
    msg = all_problems(tmp_path, raw)
    assert "classifiers.C.dataset: required key is missing" in msg and "unknown defense kind" not in msg
    assert "unknown defense 'aab'" in msg
    assert "unknown classifier 'C'" not in msg, "C is referenced by experiments[1]; a follow-on"


def test_rule_errors_name_the_experiment_by_its_place_in_the_file(tmp_path: Path) -> None:
    raw = edit()
    raw["experiments"] = [
        {"kind": "native", "defenses": ["aaa"]},  # neither guides nor guide_sets: a schema error
        {"kind": "native", "defenses": ["nope"], "guides": ["A"]},
    ]
    msg = all_problems(tmp_path, raw)
    assert "experiments[0]" in msg and "experiments[1].defenses[0]: unknown defense 'nope'" in msg


def test_a_required_part_that_is_wrong_itself_reports_the_schema_error_alone(tmp_path: Path) -> None:
    msg = all_problems(tmp_path, edit(classifiers={}))
    assert msg.startswith(f"{tmp_path / 'm.yaml'}: classifiers:")


def test_an_unknown_dataset_is_reported_once_without_a_follow_on(tmp_path: Path) -> None:
    msg = all_problems(tmp_path, edit(classifiers__A__dataset="mnsit"))
    assert "unknown dataset 'mnsit'" in msg
    assert "guides' dataset" not in msg and "problems" not in msg


# -- the scale statement -------------------------------------------------------------------------------------
def store_with_run(tmp_path: Path, scale: str) -> tuple[Store, int]:
    store = Store(tmp_path / "results.db")
    run_id = store.start_run(
        matrix_name="t", matrix_path="m.yaml", matrix_sha256="0" * 64, matrix={**BASE, "scale": scale},
        git_commit=None, versions={}, device="cpu",
    )
    store.finish_run(run_id, "done")
    return store, run_id


def test_the_matrix_scale_statement_is_shown_escaped_on_its_page(tmp_path: Path) -> None:
    store, _ = store_with_run(tmp_path, "2 epochs <script>alert(1)</script>")
    render_site(store, tmp_path / "site", None, tmp_path)
    shared = ("index.html", "leaderboard.html")
    page = next(p for p in (tmp_path / "site").glob("*.html") if p.name not in shared)
    html = page.read_text()
    assert "Scale, as the matrix states it:</strong> 2 epochs &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)" not in html


def test_bench_run_prints_the_matrix_scale_statement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, run_id = store_with_run(tmp_path, "reduced to 2 epochs")
    print_run_summary(store, run_id)
    assert "scale, as the matrix states it: reduced to 2 epochs" in capsys.readouterr().out


# -- report and store paths ----------------------------------------------------------------------------------
def invoke(args: list[str]) -> Result:
    return CliRunner().invoke(main, args)


@pytest.fixture()
def store_path(tmp_path: Path) -> Path:
    store, _ = store_with_run(tmp_path, "reduced")
    return store.path


def test_every_report_page_carries_the_mark_the_report_recognizes(tmp_path: Path, store_path: Path) -> None:
    result = invoke(["report", "--db", str(store_path), "--out", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    pages = list((tmp_path / "site").glob("*.html"))
    assert len(pages) == 3 and all(REPORT_MARK in p.read_text() for p in pages)
    again = invoke(["report", "--db", str(store_path), "--out", str(tmp_path / "site")])
    assert again.exit_code == 0, "a report folder is the report's to overwrite"


def test_report_out_onto_a_file_is_refused(tmp_path: Path, store_path: Path) -> None:
    out = write(tmp_path, "mine", "notes.txt")
    result = invoke(["report", "--db", str(store_path), "--out", str(out)])
    assert result.exit_code == 2 and "is a file" in result.output and out.read_text() == "mine"


def test_report_out_onto_someone_elses_pages_is_refused(tmp_path: Path, store_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    index = write(site, "<html><title>My site</title></html>", "index.html")
    result = invoke(["report", "--db", str(store_path), "--out", str(site)])
    assert result.exit_code == 2 and "holds index.html, which the report did not write" in result.output
    assert index.read_text() == "<html><title>My site</title></html>"


def test_report_out_that_cannot_be_created_is_refused(tmp_path: Path, store_path: Path) -> None:
    blocker = write(tmp_path, "x", "blocker")
    result = invoke(["report", "--db", str(store_path), "--out", str(blocker / "site")])
    assert result.exit_code == 2 and "cannot create the report folder" in result.output


def test_report_out_that_is_read_only_is_refused(
    tmp_path: Path, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir(mode=0o555)
    if os.access(site, os.W_OK):  # root ignores the folder's mode: answer as an unprivileged user is told
        real = os.access
        monkeypatch.setattr(
            "bench.cli.os.access", lambda path, mode: not mode & os.W_OK and real(path, mode)
            if Path(path) == site else real(path, mode)
        )
    result = invoke(["report", "--db", str(store_path), "--out", str(site)])
    assert result.exit_code == 2 and "the folder is read-only" in result.output


def test_a_report_write_that_fails_midway_is_a_clear_error(
    tmp_path: Path, store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device", "index.html")

    monkeypatch.setattr("bench.report.render.Path.write_text", full)
    result = invoke(["report", "--db", str(store_path), "--out", str(tmp_path / "site")])
    assert result.exit_code == 2 and "No space left on device" in result.output


def test_run_db_in_a_folder_that_cannot_be_created_is_refused(tmp_path: Path, data_dir: Path) -> None:
    blocker = write(tmp_path, "x", "blocker")
    matrix = write(tmp_path, BASE)
    args = ["run", "--matrix", str(matrix), "--db", str(blocker / "results.db"), "--data-dir", str(data_dir)]
    result = invoke([*args, "--artifacts", str(tmp_path / "artifacts")])
    assert result.exit_code == 2 and "cannot create the folder of results store" in result.output
    assert "Traceback" not in result.output
