"""The static HTML report: a run index, one page per matrix, and a sortable leaderboard.

Everything a page needs (CSS, the table sorter) is inlined, so a report folder can be archived, mailed or
opened from file:// years later without a network. Matrix names, labels and check details come from user
files, so they only ever reach HTML through Jinja's autoescaping, and file names are derived defensively.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from bench.report.data import latest_runs, matrix_key, run_view
from bench.report.format import (
    check_details,
    check_names,
    eps_label,
    interval,
    pct,
    relation_class,
    relation_label,
    row_label,
    scale_note,
    seconds,
    short_commit,
    status_class,
    versions_summary,
    when,
)
from bench.report.pages import leaderboard_rows, matrix_file_names, matrix_page, numbered
from bench.storage import Store


def _write(out_dir: Path, file_name: str, text: str) -> Path:
    path = out_dir / file_name
    if path.resolve().parent != out_dir.resolve():
        raise ValueError(f"refusing to write {file_name!r} outside {out_dir}")
    path.write_text(text, encoding="utf-8")
    return path


# -- rendering -----------------------------------------------------------------------------------------------
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("bench", "report/templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        pct=pct,
        interval=interval,
        when=when,
        seconds=seconds,
        check_names=check_names,
        check_details=check_details,
        status_class=status_class,
        relation_class=relation_class,
        short_commit=short_commit,
        versions=versions_summary,
        scale_note=scale_note,
    )
    env.globals.update(
        eps_label=eps_label, row_label=row_label, relation_label=relation_label, matrix_key=matrix_key
    )
    return env


def render_site(store: Store, out_dir: Path) -> Path:
    """Write index.html, leaderboard.html and one page per matrix (its latest run) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    runs = store.runs()
    by_id = {run.id: run for run in runs}
    latest = latest_runs(store)
    names = matrix_file_names(matrix_key(run) for run in runs)
    pages = [matrix_page(key, run_view(store, run, by_id), names[key]) for key, run in latest.items()]
    matrix_template = env.get_template("matrix.html")
    for page in pages:
        _write(out_dir, page.file_name, matrix_template.render(page=page))
    board = leaderboard_rows(pages)
    board_notes: dict[str, int] = {}
    notes = numbered(dict.fromkeys(r.cell.scale for r in board if r.cell.reduced), board_notes)
    _write(
        out_dir,
        "leaderboard.html",
        env.get_template("leaderboard.html").render(rows=board, notes=notes, note_of=board_notes),
    )
    shown = {run.id for run in latest.values()}
    run_pages = {run.id: names[matrix_key(run)] for run in runs}
    return _write(
        out_dir,
        "index.html",
        env.get_template("index.html").render(
            runs=list(reversed(runs)), pages=pages, run_pages=run_pages, shown=shown
        ),
    )
