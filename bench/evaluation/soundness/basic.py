"""Checks that read only what a cell already holds (stored outcomes, attack settings and reports, two
forward passes), so they run on every cell, even with ``evaluation.checks`` off."""

from __future__ import annotations

import torch

from bench.api import CellEvidence, CheckResult, register_check
from bench.evaluation.gradient_probe import DEAD_GAIN
from bench.evaluation.soundness.common import attack_class, bpda_of, not_applicable

#: Share of the robust examples whose dead gradients make an attack's number (and, for the worst case's own
#: robust examples, the cell's) unreliable, and the fewest dead examples that count as a pattern.
DEAD_SHARE = 0.1
DEAD_MIN = 3


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


@register_check("dead-gradients", runs_attacks=False)
def dead_gradients(cell: CellEvidence) -> CheckResult:
    """An example a gradient attack left robust proves nothing when the attack had no gradient to follow
    there: every gradient attack's robust examples are probed after the attack (the margin-loss gradient at
    its final point, :mod:`bench.evaluation.gradient_probe`), and the gradient is dead when it is exactly
    zero or moves the margin, across the whole ball, by less than ``DEAD_GAIN`` (1e-4) of itself.

    An attack with dead gradients on at least ``DEAD_SHARE`` (10%) of its robust examples, and on at least
    ``DEAD_MIN`` (3), is named in ``unreliable_attacks``: its own number is gradient masking. The cell fails
    when, by the same rule, the examples its worst case counts robust rest on dead gradients only (no probed
    attack had a live gradient on them); when another attack had live gradients there (BPDA through the
    front-end, say), the cell's number stands and only the masked attack is marked.

    Evidence (``benchmarks/dead_gradients.py``, ``benchmarks/README.md``): on healthy pipelines (trained
    MNIST classifiers bare and behind a trained AAA, a pre-trained CIFAR-10 ResNet-20, several radii) none
    of 1,093 robust examples was dead, the smallest ratio being 7.3e-2; on each masking pipeline (bit-depth
    and JPEG without BPDA on MNIST and CIFAR-10, a ``.detach()``, a steep sigmoid, a 50-fold contraction)
    88-100% of the robust examples were. 10% is far from both, and ``DEAD_MIN`` keeps one or two examples
    from deciding.
    """
    dead = {a.label: a.dead_gradients & a.robust for a in cell.attacks if a.dead_gradients is not None}
    if not dead:
        return not_applicable("no gradient attack was probed")
    robust = {a.label: a.robust for a in cell.attacks}
    unreliable = tuple(k for k, d in dead.items() if _substantial(int(d.sum()), int(robust[k].sum())))
    live = torch.zeros_like(cell.attacks[0].robust)
    for k, d in dead.items():
        live |= robust[k] & ~d
    worst = cell.worst_case
    unsupported = worst & ~live
    n_unsupported, n_worst = int(unsupported.sum()), int(worst.sum())
    counts = ", ".join(f"{k} {int(d.sum())}/{int(robust[k].sum())}" for k, d in dead.items())
    detail = f"robust examples with a dead margin gradient (zero, or gain < {DEAD_GAIN:g} of the margin): "
    detail += counts
    if _substantial(n_unsupported, n_worst):
        blind = [k for k, d in dead.items() if bool((d & unsupported).any())]
        return CheckResult(
            False,
            f"{detail}; {n_unsupported} of the {n_worst} examples the cell counts robust had only dead "
            f"gradients: {', '.join(blind)} had nothing to follow there (gradient masking), so the number "
            "measures the attacks, not the defense",
            unreliable_attacks=unreliable,
        )
    if unreliable:
        return CheckResult(
            True,
            f"{detail}; {', '.join(unreliable)} had dead gradients (unreliable on its own), but the examples "
            "the cell counts robust had live gradients from another attack",
            unreliable_attacks=unreliable,
        )
    return CheckResult(True, detail)


def _substantial(n_dead: int, n_robust: int) -> bool:
    return n_dead >= max(DEAD_MIN, DEAD_SHARE * n_robust)


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
