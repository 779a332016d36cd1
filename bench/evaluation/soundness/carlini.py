"""Carlini et al. 2019's automatic checks ("On Evaluating Adversarial Robustness", Sec. 5 and App. A).

Each check runs extra attacks on the first ``n_checks`` examples of a cell and compares them with the stored
per-example outcomes. None of them proves a number right; each catches one way a number is known to come out
too high: gradient masking (FGSM beating PGD, an unbounded attack that cannot reach chance, a transfer attack
beating the white-box one), an attack that has not converged (doubling its steps still helps), or an
evaluation that never switched on BPDA. Attacks come from the registry, so the checks test the code that
produced the number rather than a private copy of it.

Every adversarial example a check's own attacks find, verified by the harness, at a radius no larger than the
cell's is returned as a counterexample (``CheckResult.counterexamples``): robust accuracy cannot rise with the
radius, so the cell counts it against its worst case whichever attack found it.

In a cascade an attack runs only on the examples earlier attacks failed to break, so its stored outcome is
not the number it would get alone; the checks that compare an attack's standalone number rerun it on the
check examples it skipped.

A pipeline whose front-end declares smoothing is the smoothed classifier g: it is judged by PREDICT on fresh
noise and its cell attacks it with the ``smoothed-pgd`` family. The checks' own attacks on it are that family
too (:class:`Family`), since FGSM or PGD on the noise-free f∘D attack a function nobody is judged by and a
comparison with the cell's attacks would say nothing about them.

A check that does not apply to a cell (no PGD-family attack, an L1 threat PGD cannot work in) passes with a
detail starting "not applicable", so a cell is only marked unreliable for evidence against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import ValidationError
from scipy.stats import binom

from bench.api import (
    ATTACKS,
    Attack,
    AttackEvidence,
    BpdaMode,
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
from bench.attacks.smoothed_pgd import SmoothedPGD, SmoothedPGDParams
from bench.evaluation.judge import (
    PREDICT_N,
    SmoothedPredict,
    declared_smoothing,
    judged,
    passes_per_prediction,
)
from bench.evaluation.run_attack import AttackOutcome, run_attack
from bench.evaluation.soundness.common import attack_class, bpda_of, bpda_text, not_applicable, pct
from bench.evaluation.verify import verified_correct

#: Significance of the one-sided tests that give small check subsets a tolerance.
ALPHA = 0.05
#: The epsilon sweep's radii, as fractions of its largest radius.
SWEEP_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
#: Steps of the sweep's PGD: enough to cross any boundary at these radii, cheap enough for every cell.
SWEEP_STEPS = 10
#: How many times the usual vote a randomized pipeline's suspect transfer examples are re-judged with.
CONFIRM_VOTES = 5


def check_data(cell: CellEvidence) -> ImageData:
    """The prefix the checks run on; stored outcomes line up with it because attack jobs keep data order."""
    return cell.data.subset(torch.arange(cell.n_checks), f"checks:{cell.n_checks}")


def pipeline_with(cell: CellEvidence, bpda: BpdaMode) -> Pipeline:
    pipeline = cell.make_pipeline()
    if bpda == "frontend":
        return Pipeline(pipeline.classifier, pipeline.frontend, bpda="frontend",
                        eot_samples=pipeline.eot_samples, vote_draws=pipeline.vote_draws)
    set_bpda(pipeline.frontend, bpda)
    return pipeline


def run_on_checks(
    cell: CellEvidence,
    pipeline: Pipeline,
    attack: Attack,
    threat: Threat | None = None,
    only: torch.Tensor | None = None,
) -> AttackOutcome:
    """An attack on the check prefix, judged by the harness exactly as in an attack job."""
    return run_attack(pipeline, attack, check_data(cell), threat or cell.threat, cell.ctx, cell.batch_size,
                      only=only)


def fooled(out: AttackOutcome) -> torch.Tensor:
    """Per example: a verified adversarial example (right on the clean input, wrong on the proposed one)."""
    attacked = out.clean if out.attacked is None else out.attacked
    return attacked & ~out.robust


def is_iterative_pgd(a: AttackEvidence) -> bool:
    """PGD and its presets; FGSM is a one-step PGD subclass, so it is excluded (it has no steps to double)."""
    cls = attack_class(a)
    return issubclass(cls, PGD) and not issubclass(cls, FGSM)


def is_iterative(a: AttackEvidence) -> bool:
    """An iterative PGD on f∘D or on the smoothed classifier g (``smoothed-pgd`` and its presets, which are
    not PGD subclasses): the attacks with steps to double."""
    return is_iterative_pgd(a) or issubclass(attack_class(a), SmoothedPGD)


@dataclass(frozen=True)
class Family:
    """The attacks the checks run on one pipeline: FGSM and margin-loss PGD on f∘D, or, where the front-end
    declares smoothing, ``smoothed-pgd`` on g (``smoothed`` holds its draws per step and seed).

    The smoothed attacks take the cell's m, so they estimate g as well as the cell's attack did, and a seed
    no smoothed attack of the cell used, so they draw noise of their own instead of replaying the cell's.
    """

    smoothed: SmoothedPGDParams | None = None

    @property
    def name(self) -> str:
        """How details name the smoothed family (empty for the plain one)."""
        return "" if self.smoothed is None else f"smoothed PGD ({self.smoothed.m} draws)"

    def one_step(self, eps: float) -> tuple[Attack, str]:
        """FGSM, or its smoothed counterpart: one step of the full radius ``eps`` from the clean input. The
        smoothed attack's one-step rule only refuses two step sizes at once, and one step of eps reaches the
        edge of the ball, so it is allowed."""
        if self.smoothed is None:
            return ATTACKS.get("fgsm")(), "FGSM"
        attack = smoothed_pgd(self.smoothed, steps=1, step_size=eps, random_start=False)
        return attack, f"one-step {self.name}"

    def sweep(self) -> tuple[Attack, str]:
        """The epsilon sweep's attack, and how the detail names it with its loss (its parenthesis left open).

        g has no margin loss here: ``smoothed-pgd`` ascends only the cross-entropy of the mean softmax (the
        log outside the mean is what makes it follow g), and a margin averaged over draws would be plain EOT
        on f under noise, not an attack on g. Cross-entropy serves a sweep to chance: the margin loss guards
        against a saturated softmax whose cross-entropy gradient vanishes, the mean over noise draws saturates
        only where f is confident on nearly every draw, and the attack computes it in log space, so it does
        not underflow; and where any image is reachable the sweep asks only whether the gradient leads
        anywhere, not for the tightest number."""
        if self.smoothed is None:
            cls = ATTACKS.get("pgd")
            params = {"steps": SWEEP_STEPS, "random_start": False, "loss": "margin"}
            return cls(cls.Params.model_validate(params)), f"PGD-{SWEEP_STEPS} (margin loss"
        attack = smoothed_pgd(self.smoothed, steps=SWEEP_STEPS, random_start=False)
        return attack, f"{self.name}, {SWEEP_STEPS} steps (cross-entropy of the mean softmax"

    def own_noise(self, cls: type[Attack], params: dict[str, Any]) -> dict[str, Any]:
        """A cell attack's ``params`` with the checks' seed, when it draws smoothing noise."""
        if self.smoothed is None or not issubclass(cls, SmoothedPGD):
            return params
        return {**params, "seed": self.smoothed.seed}


def smoothed_pgd(draws: SmoothedPGDParams, **params: Any) -> Attack:
    """The registered ``smoothed-pgd`` with ``params`` and the m and seed of ``draws``."""
    cls = ATTACKS.get("smoothed-pgd")
    return cls(cls.Params.model_validate({"m": draws.m, "seed": draws.seed, **params}))


def family(cell: CellEvidence, pipeline: Pipeline) -> Family:
    """The family for the cell's ``pipeline``: m from the cell's first smoothed attack (the attack's default
    when it ran none), the seed one above every seed its smoothed attacks used."""
    if declared_smoothing(pipeline) is None:
        return Family()
    ran = [SmoothedPGDParams.model_validate(a.config["params"]) for a in cell.attacks
           if issubclass(attack_class(a), SmoothedPGD)]
    m = ran[0].m if ran else SmoothedPGDParams().m
    return Family(SmoothedPGDParams(m=m, seed=1 + max((p.seed for p in ran), default=0)))


def strongest(cell: CellEvidence) -> AttackEvidence:
    """The gradient attack (any attack when none is) that fooled the largest share of the check examples it
    ran on, whose BPDA setting the checks copy. The share, not the robust count: in a cascade an attack runs
    only on what earlier ones left, so a late attack's robust count is low whatever it could do."""
    n = cell.n_checks

    def share(a: AttackEvidence) -> float:
        attacked = attacked_on_checks(a, n)
        return int((attacked & ~a.robust[:n]).sum()) / max(1, int(attacked.sum()))

    return max([a for a in cell.attacks if attack_class(a).uses_gradients] or cell.attacks, key=share)


