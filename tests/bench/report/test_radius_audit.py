"""The radius audit: a paper's certified radius in its own (normalized) units beside ours in those units and
in pixels, for a pipeline whose certificate is known in closed form.

The pipeline always answers its image's class and declares normalized-space noise with ImageNet's std, as
IRS-Net does. Every draw votes for the class, so CERTIFY's p̲A is α^(1/n) exactly and every image is
certified at R0 = σ·Φ⁻¹(α^(1/n)) ≈ 1.231 normalized units (σ = 0.5, n = 1000, α = 0.001), which is
0.224·R0 ≈ 0.276 in pixels. The paper claims a radius of 1.0 in its units: the same certificate covers it
(1.0 ≤ R0; pixel radius 0.224), but not the pixel radius 1.0 a table read as is would compare it with.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from scipy.stats import norm
from torch import nn

from bench.api import Classifier, FrontEnd, GaussianSmoothing, Pipeline
from bench.certify import CertifyParams, certified_accuracy, certify_each, smoothed_pipeline
from bench.evaluation.rows import ResultRow
from bench.report.data import run_view
from bench.report.radius_audit import per_unit, radius_audit
from bench.report.render import render_site
from bench.storage import Store
from bench.uses import EvaluationUse
from tests.bench.report.test_certified import row, smooth_use
from tests.bench.report.test_render import Tables, matrix_page, record, text

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGENET_STD = (0.229, 0.224, 0.225)
SIGMA, N, ALPHA = 0.5, 1000, 0.001
#: The certificate every image gets, in normalized units.
R0 = SIGMA * float(norm.ppf(ALPHA ** (1 / N)))
#: Pixel radii the matrix certifies at: the paper's 0.5 and 1.0 read in its units (x 0.224) and as pixels.
RADII = [0.112, 0.224, 0.5, 1.0]
PAPER: dict[str, Any] = {
    "source": "Kumar & Narayan, IRS-Net",
    "tables": [
        {
            "title": "Table II",
            "defense": "irs",
            "guides": ["R20"],
            "target": "R56",
            "rows": [{"label": "Ours (black-box)"}],
            "columns": [{"label": "0.5", "radius": 0.5}, {"label": "1.0", "radius": 1.0}],
            "numbers": [[61.0, 43.0]],
        }
    ],
}


class DeclaresImageNetStd(FrontEnd):
    def __init__(self) -> None:
        super().__init__()
        self.smoothing = GaussianSmoothing(SIGMA, "normalized", IMAGENET_STD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Constant(nn.Module):
    """Class 1 whatever the input."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.0, 1.0]]).expand(z.shape[0], 2)


