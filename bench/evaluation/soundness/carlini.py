"""Carlini et al. 2019's automatic checks ("On Evaluating Adversarial Robustness", Sec. 5 and App. A).

Each check runs extra attacks on the first ``n_checks`` examples of a cell and compares them with the stored
per-example outcomes. None of them proves a number right; each catches one way a number is known to come out
too high: gradient masking (FGSM beating PGD, an unbounded attack that cannot reach chance, a transfer attack
beating the white-box one), an attack that has not converged (doubling its steps still helps), or an
evaluation that never switched on BPDA. Attacks come from the registry, so the checks test the code that
produced the number rather than a private copy of it.

A check that does not apply to a cell (no PGD-family attack, an L1 threat PGD cannot work in) passes with a
detail starting "not applicable", so a cell is only marked unreliable for evidence against it.
"""

from __future__ import annotations

import math

import torch
from scipy.stats import binom

from bench.api import (
    ATTACKS,
    Attack,
    AttackEvidence,
    CellEvidence,
    CheckResult,
    Identity,
    ImageData,
    Pipeline,
    Threat,
    register_check,
    set_bpda,
    worst_case,
)
from bench.attacks.pgd import FGSM, PGD
from bench.evaluation.run_attack import run_attack
from bench.evaluation.soundness.common import attack_class, bpda_of, not_applicable, pct
from bench.evaluation.verify import verified_correct

#: Significance of the one-sided tests that give small check subsets a tolerance.
ALPHA = 0.05
#: The epsilon sweep's radii, as fractions of its largest radius.
SWEEP_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
#: Steps of the sweep's PGD: enough to cross any boundary at these radii, cheap enough for every cell.
SWEEP_STEPS = 10
#: How many times the usual vote a randomized pipeline's suspect transfer examples are re-judged with.
CONFIRM_VOTES = 5
#: Most that doubling the steps may lower robust accuracy (as a fraction) before the attack counts as
#: unconverged.
STEPS_TOLERANCE = 0.01


def check_data(cell: CellEvidence) -> ImageData:
    """The prefix the checks run on; stored outcomes line up with it because attack jobs keep data order."""
    return cell.data.subset(torch.arange(cell.n_checks), f"checks:{cell.n_checks}")


def pipeline_with(cell: CellEvidence, bpda: bool) -> Pipeline:
    pipeline = cell.make_pipeline()
    set_bpda(pipeline.frontend, bpda)
    return pipeline


def robust_on_checks(
    cell: CellEvidence, pipeline: Pipeline, attack: Attack, threat: Threat | None = None
) -> torch.Tensor:
    """Per-example robustness on the check prefix, judged by the harness exactly as in an attack job."""
    out = run_attack(pipeline, attack, check_data(cell), threat or cell.threat, cell.ctx, cell.batch_size)
    return out.robust


def is_iterative_pgd(a: AttackEvidence) -> bool:
    """PGD and its presets; FGSM is a one-step PGD subclass, so it is excluded (it has no steps to double)."""
    cls = attack_class(a)
    return issubclass(cls, PGD) and not issubclass(cls, FGSM)


def strongest(cell: CellEvidence) -> AttackEvidence:
    """The attack with the lowest robust accuracy on the check prefix, whose BPDA setting the checks copy."""
    return min(cell.attacks, key=lambda a: int(a.robust[: cell.n_checks].sum()))


def pgd_norm_problem(threat: Threat) -> str | None:
    if threat.norm in PGD.norms:
        return None
    return f"PGD works in {', '.join(PGD.norms)}, not {threat.norm}"


