"""The static HTML report: a run index, one page per matrix, and the leaderboards.

Everything a page needs (CSS, the table sorter and filter, the plots as SVG) is inlined, so a report folder
can be archived, mailed or opened from file:// years later without a network. Matrix names, labels and check
details come from user files, so they only ever reach HTML through Jinja's autoescaping (the plots' SVG,
the one thing marked safe, is written by matplotlib, which escapes the text in it), and file names are
derived defensively.
"""

from __future__ import annotations

import os
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from bench.artifacts import ArtifactStore
from bench.report.data import latest_runs, matrix_key, run_view
from bench.report.format import (
    as_printed,
    check_details,
    check_names,
    count,
    counts,
    eps_label,
    interval,
    number,
    pct,
    points,
    radius,
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
from bench.report.leaderboard import leaderboards
from bench.report.pages import matrix_file_names, matrix_page, numbered
from bench.report.paper import paper_section
from bench.report.plots import page_plots
from bench.report.radius_audit import radius_audit
from bench.report.samples import front_end_samples
from bench.storage import Store

#: Where ``bench run`` keeps artifacts and finds data unless told otherwise; the report looks there for the
#: front-ends whose effect on test images it shows.
DEFAULT_ARTIFACTS = Path("artifacts")


def default_data_root() -> Path:
    return Path(os.environ.get("BENCH_DATA_DIR") or "data").expanduser()


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
        count=count,
        counts=counts,
        number=number,
        radius=radius,
        as_printed=as_printed,
        points=points,
    )
    env.globals.update(
        eps_label=eps_label, row_label=row_label, relation_label=relation_label, matrix_key=matrix_key
    )
    return env


def render_site(
    store: Store,
    out_dir: Path,
    artifacts: str | os.PathLike[str] | None = DEFAULT_ARTIFACTS,
    data_root: Path | None = None,
) -> Path:
    """Write index.html, leaderboard.html and one page per matrix (its latest run) into ``out_dir``.

    ``artifacts`` and ``data_root`` (default: ``$BENCH_DATA_DIR``, else ``data``) are where the trained
    front-ends (a folder or an fsspec URL) and the test images are, for the pictures of what each front-end
    does; None, or a root without them, and each page says they are not available.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    env = environment()
    runs = store.runs()
    by_id = {run.id: run for run in runs}
    latest = latest_runs(store)
    names = matrix_file_names(matrix_key(run) for run in runs)
    found = ArtifactStore(artifacts) if artifacts is not None else None
    # A local folder that is not there has no pictures to offer; a URL root (``s3://…``) is asked per file.
    artifact_store = found if found is not None and (found.url or os.path.isdir(found.root)) else None
    root = data_root if data_root is not None else default_data_root()
    matrix_template = env.get_template("matrix.html")
    shown = []
    for key, run in latest.items():
        view = run_view(store, run, by_id)
        page = matrix_page(key, view, names[key])
        paper = paper_section(view)
        for table in paper.tables if paper is not None else []:
            reduced = (s for _, entries in table.rows for e in entries if e.ours for s in e.ours.reduced)
            table.notes = numbered(dict.fromkeys(reduced), page.note_of)
        audit = radius_audit(view)
        if audit is not None:
            scales = (e.view.scale for e in audit.entries if e.view.reduced)
            audit.notes = numbered(dict.fromkeys(scales), page.note_of)
        plots = page_plots(page, view)
        first = 1 + sum(len(p) for p in plots.values())
        samples = front_end_samples(store, view, artifact_store, root, first)
        _write(
            out_dir,
            page.file_name,
            matrix_template.render(page=page, paper=paper, audit=audit, plots=plots, samples=samples),
        )
        shown.append((page, view))
    boards, note_of = leaderboards(shown, by_id)
    board_page = env.get_template("leaderboard.html").render(boards=boards, note_of=note_of)
    _write(out_dir, "leaderboard.html", board_page)
    run_pages = {run.id: names[matrix_key(run)] for run in runs}
    return _write(
        out_dir,
        "index.html",
        env.get_template("index.html").render(
            runs=list(reversed(runs)),
            pages=[page for page, _ in shown],
            run_pages=run_pages,
            shown={run.id for run in latest.values()},
        ),
    )
