"""Every adversarial example the harness finds counts: folding other attacks' finds into a cell's worst case.

A verified adversarial example at radius eps_j is one at every radius eps_k >= eps_j of the same norm, so
robust accuracy cannot rise with epsilon (Cann et al.'s cumulative rule). A cell therefore also counts the
examples broken by its pipeline's attacks at the threat's smaller radii, and those the soundness checks'
own attacks broke at a radius no larger than the cell's. Where these break examples the cell's own attacks
left robust, the number is corrected and a check fails, naming the attacks that missed them: they were
weaker than something the harness already ran.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bench.api import CheckResult

#: The flag a cell records for the fold; it fails when the fold changed the cell's worst case.
CHECK_NAME = "missed-counterexamples"


@dataclass(frozen=True)
class Found:
    """Examples broken by something else than the cell's own attacks, at a radius no larger than its own."""

    #: Who broke them, e.g. ``pgd at eps=0.1`` or ``check eps-sweep-to-chance``.
    source: str
    #: Bool per example of the cell (a prefix, such as the checks' subset, is padded with False).
    broken: torch.Tensor


def padded(mask: torch.Tensor, n: int) -> torch.Tensor:
    """A bool mask over the first examples, extended to ``n`` examples with False."""
    out = torch.zeros(n, dtype=torch.bool)
    out[: mask.numel()] = mask.detach().cpu().bool()[:n]
    return out


def fold(
    worst: torch.Tensor, found: Sequence[Found], attacks: Sequence[str]
) -> tuple[torch.Tensor, CheckResult]:
    """The worst case with ``found`` folded in, and the check's verdict on the cell's own ``attacks``."""
    folded = worst.clone()
    credits = []
    for f in found:
        missed = worst & f.broken
        folded &= ~f.broken
        if bool(missed.any()):
            credits.append(f"{f.source} ({int(missed.sum())})")
    if not found:
        return folded, CheckResult(True, "not applicable: no smaller radius of this threat was attacked and "
                                         "no check attack broke an example")
    sources = ", ".join(f.source for f in found)
    if not credits:
        return folded, CheckResult(True, f"the cell's attacks broke every example also broken by {sources}")
    missed_total = int((worst & ~folded).sum())
    return folded, CheckResult(
        False,
        f"{', '.join(attacks)} left {missed_total} example(s) robust that the harness had broken at a radius "
        f"no larger than this one: {'; '.join(credits)}; they now count as broken, but the cell's attacks "
        "missed them",
        unreliable_attacks=tuple(attacks),
    )
