"""The radius audit: a paper's certified radius beside ours, for noise that lives after normalization.

A defense that adds its noise to the normalized image (x - μ) / s (IRS-Net) certifies an ℓ2 radius R in that
space, and its paper reports R there. A pixel perturbation δ is δ_c / s_c after normalization, so the same
certificate covers every pixel perturbation shorter than R·min_c s_c: about 0.224·R for ImageNet's std, 4.5
times less than the number the paper prints. The harness stores every radius in pixels, so a paper's table
read as is compares its normalized R with our pixel R, two different balls. The audit puts, for every
certified entry of the matrix's ``paper:`` block whose pipeline declares normalized-space noise, the paper's
radius and number beside our certified accuracy at the same radius in the paper's units (the same
certificate, R·min_c s_c in pixels) and at the same number read as a pixel radius.

It converts for display only, with what the stored rows record: each certified row keeps its pixel radius and,
in its details, the radius in the declared space, whose ratio is the pixel length of one normalized unit.
The paper's radius is taken to be in the defense's declared space, as IRS-Net's is.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from pydantic import ValidationError

from bench.config import PaperConfig, PaperSelector
from bench.report.data import CertifiedPoint, CertifiedView, RunView
from bench.report.paper import _pipeline_matches, _same_sigma

#: How far above a converted radius a certified radius may lie and still stand for it (0.1%: a matrix writes
#: radii to a few digits). Never below: certified accuracy only falls as the radius grows, so a radius at or
#: just above the converted one can only understate ours.
_ABOVE = 1e-3


@dataclass(frozen=True)
class AuditEntry:
    """One certified entry of a paper's table, read in both units."""

    #: Where in the paper: the table's title, and the entry's row and column labels.
    table: str
    row: str
    column: str
    #: The certified pipeline at the sigma compared (the best one at this radius when the entry names none).
    view: CertifiedView
    #: The paper's radius, in its own (normalized) units, and its number in percent (None: not given).
    paper_radius: float
    paper: float | None
    #: The pixel length of one unit of the declared space (min_c s_c).
    per_unit: float
    #: Ours at the paper's radius in its units: the same certificate, at pixel radius ``same_pixel``.
    same: CertifiedPoint | None
    #: Ours at the paper's number read as a pixel radius (``paper_radius / per_unit`` in its units).
    pixel: CertifiedPoint | None
    #: Set when the entry's sigma was chosen as the best of several.
    note: str = ""

    @property
    def same_pixel(self) -> float:
        return self.paper_radius * self.per_unit

    @property
    def pixel_declared(self) -> float:
        return self.paper_radius / self.per_unit

    @property
    def difference(self) -> float | None:
        """Ours at the same certificate minus the paper's, in percentage points."""
        if self.paper is None or self.same is None:
            return None
        return 100 * self.same.accuracy.value - self.paper


@dataclass
class RadiusAudit:
    entries: list[AuditEntry]
    #: Paper entries on normalized-noise pipelines that could not be audited, and why.
    missing: list[str] = field(default_factory=list)
    notes: list[tuple[int, str]] = field(default_factory=list)

    @property
    def per_units(self) -> list[float]:
        """The distinct pixel lengths of a normalized unit among the entries, for the page's explanation."""
        return sorted({round(e.per_unit, 6) for e in self.entries})


def per_unit(view: CertifiedView) -> float | None:
    """Pixel radius per declared-space unit, from the rows' own two radii; None where no row records both."""
    ratios = [p.radius / p.declared for p in view.points if p.declared is not None and p.declared > 0]
    return ratios[0] if ratios else None


def _at(view: CertifiedView, pixel_radius: float) -> CertifiedPoint | None:
    """The certified point that stands for ``pixel_radius``: the smallest radius from it to 0.1% above."""
    low, high = pixel_radius * (1 - 1e-9) - 1e-12, pixel_radius * (1 + _ABOVE) + 1e-12
    return min((p for p in view.points if low <= p.radius <= high), key=lambda p: p.radius, default=None)


def _entry(
    title: str, row: str, column: str, selector: PaperSelector, paper: float | None, view: RunView
) -> AuditEntry | str | None:
    """The audit of one entry; a reason when it names a normalized-noise pipeline that cannot be audited;
    None when it is not a certified number of such a pipeline."""
    radius = selector.radius
    if selector.measured != "certified" or radius is None or selector.defense is None:
        return None
    views = [
        v
        for v in view.certified
        if v.normalized and _pipeline_matches(selector, v) and _same_sigma(selector.sigma, v.sigma)
    ]
    if not views:
        return None
    where = f"{title}, {row} / {column}"
    if len({v.guides for v in views}) > 1:
        return f"{where}: several guide sets match; give guides"
    audited = []
    for v in views:
        unit = per_unit(v)
        if unit is None:
            continue
        same, pixel = _at(v, radius * unit), _at(v, radius)
        audited.append(AuditEntry(title, row, column, v, radius, paper, unit, same, pixel))
    if not audited:
        return f"{where}: the stored rows do not record the radius in the noise's own space"
    best = max(
        audited,
        key=lambda e: (e.same.accuracy.value if e.same is not None else -1.0, -(e.view.sigma or 0.0)),
    )
    if len(audited) > 1 and best.view.sigma is not None:
        best = replace(best, note=f"best σ = {best.view.sigma:g}")
    return best


def radius_audit(view: RunView) -> RadiusAudit | None:
    """The audit of the matrix's paper block, or None when no certified entry names a pipeline whose noise
    lives after normalization (or the block cannot be read; the paper section says why)."""
    raw = (view.run.matrix or {}).get("paper")
    if raw is None:
        return None
    try:
        paper = PaperConfig.model_validate(raw)
    except ValidationError:
        return None
    audit = RadiusAudit([])
    for table in paper.tables:
        for i, row in enumerate(table.rows):
            for j, column in enumerate(table.columns):
                selector, number = table.selector(i, j), table.numbers[i][j]
                found = _entry(table.title, row.label, column.label, selector, number, view)
                if isinstance(found, AuditEntry):
                    audit.entries.append(found)
                elif found is not None:
                    audit.missing.append(found)
    return audit if audit.entries or audit.missing else None
