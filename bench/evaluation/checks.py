"""Soundness checks run on every cell; a failed one marks the cell's number unreliable.

Each check is a registered function of a :class:`CellEvidence` (the cell's pipeline, data and the per-example
outcomes of every attack run on it) returning a :class:`CheckResult`. They exist because pre-processing
defenses have a long record of looking robust and being broken by adaptive attacks (Athalye et al. 2018,
Carlini et al. 2019, Tramer et al. 2020): a number is only shown without a warning if it passed them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from bench.attacks.pipeline import Pipeline
from bench.attacks.threat import Threat
from bench.context import JobContext
from bench.data.base import ImageData
from bench.registry import Registry


@dataclass(frozen=True)
class AttackEvidence:
    label: str
    config: dict[str, Any]
    clean: torch.Tensor  # bool per example
    robust: torch.Tensor  # bool per example
    x_adv: torch.Tensor
    #: The attack's own account of its run (``Attack.describe()``), e.g. AutoAttack's warnings.
    report: dict[str, Any] = field(default_factory=dict)
    #: Input gradients the attack took, in images: all of them, the NaN/inf ones, the exactly-zero ones.
    n_backward: int = 0
    nonfinite_grads: int = 0
    zero_grads: int = 0


@dataclass(frozen=True)
class CellEvidence:
    make_pipeline: Callable[[], Pipeline]
    data: ImageData
    threat: Threat
    attacks: list[AttackEvidence]
    ctx: JobContext
    n_checks: int
    batch_size: int

    @property
    def worst_case(self) -> torch.Tensor:
        robust = self.attacks[0].robust.clone()
        for a in self.attacks[1:]:
            robust &= a.robust
        return robust


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    detail: str


Check = Callable[[CellEvidence], CheckResult]

#: Checks that cost nothing beyond the stored outcomes; always run.
BASIC_CHECKS: Registry[Check] = Registry("check", "frontline.basic_checks")
#: Checks that run extra attacks; run when the matrix's ``evaluation.checks`` is on.
ATTACK_CHECKS: Registry[Check] = Registry("check", "frontline.checks")


@BASIC_CHECKS.register("robust-le-clean")
def robust_le_clean(cell: CellEvidence) -> CheckResult:
    """Robust accuracy <= clean accuracy, example by example, for every attack."""
    for a in cell.attacks:
        bad = int((a.robust & ~a.clean).sum())
        if bad:
            return CheckResult(False, f"{a.label}: {bad} examples robust but misclassified when clean")
    return CheckResult(True, "every robust example is also clean-correct")


@BASIC_CHECKS.register("inside-threat")
def inside_threat(cell: CellEvidence) -> CheckResult:
    """Every stored adversarial example lies in the epsilon ball and in [0,1] (re-read from the artifact)."""
    x = cell.data.float_images()
    for a in cell.attacks:
        bad = int(cell.threat.violations(x, a.x_adv).sum())
        if bad:
            return CheckResult(False, f"{a.label}: {bad} stored adversarial examples outside the threat")
    total = len(cell.attacks) * len(cell.data)
    return CheckResult(True, f"all {total} stored examples inside the ball and box")


@BASIC_CHECKS.register("clean-agreement")
def clean_agreement(cell: CellEvidence) -> CheckResult:
    """All attack jobs of the cell saw the same clean predictions (else the pipeline is not what we think)."""
    ref = cell.attacks[0].clean
    for a in cell.attacks[1:]:
        differ = int((a.clean != ref).sum())
        if differ:
            first = cell.attacks[0].label
            return CheckResult(False, f"{a.label} disagrees with {first} on {differ} clean inputs")
    return CheckResult(True, "clean predictions agree across attacks")


@BASIC_CHECKS.register("finite-gradients")
def finite_gradients(cell: CellEvidence) -> CheckResult:
    """No attack saw a NaN or infinite input gradient: it would have been blinded without an error (PGD's
    ``sign`` of NaN is 0, CW and AutoAttack keep the clean point), and the example would count as robust."""
    bad = [f"{a.label}: {a.nonfinite_grads} of {a.n_backward}" for a in cell.attacks if a.nonfinite_grads]
    if bad:
        return CheckResult(False, f"non-finite input gradients ({'; '.join(bad)} images): the attacks were "
                                  "blinded, so the examples they left alone prove nothing")
    zero = ", ".join(f"{a.label} {a.zero_grads}/{a.n_backward}" for a in cell.attacks if a.n_backward)
    return CheckResult(True, f"every input gradient finite (exactly zero: {zero or 'no gradient attack'})")


@BASIC_CHECKS.register("pipeline-output")
def pipeline_output(cell: CellEvidence) -> CheckResult:
    """The pipeline is as random as its defense declares, and returns logits (AutoAttack's checks of
    randomness and of a softmax output, run on every cell, not only where AutoAttack ran).

    Undeclared randomness means the attacks ran without EOT and judged by a single draw; probabilities
    instead of logits flatten the cross-entropy gradient. Either makes the number too high. Costs two
    forward passes over the check examples.
    """
    pipeline = cell.make_pipeline()
    data = cell.data.subset(torch.arange(cell.n_checks), "output-check")
    passes = []
    with torch.no_grad():
        for x, _ in data.batches(cell.batch_size, cell.ctx.device):
            passes.append((pipeline(x), pipeline(x)))
    first = torch.cat([a for a, _ in passes])
    second = torch.cat([b for _, b in passes])
    problems = []
    if not pipeline.randomized and not torch.equal(first, second):
        problems.append(
            "two passes over the same images gave different logits, but the defense does not declare "
            "randomized: its attacks ran without EOT and were judged on single draws"
        )
    in_unit = bool(((first >= 0) & (first <= 1)).all())
    if in_unit and torch.allclose(first.sum(1), torch.ones_like(first[:, 0])):
        problems.append("the outputs are probabilities (in [0,1], summing to 1), not logits")
    if problems:
        return CheckResult(False, "; ".join(problems))
    kind = "randomized (declared)" if pipeline.randomized else "deterministic"
    return CheckResult(True, f"{kind}, returns logits")


# At the bottom because soundness registers into ATTACK_CHECKS above; importing it here means every user of
# the registry sees the attack checks.
from bench.evaluation import soundness as soundness  # noqa: E402