@register_check("iterative-beats-fgsm", runs_attacks=True)
def iterative_beats_fgsm(cell: CellEvidence) -> CheckResult:
    """One gradient step must not beat many: when FGSM wins, the iterative attacks are stuck (masking).

    The tolerance is a paired one-sided sign test (McNemar): only examples the two disagree on carry
    information, and under "equally strong" each goes either way with probability 1/2. The check fails when
    FGSM wins so many more of them than it loses that a fair coin would do so with probability < 5%; a single
    example can therefore never fail it (the smallest failing split is 5 to 0).
    """
    problem = pgd_norm_problem(cell.threat)
    if problem:
        return not_applicable(problem)
    n = cell.n_checks
    iterative = [a for a in cell.attacks if not issubclass(attack_class(a), FGSM)]
    if not iterative:
        return not_applicable("the cell ran no iterative attack")
    bpda = bpda_of(strongest(cell))
    fgsm = ATTACKS.get("fgsm")()
    fgsm_robust = robust_on_checks(cell, pipeline_with(cell, bpda), fgsm)
    iter_robust = worst_case(iterative, n)
    fgsm_wins = int((iter_robust & ~fgsm_robust).sum())
    fgsm_loses = int((fgsm_robust & ~iter_robust).sum())
    p = float(binom.sf(fgsm_wins - 1, fgsm_wins + fgsm_loses, 0.5)) if fgsm_wins else 1.0
    detail = (
        f"robust accuracy on the first {n}: iterative worst case {pct(int(iter_robust.sum()), n)}, "
        f"FGSM (bpda {'on' if bpda else 'off'}) {pct(int(fgsm_robust.sum()), n)}; FGSM alone fools "
        f"{fgsm_wins}, the iterative attacks alone fool {fgsm_loses} (one-sided sign test p={p:.3g})"
    )
    if p < ALPHA:
        return CheckResult(False, detail + ": FGSM is stronger than the iterative attacks, a sign of "
                                           "gradient masking or a broken step size")
    return CheckResult(True, detail)


def sweep_top(threat: Threat, input_shape: tuple[int, ...]) -> float:
    """Linf 1 reaches every image; in L2 half the box diagonal already reaches the uninformative grey image
    from any input, and PGD's L2 steps use a longer radius poorly, so the sweep stops there."""
    if threat.norm == "linf":
        return 1.0
    return math.sqrt(math.prod(input_shape)) / 2


@register_check("eps-sweep-to-chance", runs_attacks=True)
def eps_sweep_to_chance(cell: CellEvidence) -> CheckResult:
    """An attack allowed to change the image completely must drive accuracy to chance; if it cannot, its
    gradients lead nowhere (gradient masking) and its number at the cell's radius means nothing.

    The sweep's PGD has no random start, because at these radii the random start alone is a large perturbation
    that can fool a classifier without any gradient information and would hide exactly the masking this check
    looks for; and it uses the margin loss, whose gradient does not vanish when the softmax saturates. It runs
    with the BPDA setting of the cell's strongest attack and stops at the first radius that reaches chance.
    Chance is 1/classes plus a one-sided binomial margin: the 95% quantile of correct answers by guessing.
    """
    problem = pgd_norm_problem(cell.threat)
    if problem:
        return not_applicable(problem)
    n, classes = cell.n_checks, cell.data.info.num_classes
    allowed = int(binom.ppf(1 - ALPHA, n, 1.0 / classes))
    bpda = bpda_of(strongest(cell))
    top = sweep_top(cell.threat, cell.data.info.input_shape)
    cls = ATTACKS.get("pgd")
    attack = cls(cls.Params.model_validate({"steps": SWEEP_STEPS, "random_start": False, "loss": "margin"}))
    pipeline = pipeline_with(cell, bpda)
    seen = []
    for fraction in SWEEP_FRACTIONS:
        eps = top * fraction
        correct = int(robust_on_checks(cell, pipeline, attack, Threat(cell.threat.norm, eps)).sum())
        seen.append(f"{pct(correct, n)} at eps={eps:.3g}")
        if correct <= allowed:
            return CheckResult(True, f"PGD-{SWEEP_STEPS} (bpda {'on' if bpda else 'off'}) on the first {n}: "
                                     f"{', '.join(seen)}; chance is {pct(allowed, n)} at most")
    return CheckResult(False, f"PGD-{SWEEP_STEPS} (bpda {'on' if bpda else 'off'}) on the first {n}: "
                              f"{', '.join(seen)}; it never reached chance ({pct(allowed, n)} at most) even "
                              "where any image is reachable: gradient masking, the cell's number is too high")