def attacked_on_checks(a: AttackEvidence, n: int) -> torch.Tensor:
    return (a.clean if a.attacked is None else a.attacked)[:n]


def standalone(cell: CellEvidence, a: AttackEvidence) -> tuple[torch.Tensor, AttackOutcome | None]:
    """The attack's robustness on the check prefix as if it had run alone, and the rerun that gave it (None
    when the stored outcome already is that: the attack ran on every clean-correct check example)."""
    n = cell.n_checks
    if torch.equal(attacked_on_checks(a, n), a.clean[:n]):
        return a.robust[:n], None
    out = run_on_checks(cell, pipeline_with(cell, bpda_of(a)), configured(a))
    return out.robust, out


def configured(a: AttackEvidence) -> Attack:
    """A fresh instance of the cell's attack ``a`` with its stored parameters."""
    cls = attack_class(a)
    return cls(cls.Params.model_validate(a.config["params"]))


def pgd_norm_problem(threat: Threat) -> str | None:
    if threat.norm in PGD.norms:
        return None
    return f"PGD works in {', '.join(PGD.norms)}, not {threat.norm}"


def sign_test(wins: int, losses: int) -> float:
    """One-sided p-value of ``wins`` or more of ``wins + losses`` discordant pairs, under a fair coin."""
    return float(binom.sf(wins - 1, wins + losses, 0.5)) if wins else 1.0


