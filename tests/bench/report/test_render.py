"""Tests for bench.report.render: the static site rendered from small, hand-built results stores.

The main store holds one finished matrix with two defenses ("aaa" and the undefended "none") over native,
cross-model and ensemble-size experiments, one cell that failed a soundness check, one reduced-scale cell, and
two further runs whose names (and a defense label) are hostile, to check escaping and file-name sanitizing,
and a run that never finished. A second store holds run histories: a re-run that skipped every stored job, a
run resumed after a failure, and two matrix files that share a name.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.evaluation.rows import ResultRow, accuracy_row
from bench.report import pages
from bench.report.data import MatrixKey
from bench.report.pages import matrix_file_name, matrix_file_names
from bench.report.render import render_site
from bench.storage import JobRecord, Store
from bench.uses import ClassifierUse, EvaluationUse, ExperimentKind, FrontEndUse, JobUse, Relation

EPS = 8 / 255
HOSTILE = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
REDUCED_NOTE = "evaluated on 50 of 10000 test examples"
T0 = datetime(2024, 5, 1, 12, 0, 0)


# -- building the store --------------------------------------------------------------------------------------
def use(
    exp: int,
    kind: ExperimentKind,
    relation: Relation,
    defense: str,
    guides: Sequence[str],
    target: str,
    *,
    attack: str = "worst-case",
    m: int | None = None,
    draw: int | None = None,
) -> EvaluationUse:
    return EvaluationUse(
        experiment=exp,
        kind=kind,
        relation=relation,
        defense=defense,
        defense_kind="none" if defense == "none" else "aaa",
        guides=list(guides),
        target=target,
        arch="resnet18",
        dataset="cifar10",
        train_dataset="cifar10",
        m=m,
        draw=draw,
        threat="linf-std",
        norm="linf",
        eps=EPS,
        attack=attack,
    )


def rows(
    u: EvaluationUse, clean: int, robust: int, n: int = 100, scale: tuple[str, ...] = ()
) -> list[ResultRow]:
    def correct(k: int) -> torch.Tensor:
        return torch.arange(n) < k

    common: dict[str, Any] = dict(
        examples="e" * 64,
        wall_s=12.5,
        n_forward=4000,
        n_backward=3900,
        scale_notes=scale,
        cost_per_prediction=1,
    )
    return [
        accuracy_row(u, attack=u.attack, metric="clean_accuracy", correct=correct(clean), **common),
        accuracy_row(u, attack=u.attack, metric="robust_accuracy", correct=correct(robust), **common),
    ]


def job_key(run: int, label: str) -> str:
    return hashlib.sha256(f"{run}:{label}".encode()).hexdigest()


def record(
    store: Store,
    run: int,
    kind: str,
    label: str,
    uses: Sequence[JobUse],
    *,
    results: Sequence[ResultRow] = (),
    flags: Sequence[dict[str, Any]] = (),
    config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> None:
    key = job_key(run, label)
    store.record_job(
        run,
        JobRecord(
            key=key,
            kind=kind,
            label=label,
            config=config or {},
            started_at=T0,
            ended_at=T0 + timedelta(seconds=90),
            metrics=metrics or {},
            artifacts=(),
            results=results,
            flags=flags,
        ),
        uses,
    )


def cell(
    store: Store,
    run: int,
    uses: list[EvaluationUse],
    clean: int,
    robust: int,
    *,
    n: int = 100,
    scale: tuple[str, ...] = (),
    failed: str | None = None,
) -> str:
    """Record a worst-case cell computed by ``run``; returns its job key."""
    u = uses[0]
    flags = [
        {"check": "robust-le-clean", "passed": True, "detail": "robust <= clean on every example"},
        {"check": "inside-threat", "passed": failed is None, "detail": failed or "all within eps"},
    ]
    label = f"cell {u.defense} {u.guides} -> {u.target}"
    record(store, run, "cell", label, uses, results=rows(u, clean, robust, n, scale), flags=flags)
    return job_key(run, label)


def start(store: Store, name: str, path: str | None = None) -> int:
    return store.start_run(
        matrix_name=name,
        matrix_path=path or f"matrices/{name}.yaml",
        matrix_sha256="f" * 64,
        matrix={"name": name},
        git_commit="0123456789abcdef0123",
        device="cpu: x86_64, 8 threads",
        versions={"python": "3.11.9", "torch": "2.3.0", "pydantic": None},
    )


def build(store: Store) -> None:
    run = start(store, "demo")
    # C's row comes from a store written before a classifier job recorded where its normalization came from.
    normalizations = {
        "A": ("train", [0.4914, 0.4822, 0.4465], [0.247, 0.2435, 0.2616], "matrix"),
        "B": ("weights", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], "weights file"),
        "C": ("weights", [0.0] * 3, [1.0] * 3, None),
    }
    for label, (origin, mean, std, came_from) in normalizations.items():
        record(
            store,
            run,
            "train-classifier",
            f"classifier {label}",
            [ClassifierUse(classifier=label)],
            config={"arch": "resnet18", "dataset": "cifar10", "seed": 0, "origin": origin,
                    "normalization": {"mean": mean, "std": std}},
            metrics={"test_accuracy": 0.942, "test_n": 10000}
            | ({"normalization_from": came_from} if came_from else {}),
        )
    record(
        store,
        run,
        "train-defense",
        "front-end aaa A+B",
        [FrontEndUse(defense="aaa", guides=["A", "B"])],
        config={"kind": "aaa", "params": {"width": 32}, "seed": 0},
        metrics={"final_loss": 0.4321},
    )
    record(
        store,
        run,
        "train-defense",
        "front-end none",
        [FrontEndUse(defense="none", guides=[])],
        config={"kind": "none", "params": {}, "seed": 0},
    )

    cell(store, run, [use(0, "native", "native", "aaa", "AB", "A")], 93, 62)
    cell(store, run, [use(0, "native", "native", "aaa", "AB", "B")], 88, 41, failed="max |delta| 0.05 > eps")
    cell(store, run, [use(0, "native", "no-guides", "none", "", "A")], 90, 12)
    cell(store, run, [use(0, "native", "no-guides", "none", "", "B")], 91, 3)
    shared = [
        use(1, "cross-model", "cross-model", "aaa", "AB", "C"),
        use(2, "ensemble-size", "cross-model", "aaa", "AB", "C", m=2, draw=0),
    ]
    cell(store, run, shared, 55, 47)
    cell(
        store, run, [use(1, "cross-model", "no-guides", "none", "", "C")], 30, 9, n=50, scale=(REDUCED_NOTE,)
    )
    cell(store, run, [use(2, "ensemble-size", "cross-model", "aaa", "A", "C", m=1, draw=0)], 57, 20)
    for attack, robust in (("pgd", 70), ("apgd-ce", 62)):
        u = use(0, "native", "native", "aaa", "AB", "A", attack=attack)
        record(store, run, "attack", f"{attack} aaa -> A", [u], results=rows(u, 93, robust))
    store.finish_run(run, "done")

    hostile = start(store, HOSTILE)
    cell(store, hostile, [use(0, "native", "native", HOSTILE, "A", "A")], 80, 30)
    store.finish_run(hostile, "failed", f"RuntimeError: {HOSTILE}")

    escape = start(store, "../../escape")
    cell(store, escape, [use(0, "native", "native", "aaa", "A", "A")], 80, 35)
    store.finish_run(escape, "done")

    start(store, "stalled")  # interrupted before any cell finished: never marked done or failed


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    store = Store(root / "r.db")
    build(store)
    out = root / "site"
    index = render_site(store, out)
    assert index == out / "index.html"
    return out


def page(site: Path, name: str) -> str:
    return (site / name).read_text(encoding="utf-8")


def key(matrix: str, path: str | None = None) -> MatrixKey:
    """The key a run started by :func:`start` gets (its path normalized, as the report does)."""
    return MatrixKey(matrix, posixpath.normpath(path or f"matrices/{matrix}.yaml"))


def matrix_page(site: Path, matrix: str, path: str | None = None) -> str:
    return page(site, matrix_file_name(key(matrix, path)))


def text(html: str) -> str:
    """What a reader sees of a page: tags dropped, entities decoded, whitespace collapsed."""
    body = re.sub(r"<(style|script)\b.*?</\1>", " ", html, flags=re.S)
    return " ".join(html_lib.unescape(re.sub(r"<[^>]+>", " ", body)).split())


# -- reading the HTML back -----------------------------------------------------------------------------------
@dataclass
class Cell:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    titles: list[str] = field(default_factory=list)


@dataclass
class Table:
    classes: set[str]
    rows: list[list[Cell]] = field(default_factory=list)

    def row(self, first: str) -> list[Cell]:
        return next(r for r in self.rows if r[0].text == first)

    def column(self, header: str) -> list[Cell]:
        """The body cells under the header cell whose text starts with ``header``."""
        at = next(i for i, c in enumerate(self.rows[0]) if c.text.startswith(header))
        return [r[at] for r in self.rows[1:]]

    def records(self) -> list[dict[str, Cell]]:
        """Each body row by header text."""
        return [{h.text: c for h, c in zip(self.rows[0], r, strict=True)} for r in self.rows[1:]]


class Tables(HTMLParser):
    """Every table with its cells' whitespace-normalized text and the title attributes inside each cell."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tables: list[Table] = []
        self._cell: Cell | None = None
        self.feed(html)
        for table in self.tables:
            for r in table.rows:
                for c in r:
                    c.text = " ".join(c.text.split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "table":
            self.tables.append(Table(set(a.get("class", "").split())))
        elif tag == "tr":
            self.tables[-1].rows.append([])
        elif tag in ("td", "th"):
            self._cell = Cell(tag, a)
            self.tables[-1].rows[-1].append(self._cell)
        if self._cell is not None and "title" in a:
            self._cell.titles.append(a["title"])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.text += data

    def with_class(self, name: str) -> list[Table]:
        return [t for t in self.tables if name in t.classes]


# -- tests ---------------------------------------------------------------------------------------------------
def transfer_cells(html: str) -> list[Cell]:
    return [c for t in Tables(html).with_class("transfer") for r in t.rows for c in r]


def test_one_transfer_table_puts_native_and_transferred_numbers_on_one_row(site: Path) -> None:
    tables = Tables(matrix_page(site, "demo")).with_class("transfer")
    assert len(tables) == 1  # the native and cross-model experiments share the threat model, hence one table
    table = tables[0]
    assert [c.text for c in table.rows[0]] == ["defense [guides] \\ target", "A", "B", "C"]
    # The ensemble-size-only front-end (aaa [A], m = 1) has its own m table, not a row here.
    assert [r[0].text for r in table.rows[1:]] == ["aaa [A+B]", "none"]
    aaa = table.row("aaa [A+B]")
    assert [c.attrs["class"] for c in aaa[1:]] == [
        "cell rel-native",
        "cell rel-native",
        "cell rel-cross-model",
    ]
    assert [c.text.split()[-1] for c in aaa[1:]] == ["native", "native", "cross-model"]
    assert "robust 47.0% [36.9, 57.2]" in aaa[3].text
    assert [c.text.split()[-1] for c in table.row("none")[1:]] == ["undefended"] * 3


def test_transfer_cell_shows_clean_and_robust_with_intervals_and_n(site: Path) -> None:
    table = Tables(matrix_page(site, "demo")).with_class("transfer")[0]
    assert (
        table.row("aaa [A+B]")[1].text
        == "robust 62.0% [51.7, 71.5] clean 93.0% [86.1, 97.1] n = 100 · cost/prediction 1 native"
    )
    assert "robust 12.0% [6.4, 20.0]" in table.row("none")[1].text


def test_unreliable_marker_sits_on_the_flagged_cell_only(site: Path) -> None:
    cells = transfer_cells(matrix_page(site, "demo"))
    marked = [c for c in cells if "unreliable" in c.text]
    assert len(marked) == 1
    assert "41.0% [31.3, 51.3] unreliable: inside-threat" in marked[0].text
    assert "inside-threat: max |delta| 0.05 > eps" in marked[0].titles

    board = Tables(page(site, "leaderboard.html")).with_class("leaderboard")[0]
    flagged = [r for r in board.records() if "unreliable" in r["soundness"].text]
    assert [(r["defense"].text, r["target"].text) for r in flagged] == [("aaa", "B")]
    assert {r["soundness"].text for r in board.records()} - {"unreliable: inside-threat"} == {"reliable"}


def test_reduced_scale_cell_is_marked_and_its_note_stated(site: Path) -> None:
    html = matrix_page(site, "demo")
    reduced = [c for c in transfer_cells(html) if "reduced" in c.text]
    assert len(reduced) == 1
    assert "robust 18.0% [8.6, 31.4] reduced1" in reduced[0].text
    assert f"Reduced scale: {REDUCED_NOTE}" in html

    board_html = page(site, "leaderboard.html")
    board = Tables(board_html).with_class("leaderboard")[0]
    scales = {(r["defense"].text, r["target"].text): r["scale"].text for r in board.records()
              if r["matrix"].text == "demo"}
    assert scales[("none", "C")] == "reduced1"
    assert {v for k, v in scales.items() if k != ("none", "C")} == {"full"}
    assert f"Reduced scale: {REDUCED_NOTE}" in board_html


def test_ensemble_size_table_gives_robust_accuracy_per_m(site: Path) -> None:
    sizes = Tables(matrix_page(site, "demo")).with_class("sizes")[0]
    assert [c.text for c in sizes.rows[0]] == ["target", "m = 1", "m = 2"]
    assert [c.text for c in sizes.row("C")] == [
        "C",
        "20.0% [12.7, 29.2] n = 100 cost/prediction 1",
        "47.0% [36.9, 57.2] n = 100 cost/prediction 1",
    ]


def test_breakdown_and_cards(site: Path) -> None:
    tables = Tables(matrix_page(site, "demo"))
    attacks = tables.with_class("attacks")[0]
    assert attacks.rows[1][0].text.startswith("1. aaa [A+B] → A, linf-std (linf)")
    # A store written before attack jobs recorded run on / broke: derived from the side-by-side rows.
    assert [(r[0].text, r[2].text, r[3].text, r[4].text, r[7].text, r[8].text, r[9].text)
            for r in attacks.rows[2:]] == [
        ("apgd-ce", "93", "31", "62.0%", "12.5 s", "4000", "3900"),
        ("pgd", "93", "23", "70.0%", "12.5 s", "4000", "3900"),
    ]
    html = matrix_page(site, "demo")
    assert "94.2%" in html and "final_loss 0.4321" in html
    assert "f" * 64 in html and "matrices/demo.yaml" in html


def test_classifier_cards_show_the_normalization_and_where_it_came_from(site: Path) -> None:
    cards = next(t for t in Tables(matrix_page(site, "demo")).tables if t.rows[0][0].text == "classifier")
    assert [c.text for c in cards.rows[0][4:6]] == ["origin", "normalization"]
    assert {r[0].text: (r[4].text, r[5].text) for r in cards.rows[1:]} == {
        "A": ("train", "mean [0.4914, 0.4822, 0.4465], std [0.247, 0.2435, 0.2616] (matrix)"),
        "B": ("weights", "mean [0.485, 0.456, 0.406], std [0.229, 0.224, 0.225] (weights file)"),
        "C": ("weights", "none"),
    }


def test_leaderboard_is_sorted_by_robust_accuracy_and_has_one_row_per_cell(site: Path) -> None:
    html = page(site, "leaderboard.html")
    boards = Tables(html).with_class("leaderboard")
    assert len(boards) == 1  # every cell is a cifar10 cell at linf 8/255
    assert "ε = 8/255" in text(html)
    board = boards[0]
    assert {"sortable", "filterable"} <= board.classes
    robust = [float(c.attrs["data-sort"]) for c in board.column("robust")]
    assert robust == sorted(robust, reverse=True)
    # 7 distinct cells in "demo" (the one shared by two experiments counts once), one per other matrix.
    assert len(robust) == 9
    assert [c.text for c in board.column("#")] == [str(i) for i in range(1, 10)]
    best = board.records()[0]
    assert best["robust [95% CI]"].text == "62.0% [51.7, 71.5]"
    assert best["clean [95% CI]"].text == "93.0% [86.1, 97.1]"
    assert (best["relation"].text, best["n"].text, best["inference cost"].text) == ("native", "100", "1")
    # The front-end's training job: 90 s on the device of the run that computed it.
    assert best["training cost"].text == "90.0 s cpu: x86_64, 8 threads"
    assert best["run"].text == "#1"
    # A row links to the table showing it: the shared cell to the transfer table, m = 1 to its m table;
    # and to the provenance of the run that computed it.
    demo = matrix_file_name(key("demo"))
    links = re.findall(r'<a href="([^"]+)">demo</a>', html)
    assert sorted(set(links)) == [f"{demo}#sizes-2", f"{demo}#transfer-1"]
    assert links.count(f"{demo}#sizes-2") == 1
    assert html.count(f'<a href="{demo}#run-1">#1</a>') == 7


def test_site_is_self_contained(site: Path) -> None:
    for path in site.iterdir():
        html = path.read_text(encoding="utf-8")
        assert "http://" not in html and "https://" not in html
        # Plots are inline SVG whose only references (url(#...), href="#...") are to ids on the same page.
        external = r"<link\b|<script[^>]*\bsrc=|<img\b|@import|url\((?!#)|href=\"data:"
        assert not re.search(external, html), path.name
        assert html.count("<script") == 1, path.name  # the inline table sorter and filter, and nothing else


def test_hostile_names_are_escaped_and_files_stay_in_out_dir(site: Path) -> None:
    names = ["demo", HOSTILE, "../../escape", "stalled"]
    pages = matrix_file_names(key(n) for n in names).values()
    assert sorted(p.name for p in site.iterdir()) == sorted(["index.html", "leaderboard.html", *pages])
    assert {p.name for p in site.parent.iterdir() if not p.name.startswith("r.db")} == {"site"}
    hostile_page = matrix_page(site, HOSTILE)
    for html in (page(site, "index.html"), page(site, "leaderboard.html"), hostile_page):
        assert HOSTILE not in html
        assert ESCAPED in html
    assert "This run failed" in hostile_page
    assert "This run failed" not in matrix_page(site, "demo")


def test_matrix_file_names_are_plain_distinct_and_stable(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ["demo", "../x", "..", "", "a/b", "a_b", "Demo", HOSTILE, "x" * 300]
    keys = [MatrixKey(n, "m.yaml") for n in names] + [MatrixKey("demo", "other/m.yaml")]
    files = matrix_file_names(keys)
    assert files[MatrixKey("demo", "m.yaml")].startswith("matrix-demo-")
    assert len({f.lower() for f in files.values()}) == len(keys)
    for f in files.values():
        assert re.fullmatch(r"matrix-[A-Za-z0-9][A-Za-z0-9_.-]*-[0-9a-f]{10}\.html", f) and len(f) < 120, f
    # A page's name depends on its matrix alone, not on which other matrices the store holds.
    assert {k: matrix_file_names([k])[k] for k in keys} == files
    # Should two short hashes ever clash, one page takes the full hash rather than sharing a file.
    monkeypatch.setattr(pages, "_HASH_CHARS", 0)
    clash = matrix_file_names([MatrixKey("demo", "a.yaml"), MatrixKey("demo", "b.yaml")])
    assert len(set(clash.values())) == 2


def test_index_lists_every_run_with_provenance(site: Path) -> None:
    runs = Tables(page(site, "index.html")).with_class("sortable")[0]
    assert [r[0].text.split()[0] for r in runs.rows[1:]] == ["#4", "#3", "#2", "#1"]
    demo = runs.rows[4]
    assert [demo[1].text, demo[2].text, demo[6].text] == ["demo", "done", "01234567"]
    assert demo[7].text == "python 3.11.9, torch 2.3.0"
    assert "failed" in runs.rows[3][2].text


def test_unfinished_run_is_shown_as_such(site: Path) -> None:
    html = matrix_page(site, "stalled")
    assert "This run did not finish" in html and "This run has no completed cells." in html
    assert "did not finish" not in matrix_page(site, "demo")


@pytest.fixture(scope="module")
def cascade_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One standard-protocol cell whose two attacks cascaded, the second named unreliable by a check."""
    root = tmp_path_factory.mktemp("cascade")
    store = Store(root / "r.db")
    run = start(store, "cascade")
    labels = ["std:transfer", "std:pgd-ce"]
    base = use(0, "native", "native", "aaa", "AB", "A")
    worst = base.model_copy(update={"attacks": labels, "standard_protocol": 1, "cascade": labels})
    record(store, run, "cell", "cell", [worst], results=rows(worst, 93, 60),
           metrics={"unreliable_attacks": {"std:pgd-ce": ["dead-gradients"]}})
    for label, run_on, left in (("std:pgd-ce", 80, 60), ("std:transfer", 93, 80)):
        u = base.model_copy(update={"attack": label})
        clean, robust = rows(u, 93, left)
        robust = robust.model_copy(update={"metric": "cascade_robust_accuracy"})
        record(store, run, "attack", label, [u], results=[clean, robust],
               metrics={"run_on": run_on, "broke": run_on - left, "cascade": True})
    store.finish_run(run, "done")
    render_site(store, root / "site")
    return root / "site"


def test_per_attack_table_gives_run_on_broke_and_unreliable_marks_in_order(cascade_site: Path) -> None:
    html = matrix_page(cascade_site, "cascade")
    attacks = Tables(html).with_class("attacks")[0]
    assert attacks.rows[1][0].text.endswith("standard protocol v1 (std:transfer → std:pgd-ce)")
    assert [(r[0].text, r[2].text, r[3].text, r[4].text) for r in attacks.rows[2:]] == [
        ("std:transfer", "93", "13", "80.0% so far"),
        ("std:pgd-ce unreliable: dead-gradients", "80", "20", "60.0% so far"),
    ]
    assert "worst case over the standard protocol v1 (std:transfer → std:pgd-ce)" in text(html)


# -- run histories -------------------------------------------------------------------------------------------
HIST = [
    [use(0, "native", "native", "aaa", "A", "A")],
    [use(0, "native", "no-guides", "none", "", "A")],
    [use(1, "cross-model", "cross-model", "aaa", "A", "B")],
]


def build_history(store: Store) -> None:
    """Runs 1-2: "hist" computed, then re-run (its path spelled differently) finding every job stored.
    Runs 3-4: "resumed" fails after one cell, the next run computes the other. Runs 5-6: two files "twin".
    Run 7: "shared" needs only a job run 1 computed for "hist"."""
    first = start(store, "hist")
    keys = [cell(store, first, u, 80, 40 - 10 * i) for i, u in enumerate(HIST)]
    store.finish_run(first, "done")
    again = start(store, "hist", "./matrices/hist.yaml")
    for key, u in zip(keys, HIST, strict=True):
        store.link(again, key, u, skipped=True)
    store.finish_run(again, "done")

    native, undefended = HIST[0], HIST[1]
    broken = start(store, "resumed")
    done = cell(store, broken, native, 80, 45)
    store.finish_run(broken, "failed", "KeyboardInterrupt")
    resumed = start(store, "resumed")
    store.link(resumed, done, native, skipped=True)
    cell(store, resumed, undefended, 90, 2)
    store.finish_run(resumed, "done")

    for where, robust in (("one", 33), ("two", 22)):
        twin = start(store, "twin", f"matrices/{where}/twin.yaml")
        cell(store, twin, native, 70, robust)
        store.finish_run(twin, "done")

    shared = start(store, "shared")
    store.link(shared, keys[0], native, skipped=True)
    store.finish_run(shared, "done")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("history")
    store = Store(root / "h.db")
    build_history(store)
    render_site(store, root / "site")
    return root / "site"


RUN = r"\(\d{4}-\d\d-\d\d \d\d:\d\d UTC, commit 01234567, cpu: x86_64, 8 threads"


def test_page_credits_the_run_that_computed_its_numbers_not_the_rerun(history: Path) -> None:
    html = matrix_page(history, "hist")
    assert re.search(
        rf"Numbers computed in run #1 {RUN}\); last checked by run #2 {RUN}\), "
        r"which found all 3 of its jobs already in the store and skipped them\.",
        text(html),
    ), text(html)
    cells = [c for c in transfer_cells(html) if "cell" in c.attrs.get("class", "").split()]
    assert len(cells) == 3 and all(c.attrs["title"].endswith("computed in run #1") for c in cells)
    assert "as part of matrix" not in html  # "./matrices/hist.yaml" is the file run 1 ran


def test_numbers_computed_for_another_matrix_say_which(history: Path) -> None:
    assert re.search(
        rf"Numbers computed in run #1 {RUN}\); last checked by run #7 {RUN}\), "
        r"which found its one job already in the store and skipped it\. .* 1 job\(s\), 1 evaluated cell\(s\) "
        r"· as part of matrix hist \( ?matrices/hist.yaml ?\)",
        text(matrix_page(history, "shared")),
    )


def test_resumed_run_credits_each_run_with_its_share(history: Path) -> None:
    assert re.search(
        rf"Numbers computed in runs #3 {RUN}: 1 of 2 jobs\) and #4 {RUN}: 1 of 2 jobs\); "
        rf"last checked by run #4 {RUN}\), "
        r"which found 1 of its 2 jobs already in the store and computed the rest\.",
        text(matrix_page(history, "resumed")),
    )


def test_combination_not_evaluated_is_blank(history: Path) -> None:
    table = Tables(matrix_page(history, "hist")).with_class("transfer")[0]
    assert [c.text for c in table.rows[0]] == ["defense [guides] \\ target", "A", "B"]
    blank = table.row("none")[2]
    assert blank.attrs["class"] == "empty" and blank.text == ""
    assert table.row("aaa [A]")[2].text.endswith("cross-model")


def test_matrices_sharing_a_name_get_a_page_each(history: Path) -> None:
    one = text(matrix_page(history, "twin", "matrices/one/twin.yaml"))
    two = text(matrix_page(history, "twin", "matrices/two/twin.yaml"))
    assert "robust 33.0%" in one and "robust 22.0%" not in one
    assert "robust 22.0%" in two and "robust 33.0%" not in two
    # hist's two spellings of one path are one matrix: 5 pages in all.
    assert len([p for p in history.iterdir() if p.name.startswith("matrix-")]) == 5
    matrices = Tables(page(history, "index.html")).with_class("matrices")[0]
    assert sorted((r[0].text, r[1].text) for r in matrices.rows[1:] if r[0].text == "twin") == [
        ("twin", "matrices/one/twin.yaml"),
        ("twin", "matrices/two/twin.yaml"),
    ]


def test_page_names_survive_rerenders_and_new_matrices(tmp_path: Path) -> None:
    store = Store(tmp_path / "h.db")
    build_history(store)
    render_site(store, tmp_path / "before")
    run = start(store, "twin", "matrices/three/twin.yaml")
    cell(store, run, HIST[0], 60, 11)
    store.finish_run(run, "done")
    render_site(store, tmp_path / "after")
    before = {p.name for p in (tmp_path / "before").iterdir()}
    after = {p.name for p in (tmp_path / "after").iterdir()}
    assert before < after and len(after - before) == 1


def test_every_transfer_table_of_a_page_orders_rows_and_columns_alike(tmp_path: Path) -> None:
    """Concurrent runs record a matrix's cells in any order; a reader comparing two radii must find each
    front-end on the same row and each target in the same column of both tables."""
    store = Store(tmp_path / "r.db")
    run = start(store, "order")
    plan: list[tuple[int, ExperimentKind, Relation, str, str, str]] = [
        (0, "native", "native", "aaa", "A", "A"),
        (1, "cross-model", "cross-model", "aaa", "A", "B"),
        (2, "native", "no-guides", "none", "", "B"),
    ]
    for eps, recorded in ((EPS, plan), (2 * EPS, plan[::-1])):
        for exp, kind, relation, defense, guides, target in recorded:
            u = use(exp, kind, relation, defense, guides, target).model_copy(update={"eps": eps})
            label = f"cell {defense} {guides} -> {target} at {eps}"
            record(store, run, "cell", label, [u], results=rows(u, 90, 40))
    store.finish_run(run, "done")
    render_site(store, tmp_path / "site")
    tables = Tables(matrix_page(tmp_path / "site", "order")).with_class("transfer")
    assert len(tables) == 2
    for table in tables:
        assert [c.text for c in table.rows[0]] == ["defense [guides] \\ target", "A", "B"]
        assert [r[0].text for r in table.rows[1:]] == ["aaa [A]", "none"]