@register_check("steps-doubling-stable", runs_attacks=True)
def steps_doubling_stable(cell: CellEvidence) -> CheckResult:
    """Doubling the steps of the cell's first PGD-family attack must not lower robust accuracy by a point or
    more; if it does, the attack had not converged and the cell's number is too high.

    Both accuracies are over the same check examples (the stored one from the attack's per-example
    outcomes). The drop is net, one-sided: examples that merely swap sides with a different random start are
    restart noise, not missing steps, and are reported but not counted; a rise would mean the stored run was
    the stronger one, which cannot make the cell's number too high.
    """
    problem = pgd_norm_problem(cell.threat)
    if problem:
        return not_applicable(problem)
    first = next((a for a in cell.attacks if is_iterative_pgd(a)), None)
    if first is None:
        return not_applicable("the cell ran no iterative PGD-family attack")
    n = cell.n_checks
    cls = attack_class(first)
    steps = int(first.config["params"]["steps"])
    doubled = cls(cls.Params.model_validate({**first.config["params"], "steps": 2 * steps}))
    again = robust_on_checks(cell, pipeline_with(cell, bpda_of(first)), doubled)
    stored = first.robust[:n]
    drop = int(stored.sum()) - int(again.sum())
    only_doubled, only_stored = int((stored & ~again).sum()), int((again & ~stored).sum())
    detail = (
        f"{first.label}: {steps} -> {2 * steps} steps on the first {n}: robust {pct(int(stored.sum()), n)} "
        f"stored, {pct(int(again.sum()), n)} doubled ({only_doubled} fooled only with doubled steps, "
        f"{only_stored} only with the stored run)"
    )
    if drop / n >= STEPS_TOLERANCE:
        return CheckResult(False, detail + f": {100.0 * drop / n:.1f} points lower, the attack has not "
                                           "converged and the cell's number is too high")
    return CheckResult(True, detail)


@register_check("whitebox-beats-transfer", runs_attacks=True)
def whitebox_beats_transfer(cell: CellEvidence) -> CheckResult:
    """Every example fooled by PGD crafted on the undefended classifier and transferred through the defense
    must also be fooled by the cell's white-box attacks, which see strictly more.

    The transfer attack is the cell's first PGD-family attack (the registered ``pgd`` when there is none),
    so the two differ only in what they can see, except that it proposes its final iterate (``keep: final``):
    the first one to fool the bare classifier barely crosses its boundary and would rarely transfer.
    """
    problem = pgd_norm_problem(cell.threat)
    if problem:
        return not_applicable(problem)
    n = cell.n_checks
    first = next((a for a in cell.attacks if is_iterative_pgd(a)), None)
    cls = attack_class(first) if first else ATTACKS.get("pgd")
    attack = cls(cls.Params.model_validate({**(first.config["params"] if first else {}), "keep": "final"}))
    full = cell.make_pipeline()
    bare = Pipeline(full.classifier, Identity())
    clean = cell.attacks[0].clean[:n]
    fooled, advs = [], []
    for i, (x, y) in enumerate(check_data(cell).batches(cell.batch_size, cell.ctx.device)):
        ok = clean[i * cell.batch_size : i * cell.batch_size + x.shape[0]].to(x.device)
        x_adv = x.clone()
        if bool(ok.any()):
            x_adv[ok] = attack.perturb(bare, x[ok], y[ok], cell.threat, cell.ctx).detach()
        fooled.append((ok & ~verified_correct(full, x, x_adv, y, cell.threat)).cpu())
        advs.append(x_adv.cpu())
    transfer_fooled = torch.cat(fooled)
    worst = worst_case(cell.attacks, n)
    missed_mask = transfer_fooled & worst
    detail = (
        f"{attack.describe()['class']} crafted on the undefended classifier fools "
        f"{int(transfer_fooled.sum())} of the first {n} through the defense; the cell's worst case leaves "
        f"{int(missed_mask.sum())} of those robust"
    )
    if full.randomized and bool(missed_mask.any()):
        # One majority vote can go either way on a borderline example. The transfer attack's wins count
        # against the cell only where its example still fools a much larger fresh vote: then a reliable
        # adversarial example exists that the cell counted as robust, whatever the white-box attacks drew.
        confirm = Pipeline(full.classifier, full.frontend, vote_draws=CONFIRM_VOTES * full.vote_draws)
        x_missed = torch.cat(advs)[missed_mask].to(cell.ctx.device)
        y_missed = check_data(cell).labels[missed_mask].to(cell.ctx.device)
        with torch.no_grad():
            still_fooled = confirm.predict(x_missed) != y_missed
        detail += (f"; re-judged by {confirm.vote_draws} fresh draws, {int(still_fooled.sum())} still fool "
                   "the pipeline")
        missed = int(still_fooled.sum())
    else:
        missed = int(missed_mask.sum())
    if missed:
        return CheckResult(False, detail + ": the white-box attacks miss what a transfer attack finds "
                                           "(gradient masking), the cell's number is too high")
    return CheckResult(True, detail)