@register_check("iterative-beats-fgsm", runs_attacks=True)
def iterative_beats_fgsm(cell: CellEvidence) -> CheckResult:
    """One gradient step must not beat many: when FGSM wins, the iterative attacks are stuck (masking). On a
    smoothed pipeline the one step is ``smoothed-pgd``'s (:meth:`Family.one_step`).

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
    pipeline = pipeline_with(cell, bpda)
    one_step, name = family(cell, pipeline).one_step(cell.threat.eps)
    fgsm = run_on_checks(cell, pipeline, one_step)
    fgsm_robust = fgsm.robust
    iter_robust = worst_case(iterative, n)
    fgsm_wins = int((iter_robust & ~fgsm_robust).sum())
    fgsm_loses = int((fgsm_robust & ~iter_robust).sum())
    p = sign_test(fgsm_wins, fgsm_loses)
    detail = (
        f"robust accuracy on the first {n}: iterative worst case {pct(int(iter_robust.sum()), n)}, "
        f"{name} ({bpda_text(bpda)}) {pct(int(fgsm_robust.sum()), n)}; {name} alone fools "
        f"{fgsm_wins}, the iterative attacks alone fool {fgsm_loses} (one-sided sign test p={p:.3g})"
    )
    if p < ALPHA:
        return CheckResult(False, detail + f": {name} is stronger than the iterative attacks, a sign of "
                                           "gradient masking or a broken step size", fooled(fgsm))
    return CheckResult(True, detail, fooled(fgsm))


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
    with the BPDA setting of the cell's strongest attack (named in the detail) and stops at the first radius
    that reaches chance. Chance is 1/classes plus a one-sided binomial margin: the 95% quantile of correct
    answers by guessing. Examples it fools at radii no larger than the cell's are counterexamples. On a
    smoothed pipeline it is ``smoothed-pgd`` with the same steps and no random start (:meth:`Family.sweep`,
    which says why cross-entropy stands in for the margin loss there).
    """
    problem = pgd_norm_problem(cell.threat)
    if problem:
        return not_applicable(problem)
    n, classes = cell.n_checks, cell.data.info.num_classes
    allowed = int(binom.ppf(1 - ALPHA, n, 1.0 / classes))
    model = strongest(cell)
    bpda = bpda_of(model)
    top = sweep_top(cell.threat, cell.data.info.input_shape)
    pipeline = pipeline_with(cell, bpda)
    attack, name = family(cell, pipeline).sweep()
    swept = (f"{name}, no random start, {bpda_text(bpda)} as in the cell's strongest attack "
             f"{model.label}) on the first {n}")
    seen = []
    counter = torch.zeros(n, dtype=torch.bool)
    for fraction in SWEEP_FRACTIONS:
        eps = top * fraction
        out = run_on_checks(cell, pipeline, attack, Threat(cell.threat.norm, eps))
        if eps <= cell.threat.eps:
            counter |= fooled(out)
        correct = int(out.robust.sum())
        seen.append(f"{pct(correct, n)} at eps={eps:.3g}")
        if correct <= allowed:
            return CheckResult(True, f"{swept}: {', '.join(seen)}; chance is {pct(allowed, n)} at most",
                               counter)
    return CheckResult(False, f"{swept}: {', '.join(seen)}; it never reached chance ({pct(allowed, n)} at "
                              "most) even where any image is reachable: gradient masking, the cell's number "
                              "is too high", counter)