def certify_rows() -> tuple[EvaluationUse, list[ResultRow]]:
    """CERTIFY on four images through the engine, summed up per pixel radius as the certify job stores it."""
    clf = Classifier(Constant(), (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))
    smoothed = smoothed_pipeline(Pipeline(clf, DeclaresImageNetStd()), 2, 3)
    images = torch.rand(4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    certificates = certify_each(smoothed, images, [0, 1, 2, 3], CertifyParams(10, N, ALPHA, 500), 0)
    assert all(c.radius == pytest.approx(R0) for c in certificates)
    assert all(c.radius_pixel == pytest.approx(0.224 * R0) for c in certificates)
    u = smooth_use("irs", ["R20"], "R56", SIGMA)
    common = {"sigma": SIGMA, "noise_space": "normalized", "noise_std": list(IMAGENET_STD), "n0": 10, "n": N,
              "alpha": ALPHA, "noise_batch": 500}
    unit = smoothed.noise.pixel_radius(1.0)
    results = []
    for r in certified_accuracy(certificates, [1, 1, 1, 1], RADII):
        details = {**common, "radius_declared": r.radius / unit}
        results.append(row(u, "certified_accuracy", r.radius, r.certified.hits, 4, details, "full"))
    return u, results


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(tmp_path_factory.mktemp("audit") / "r.db")
    run = store.start_run(
        matrix_name="irs", matrix_path="matrices/irs.yaml", matrix_sha256="f" * 64,
        matrix={"name": "irs", "paper": PAPER}, git_commit="0123456789abcdef0123", device="cpu",
        versions={"python": "3.11.9"},
    )
    u, results = certify_rows()
    record(store, run, "certify", "certify irs", [u], results=results)
    store.finish_run(run, "done")
    return store


def test_the_audit_reads_the_papers_radius_in_its_units_and_as_pixels(store: Store) -> None:
    view = run_view(store, store.runs()[-1])
    (certified,) = view.certified
    assert per_unit(certified) == pytest.approx(0.224)
    audit = radius_audit(view)
    assert audit is not None and not audit.missing
    half, one = audit.entries
    assert (one.paper_radius, one.paper) == (1.0, 43.0) and one.same_pixel == pytest.approx(0.224)
    assert one.pixel_declared == pytest.approx(1 / 0.224)
    # R0 ≈ 1.231 normalized ≥ 1.0: every image certified at the paper's radius in its units ...
    assert one.same is not None and one.same.accuracy.value == 1.0 and one.same.radius == pytest.approx(0.224)
    # ... and none at 1.0 read as pixels, 4.46 normalized units, beyond every certificate.
    assert one.pixel is not None and one.pixel.accuracy.value == 0.0
    assert one.difference == pytest.approx(100 - 43)
    assert half.same is not None and half.same.accuracy.value == 1.0
    assert half.pixel is not None and half.pixel.accuracy.value == 0.0, "R0 in pixels is 0.276 < 0.5"


def test_an_entry_whose_same_units_radius_was_not_certified_says_which_to_add(store: Store) -> None:
    view = run_view(store, store.runs()[-1])
    (certified,) = view.certified
    view.certified = [replace(certified, points=tuple(p for p in certified.points if p.radius > 0.2))]
    audit = radius_audit(view)
    assert audit is not None
    half, one = audit.entries
    assert half.same is None and half.same_pixel == pytest.approx(0.112) and one.same is not None


@pytest.mark.parametrize(("written", "stands_for_it"), [(0.2241, True), (0.2239, False), (0.2245, False)])
def test_a_radius_written_to_a_few_digits_stands_for_the_converted_one_only_from_just_above(
    store: Store, written: float, stands_for_it: bool
) -> None:
    """Certified accuracy only falls as the radius grows, so a radius up to 0.1% above 1.0 x 0.224 may stand
    for it (understating ours); one below would overstate it."""
    view = run_view(store, store.runs()[-1])
    (certified,) = view.certified
    moved = tuple(replace(p, radius=written) if p.radius == 0.224 else p for p in certified.points)
    view.certified = [replace(certified, points=moved)]
    audit = radius_audit(view)
    assert audit is not None
    one = audit.entries[1]
    assert (one.same is not None) == stands_for_it
    assert one.same is None or one.same.radius == written


def test_no_audit_without_a_paper_block_or_for_pixel_noise(store: Store) -> None:
    view = run_view(store, store.runs()[-1])
    view.certified = [replace(view.certified[0], noise_space="pixel")]
    assert radius_audit(view) is None
    view.run.matrix = {"name": "irs"}
    assert radius_audit(view) is None


def test_the_page_shows_both_radii_side_by_side_with_why_they_differ(store: Store, tmp_path: Path) -> None:
    render_site(store, tmp_path)
    html = matrix_page(tmp_path, "irs", "matrices/irs.yaml")
    (table,) = Tables(html).with_class("audit")
    cells = [[c.text for c in r] for r in table.rows]
    one = next(r for r in cells if r[0].endswith("/ 1.0"))
    assert one[2] == "R = 1"
    assert one[3] == "43%"
    assert one[4].startswith("100.0%") and "normalized 1 = pixel 0.224" in one[4]
    assert one[5].startswith("0.0%") and "pixel 1 = normalized 4.464" in one[5]
    assert one[6] == "+57.0 pp"
    page = text(html)
    assert "R·min c s c (0.224·R)" in page
    # The paper's own table compares a pixel radius with the paper's and says so.
    assert "our radius is in pixels, the noise after normalization: see the radius audit" in page
