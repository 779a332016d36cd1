"""The report in a real browser: headless Chromium opens the rendered pages from disk (file://, as a reader
who was mailed the folder would) and the tests read back the DOM after the pages' own JavaScript ran.

- no page writes anything to the console (an uncaught error, a failed load): Chromium logs every console
  message of a page with ``--enable-logging=stderr``, and the pages log nothing by design;
- clicking a column header sorts its table (a harness page clicks inside the leaderboard, loaded in a frame);
- a link with ``?sort=...&order=...&q=...`` opens the leaderboard sorted and filtered;
- every plot is in the DOM as an SVG element, not as text;
- a screenshot of a matrix page is written under the test's temporary folder.

Skipped where no Chromium or Chrome is installed (``.ci/run`` installs Debian's ``chromium``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from bench.report.render import render_site
from bench.storage import Store
from tests.bench.report.test_figures import build_figures
from tests.bench.report.test_render import Tables

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((found for name in BROWSERS if (found := shutil.which(name))), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None,
    reason=f"no headless browser on PATH (looked for {', '.join(BROWSERS)}); .ci/run installs Debian's "
    "chromium",
)
#: How Chromium logs a page's console message (an uncaught exception included) with --enable-logging.
CONSOLE = re.compile(r"CONSOLE[(:]")


def chromium(url: str, *flags: str) -> tuple[str, list[str]]:
    """Open ``url`` headless; returns its stdout and the console messages it logged."""
    assert BROWSER is not None
    with tempfile.TemporaryDirectory() as profile:
        command = [
            BROWSER, "--headless", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--hide-scrollbars", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *flags,
            url,
        ]
        if os.geteuid() == 0:
            command.insert(1, "--no-sandbox")  # Chromium refuses to sandbox itself as root (CI runs as root)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    return done.stdout, [line for line in done.stderr.splitlines() if CONSOLE.search(line)]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    store = Store(root / "r.db")
    build_figures(store)
    render_site(store, root / "site", artifacts=None)
    return root / "site"


def test_the_console_check_sees_a_page_error(tmp_path: Path) -> None:
    """Guards the checks below: were Chromium to stop logging console messages, they would pass vacuously."""
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><p>x</p><script>notDefined();</script>")
    _, console = chromium(broken.as_uri(), "--dump-dom")
    assert any("notDefined" in line for line in console)


def test_pages_open_without_console_messages_and_show_every_plot(site: Path) -> None:
    matrix = next(site.glob("matrix-figs-*.html"))
    doms = {}
    for page in (site / "index.html", site / "leaderboard.html", matrix):
        doms[page.name], console = chromium(page.as_uri(), "--dump-dom")
        assert console == [], page.name
        assert "<table" in doms[page.name]
    anchors = re.findall(r'<figure class="plot" id="(plot-\d+)">', matrix.read_text(encoding="utf-8"))
    assert len(anchors) == 4
    for anchor in anchors:
        # Parsed as SVG elements (the figure's group, its id prefixed with the plot's anchor), not as text.
        svg = rf'<figure class="plot" id="{anchor}">\s*<svg [^>]*>.*?<g id="{anchor}-figure_1"'
        assert re.search(svg, doms[matrix.name], re.S), anchor


def test_clicking_a_column_header_sorts_its_table(site: Path) -> None:
    harness = site / "click.html"
    harness.write_text(
        """<!doctype html><body><iframe id="board" src="leaderboard.html"></iframe><script>
        document.getElementById("board").addEventListener("load", function () {
          var doc = document.getElementById("board").contentDocument;
          var table = doc.querySelector("table.leaderboard");
          var th = table.querySelector('th[data-key="clean"]');
          function order() {
            return Array.prototype.map.call(table.tBodies[0].rows, function (row) {
              return row.cells[th.cellIndex].getAttribute("data-sort");
            }).join(" ") + " " + th.getAttribute("aria-sort");
          }
          var out = document.createElement("pre");
          th.click(); out.textContent = order() + "\\n";
          th.click(); out.textContent += order();
          out.id = "order";
          document.body.appendChild(out);
        });
        </script></body>"""
    )
    dom, console = chromium(harness.as_uri(), "--dump-dom", "--allow-file-access-from-files",
                            "--virtual-time-budget=5000")
    assert console == []
    found = re.search(r'<pre id="order">([^<]*)</pre>', dom)
    assert found is not None, dom[-2000:]
    first, second = found.group(1).splitlines()
    *values, direction = first.split()
    assert direction == "descending" and values == sorted(values, key=float, reverse=True)
    *values, direction = second.split()
    assert direction == "ascending" and values == sorted(values, key=float)
    assert len(values) == 4  # the first board: rtfe and none on R20 and R32 at 2/255


def test_a_link_opens_the_leaderboard_sorted_and_filtered(site: Path) -> None:
    dom, console = chromium((site / "leaderboard.html").as_uri() + "?sort=clean&order=asc&q=cross-model",
                            "--dump-dom")
    assert console == []
    board = Tables(dom).with_class("leaderboard")[2]  # cifar10 at linf 8/255
    clean = board.column("clean")
    assert [float(c.attrs["data-sort"]) for c in clean] == sorted(float(c.attrs["data-sort"]) for c in clean)
    header = next(c for c in board.rows[0] if c.text == "clean [95% CI]")
    assert header.attrs["aria-sort"] == "ascending"
    # The filter hid every row without the words (the hidden attribute) and left the others shown.
    rows = re.findall(r"<tr([^>]*)>\s*<td class=\"num\">\d+</td>(.*?)</tr>", dom, re.S)
    shown = [body for attrs, body in rows if "hidden" not in attrs]
    hidden = [body for attrs, body in rows if "hidden" in attrs]
    assert shown and all("cross-model" in body for body in shown)
    assert hidden and not any("cross-model" in body for body in hidden)


def test_a_screenshot_of_a_matrix_page(site: Path, tmp_path: Path) -> None:
    shot = tmp_path / "matrix.png"
    matrix = next(site.glob("matrix-figs-*.html"))
    _, console = chromium(matrix.as_uri(), f"--screenshot={shot}", "--window-size=1280,2400")
    assert console == []
    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        # A page with tables and plots, not a blank or an error page: many distinct colours.
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 200