@register_check("steps-doubling-stable", runs_attacks=True)
def steps_doubling_stable(cell: CellEvidence) -> CheckResult:
    """Doubling the steps of the cell's first PGD-family attack (``smoothed-pgd``'s included, then with noise
    of its own: :class:`Family`) must not fool significantly more examples; if it does, the attack had not
    converged and the cell's number is too high.

    Both runs are over the same check examples, so the test is paired and one-sided, as
    ``iterative-beats-fgsm``'s: only examples fooled by exactly one of the runs carry information, and under
    "converged" (doubling changes nothing but restart noise) each goes either way with probability 1/2. It
    fails when the doubled run wins so many more of them that a fair coin would with probability < 5%, so one
    example never decides it (the smallest failing split is 5 to 0); a doubled run that wins fewer cannot make
    the cell's number too high. The stored run is the attack's own outcome unless the attack ran in a cascade
    and skipped check examples earlier attacks broke; then it is rerun alone on the check examples.
    """
    problem = pgd_norm_problem(cell.threat)
    if problem:
        return not_applicable(problem)
    first = next((a for a in cell.attacks if is_iterative(a)), None)
    if first is None:
        return not_applicable("the cell ran no iterative PGD-family attack")
    n = cell.n_checks
    cls = attack_class(first)
    steps = int(first.config["params"]["steps"])
    pipeline = pipeline_with(cell, bpda_of(first))
    checks = family(cell, pipeline)
    try:
        params = cls.Params.model_validate(
            checks.own_noise(cls, {**first.config["params"], "steps": 2 * steps}))
    except ValidationError:
        return not_applicable(f"{first.label} ({cls.__name__}) does not accept {2 * steps} steps: its preset "
                              "fixes the budget")
    doubled = cls(params)
    again_out = run_on_checks(cell, pipeline, doubled)
    stored, rerun = standalone(cell, first)
    again = again_out.robust
    counter = fooled(again_out) | (fooled(rerun) if rerun is not None else torch.zeros_like(again))
    only_doubled, only_stored = int((stored & ~again).sum()), int((again & ~stored).sum())
    p = sign_test(only_doubled, only_stored)
    named = f"{first.label} ({checks.name})" if issubclass(cls, SmoothedPGD) else first.label
    detail = (
        f"{named}: {steps} -> {2 * steps} steps on the first {n}: robust {pct(int(stored.sum()), n)} "
        f"{'stored' if rerun is None else 'alone (rerun: it ran in a cascade)'}, "
        f"{pct(int(again.sum()), n)} doubled ({only_doubled} fooled only with doubled steps, {only_stored} "
        f"only with the {'stored' if rerun is None else 'rerun'} run; one-sided sign test p={p:.3g})"
    )
    if p < ALPHA:
        return CheckResult(False, detail + ": the attack has not converged and the cell's number is too high",
                           counter)
    return CheckResult(True, detail, counter)


