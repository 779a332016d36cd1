"""Checks that read only what a cell already holds (stored outcomes, attack settings and reports, two
forward passes), so they run on every cell, even with ``evaluation.checks`` off."""

from __future__ import annotations

import torch

from bench.api import CellEvidence, CheckResult, register_check
from bench.evaluation.soundness.common import attack_class, bpda_of, not_applicable


@register_check("robust-le-clean", runs_attacks=False)
def robust_le_clean(cell: CellEvidence) -> CheckResult:
    """Robust accuracy <= clean accuracy, example by example, for every attack."""
    for a in cell.attacks:
        bad = int((a.robust & ~a.clean).sum())
        if bad:
            return CheckResult(False, f"{a.label}: {bad} examples robust but misclassified when clean")
    return CheckResult(True, "every robust example is also clean-correct")


@register_check("inside-threat", runs_attacks=False)
def inside_threat(cell: CellEvidence) -> CheckResult:
    """Every stored adversarial example lies in the epsilon ball and in [0,1] (re-read from the artifact)."""
    x = cell.data.float_images()
    for a in cell.attacks:
        bad = int(cell.threat.violations(x, a.x_adv).sum())
        if bad:
            return CheckResult(False, f"{a.label}: {bad} stored adversarial examples outside the threat")
    total = len(cell.attacks) * len(cell.data)
    return CheckResult(True, f"all {total} stored examples inside the ball and box")


@register_check("clean-agreement", runs_attacks=False)
def clean_agreement(cell: CellEvidence) -> CheckResult:
    """All attack jobs of the cell saw the same clean predictions (else the pipeline is not what we think)."""
    ref = cell.attacks[0].clean
    for a in cell.attacks[1:]:
        differ = int((a.clean != ref).sum())
        if differ:
            first = cell.attacks[0].label
            return CheckResult(False, f"{a.label} disagrees with {first} on {differ} clean inputs")
    return CheckResult(True, "clean predictions agree across attacks")


@register_check("finite-gradients", runs_attacks=False)
def finite_gradients(cell: CellEvidence) -> CheckResult:
    """No attack saw a NaN or infinite input gradient: it would have been blinded without an error (PGD's
    ``sign`` of NaN is 0, CW and AutoAttack keep the clean point), and the example would count as robust."""
    bad = [f"{a.label}: {a.nonfinite_grads} of {a.n_backward}" for a in cell.attacks if a.nonfinite_grads]
    if bad:
        return CheckResult(False, f"non-finite input gradients ({'; '.join(bad)} images): the attacks were "
                                  "blinded, so the examples they left alone prove nothing")
    zero = ", ".join(f"{a.label} {a.zero_grads}/{a.n_backward}" for a in cell.attacks if a.n_backward)
    return CheckResult(True, f"every input gradient finite (exactly zero: {zero or 'no gradient attack'})")


@register_check("pipeline-output", runs_attacks=False)
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




@register_check("naive-gradient", runs_attacks=False)
def naive_gradient(cell: CellEvidence) -> CheckResult:
    """A cell attacked only by gradient attacks without BPDA while its defense has non-differentiable parts
    is a naive evaluation: the gradients were zero or meaningless, and the number measures the attack, not
    the defense.

    A cell that also ran an attack with BPDA, or one that needs no gradients, passes: its worst case already
    includes an attack the missing BPDA cannot have weakened.
    """
    parts = cell.make_pipeline().bpda_parts
    naive = [a.label for a in cell.attacks if not bpda_of(a) and attack_class(a).uses_gradients]
    if not parts and not naive:
        return not_applicable("the defense declares no non-differentiable parts")
    if not naive:
        return CheckResult(True, f"every gradient attack ran with BPDA through the {parts} "
                                 "non-differentiable part(s)")
    if not parts:
        return CheckResult(True, f"{', '.join(naive)} ran without BPDA, but the defense declares no "
                                 "non-differentiable parts, so its gradients are the true ones")
    if len(naive) == len(cell.attacks):
        return CheckResult(False, f"naive evaluation: {', '.join(naive)} ran without BPDA through {parts} "
                                  "non-differentiable part(s), so the gradients were zero or meaningless and "
                                  "the number is what a naive attacker reports, not the defense's robustness")
    others = [a.label for a in cell.attacks if a.label not in naive]
    return CheckResult(True, f"{', '.join(naive)} ran without BPDA (naive), but the worst case includes "
                             f"{', '.join(others)}, which the {parts} non-differentiable part(s) cannot mask")


#: AutoAttack's randomness warning is expected on a randomized pipeline evaluated with version="rand".
_RAND_EXPECTED = "randomized defense"


@register_check("autoattack-checks", runs_attacks=False)
def autoattack_checks(cell: CellEvidence) -> CheckResult:
    """AutoAttack's own checks (Croce & Hein): randomness, zero gradients, softmax output, Square wins.

    pyautoattack reports them as warnings, which the attack keeps in its report; any of them means the
    white-box number may be an overestimate, except a randomness warning on a ``version: rand`` run.
    """
    reports = [a for a in cell.attacks if "warnings" in a.report]
    if not reports:
        return not_applicable("no AutoAttack run in this cell")
    found = []
    for a in reports:
        rand = a.report.get("params", {}).get("version") == "rand"
        found += [f"{a.label}: {w}" for w in a.report["warnings"] if not (rand and _RAND_EXPECTED in w)]
    if found:
        return CheckResult(False, "; ".join(found))
    return CheckResult(True, f"{len(reports)} AutoAttack run(s) raised no warning")
