"""How the report writes values: a run's commit keeps its ``-dirty`` mark when shortened."""

from __future__ import annotations

import pytest

from bench.report.format import short_commit


@pytest.mark.parametrize(
    "recorded, shown",
    [
        (None, "unknown"),
        ("0123456789abcdef0123456789abcdef01234567", "01234567"),
        ("0123456789abcdef0123456789abcdef01234567-dirty", "01234567-dirty"),
        ("3468591", "3468591"),
        ("3468591-dirty", "3468591-dirty"),
        ("v1.0-3-g3468591-dirty", "v1.0-3-g3468591-dirty"),
    ],
)
def test_short_commit_keeps_the_dirty_mark(recorded: str | None, shown: str) -> None:
    assert short_commit(recorded) == shown