@register_check("whitebox-beats-transfer", runs_attacks=True)
def whitebox_beats_transfer(cell: CellEvidence) -> CheckResult:
    """Every example fooled by PGD crafted on the undefended classifier and transferred through the defense
    must also be fooled by the cell's white-box attacks, which see strictly more.

    The transfer attack is the cell's first PGD-family attack (the registered ``pgd`` when there is none),
    so the two differ only in what they can see, except that it proposes its final iterate (``keep: final``):
    the first one to fool the bare classifier barely crosses its boundary and would rarely transfer. On a
    smoothed pipeline it is the registered ``pgd`` too: the bare classifier declares no smoothing, so there
    is no g to attack with ``smoothed-pgd``; its examples are judged through the full pipeline, by PREDICT
    on fresh noise as in the harness, and re-judged by a larger PREDICT. The
    white-box worst case leaves out the cell's own transfer attacks. Where the white-box attacks skipped
    check examples (a cascade, after a transfer attack broke them), they are rerun alone on those
    (:func:`white_box_robust`), so every check example is judged by the white-box attacks.
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
    transferred, advs = [], []
    classes = cell.data.info.num_classes
    for i, (x, y) in enumerate(check_data(cell).batches(cell.batch_size, cell.ctx.device)):
        ok = clean[i * cell.batch_size : i * cell.batch_size + x.shape[0]].to(x.device)
        x_adv = x.clone()
        if bool(ok.any()):
            x_adv[ok] = attack.perturb(bare, x[ok], y[ok], cell.threat, cell.ctx).detach()
        transferred.append((ok & ~verified_correct(full, x, x_adv, y, cell.threat, classes)).cpu())
        advs.append(x_adv.cpu())
    transfer_fooled = torch.cat(transferred)
    white, rerun_fooled, n_rerun = white_box_robust(cell)
    counter = transfer_fooled | rerun_fooled
    missed_mask = transfer_fooled & white
    detail = (
        f"{attack.describe()['class']} crafted on the undefended classifier fools "
        f"{int(transfer_fooled.sum())} of the first {n} through the defense; the cell's white-box worst case "
        f"leaves {int(missed_mask.sum())} of those robust"
    )
    if n_rerun:
        detail += (f"; {n_rerun} check examples the white-box attacks skipped (a cascade) were judged by "
                   "rerunning them alone")
    smoothed = declared_smoothing(full) is not None
    if (full.randomized or smoothed) and bool(missed_mask.any()):
        # One majority vote, or one PREDICT, can go either way on a borderline example. The transfer attack's
        # wins count against the cell only where its example still fools a much larger fresh judgment: then
        # a reliable adversarial example exists that the cell counted as robust, whatever the white-box
        # attacks drew.
        confirm = Pipeline(full.classifier, full.frontend, vote_draws=CONFIRM_VOTES * full.vote_draws)
        predict = SmoothedPredict(n=CONFIRM_VOTES * PREDICT_N) if smoothed else None
        x_missed = torch.cat(advs)[missed_mask].to(cell.ctx.device)
        y_missed = check_data(cell).labels[missed_mask].to(cell.ctx.device)
        with torch.no_grad():
            still_fooled = judged(confirm, x_missed, classes, predict) != y_missed
        detail += (f"; re-judged by {passes_per_prediction(confirm, predict)} fresh draws"
                   f"{' (PREDICT)' if smoothed else ''}, {int(still_fooled.sum())} still fool the pipeline")
        missed = int(still_fooled.sum())
    else:
        missed = int(missed_mask.sum())
    if missed:
        return CheckResult(False, detail + ": the white-box attacks miss what a transfer attack finds "
                                           "(gradient masking), the cell's number is too high", counter)
    return CheckResult(True, detail, counter)


def white_box_robust(cell: CellEvidence) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Per check example: robust to every white-box attack (the cell's transfer attacks left out); the
    examples the reruns below fooled; how many check examples they ran on.

    A check example that no white-box attack broke but some skipped (a cascade, after a transfer attack broke
    it) is judged by rerunning the white-box attacks alone on it, in the cell's order, each on what the
    previous ones left robust (the registered ``pgd`` when the cell ran no white-box attack): its outcome is
    then the one it would have had with every attack run on every example.
    """
    n = cell.n_checks
    clean = cell.attacks[0].clean[:n]
    white = [a for a in cell.attacks if not attack_class(a).needs_surrogate]
    robust = worst_case(white, n) if white else clean.clone()
    broken = torch.zeros_like(clean)
    skipped = clean.clone() if not white else torch.zeros_like(clean)
    for a in white:
        attacked = attacked_on_checks(a, n)
        broken |= attacked & ~a.robust[:n]
        skipped |= clean & ~attacked
    need = skipped & ~broken
    found = torch.zeros_like(clean)
    survivors = need.clone()
    reruns = [(bpda_of(a), configured(a)) for a in white]
    for bpda, attack in reruns or [(bpda_of(strongest(cell)), ATTACKS.get("pgd")())]:
        if not bool(survivors.any()):
            break
        out = run_on_checks(cell, pipeline_with(cell, bpda), attack, only=survivors)
        found |= fooled(out)
        survivors &= out.robust
    return torch.where(need, survivors, robust), found, int(need.sum())
