"""The undefended baseline: the classifier alone, attacked exactly like every defended pipeline."""

from __future__ import annotations

from typing import Any

from bench.api import Defense, FrontEnd, Identity, register_defense


@register_defense("none")
class NoDefense(Defense):
    """No front-end (identity): the undefended classifier, the baseline every cell is compared with."""

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return Identity()
