"""How numbers, dates and labels read in the report: plain functions, also registered as template filters.

Values that become CSS class names come from the store, which is not trusted, so they are mapped onto a fixed
set rather than passed through.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bench.report.data import (
    CellView,
    Metric,
)

_REDUCED_PREFIX = "reduced: "
#: Values that may become CSS class names; anything else (the store is not trusted) maps to "other".
_STATUSES = frozenset({"done", "failed", "running"})
_RELATIONS = frozenset({"native", "cross-model", "cross-dataset", "no-guides"})


# -- formatting (also the templates' filters) ----------------------------------------------------------------
def pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def as_printed(value: float) -> str:
    """A paper's number, already in percent, with the digits it was transcribed with."""
    return f"{value:g}%"


def points(value: float) -> str:
    """A difference of two accuracies in percentage points, signed."""
    return f"{value:+.1f} pp"


def interval(metric: Metric) -> str:
    return f"[{100 * metric.low:.1f}, {100 * metric.high:.1f}]"


def eps_label(norm: str, eps: float) -> str:
    """Linf radii are conventionally multiples of 1/255, and 0.0313725 hides that 8/255 was meant."""
    steps = eps * 255
    if norm == "linf" and 0 < eps < 1 and abs(steps - round(steps)) < 1e-6:
        return f"{round(steps)}/255"
    return f"{eps:g}"


def count(value: int | None) -> str:
    """A count the store may not have, such as a row's forward passes per prediction: never guessed."""
    return "unknown" if value is None else f"{value:,}"


def counts(values: Sequence[int | None]) -> str:
    """Several rows' counts, one per distinct value (draws of an m table may differ)."""
    return "/".join(count(v) for v in values)


def number(value: float | None) -> str:
    """A radius, sigma or alpha as written in a config; "unknown" where the store does not say."""
    return "unknown" if value is None else f"{value:g}"


def radius(value: float | None) -> str:
    """A certified radius: converted between noise spaces, so four significant digits, not float noise."""
    return "unknown" if value is None else f"{value:.4g}"


def when(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def check_names(checks: Sequence[tuple[str, str]]) -> str:
    return ", ".join(name for name, _ in checks)


def check_details(checks: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"{name}: {detail}" for name, detail in checks)


def scale_note(scale: str) -> str:
    return scale[len(_REDUCED_PREFIX) :] if scale.startswith(_REDUCED_PREFIX) else scale


def status_class(status: str) -> str:
    return status if status in _STATUSES else "other"


def relation_class(relation: str) -> str:
    return relation if relation in _RELATIONS else "other"


def relation_label(cell: CellView) -> str:
    return relation_name(cell.relation, cell.defense_kind)


def relation_name(relation: str, defense_kind: str) -> str:
    """``none`` is stored as "no-guides" like any guide-free front-end; a reader wants "undefended"."""
    return "undefended" if defense_kind == "none" else relation


def short_commit(commit: str | None) -> str:
    """Runs record ``git describe --always --dirty``; older ones a full hash. The ``-dirty`` must show."""
    if not commit:
        return "unknown"
    base = commit.removesuffix("-dirty")
    dirty = commit[len(base) :]
    if len(base) > 8 and all(c in "0123456789abcdef" for c in base):
        base = base[:8]
    return base + dirty


def versions_summary(versions: dict[str, Any]) -> str:
    parts = []
    for name, value in versions.items():
        if value is None:
            continue
        shown = value if isinstance(value, str | int | float) else json.dumps(value, sort_keys=True)
        parts.append(f"{name} {shown}")
    return ", ".join(parts)


def row_label(defense: str, guides: Sequence[str]) -> str:
    return f"{defense} [{'+'.join(guides)}]" if guides else defense
