"""The standard evaluation protocol: the attacks a cell runs when its matrix names none, in order.

Each attack runs only on the examples every earlier one failed to break (a cascade), so the expensive ones
at the end pay only for the survivors of the cheap ones at the start; the cell's number is the per-example
worst case over all of them. The order goes from cheap to expensive and from the attacks a masked gradient
cannot fool to the strongest gradient attack:

1. transfer: PGD crafted on the undefended target classifier, then applied through the front-end; cheap and
   strong against front-ends that only hide their gradients;
2. white-box PGD through the whole pipeline (BPDA on every declared non-differentiable part), cross-entropy
   and margin losses, each with restarts;
3. the same PGD with the whole front-end straight-through (BPDA through the entire front-end), which
   catches non-differentiable parts the defense never declared;
4. AutoAttack (Croce & Hein 2020), pyautoattack's reference code: ``standard`` (APGD-CE, APGD-T, FAB-T,
   Square) for deterministic pipelines, ``rand`` (APGD-CE, APGD-DLR with EOT) for randomized ones.

Randomized pipelines get EOT in every gradient attack from the harness (``evaluation.eot_samples``). Attacks
that do not work in a threat's norm are left out (only AutoAttack works in L1). This module holds data only:
the planner turns it into attack jobs.

A pipeline whose front-end declares smoothing is the smoothed classifier g, judged by PREDICT on fresh noise
(:mod:`bench.evaluation.judge`), and the list above would attack the wrong classifier: every attack there
sees f∘D without noise, and AutoAttack's own success test is a single forward pass of it. Such a pipeline
gets one attack instead: PGD on g's soft classifier (Salman et al. 2019, ``smoothed-pgd``), cross-entropy of
the mean softmax over :data:`SMOOTHED_PGD_DRAWS` fresh draws per step, :data:`PGD_STEPS` steps and
:data:`PGD_RESTARTS` restarts as the deterministic protocol's PGD, in ℓ∞ and ℓ2 (a smoothed pipeline has no
standard attack in ℓ1). The attack sets of other pipelines, and so their job keys, are unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

#: Part of the key of every attack and cell job the standard protocol plans; bump it whenever the attack set
#: below, its order or its budgets change, so cells evaluated with another set are recomputed.
STANDARD_PROTOCOL_VERSION = 1
#: The versions this code can run; a matrix that pins another one (``protocol: standard@N``) is refused.
KNOWN_STANDARD_VERSIONS = (1,)

#: PGD steps of every PGD in the protocol: Madry et al.'s MNIST evaluation length (and the main example's
#: former PGD-100). The step size is the registered ``pgd``'s default, 2.5 * eps / steps (Madry et al.'s rule
#: of thumb), so the steps travel 2.5 eps and every attack reaches the edge of the ball.
PGD_STEPS = 100
#: Random starts of each white-box PGD loss. AutoAttack follows, so these are there to break cheaply what a
#: second random start breaks, not to be the last word; an example counts as robust only if it survives all.
PGD_RESTARTS = 2
#: Noise draws per step of the smoothed-pipeline PGD (m in Salman et al. 2019): enough for the estimate of
#: g's soft classifier to point the step the right way, at m passes per step and example.
SMOOTHED_PGD_DRAWS = 8


@dataclass(frozen=True)
class StandardAttack:
    label: str
    #: A registered attack and its parameters (the attack's own defaults fill in the rest).
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    #: As :attr:`bench.config.AttackConfig.bpda`: True, BPDA on the declared parts; "frontend", the whole
    #: front-end straight-through.
    bpda: bool | Literal["frontend"] = True


def standard_attacks(randomized: bool, smoothed: bool = False) -> list[StandardAttack]:
    """The protocol's attacks in cascade order, for a randomized pipeline or a deterministic one, or for one
    whose front-end declares smoothing (whether or not it is randomized besides)."""
    pgd = {"steps": PGD_STEPS, "restarts": PGD_RESTARTS}
    if smoothed:
        return [StandardAttack("std:smoothed-pgd", "smoothed-pgd", {**pgd, "m": SMOOTHED_PGD_DRAWS})]
    autoattack = (
        # AutoAttack's published budgets (pyautoattack's own defaults: 100 APGD/FAB iterations, 5000 Square
        # queries, 20 EOT draws in the rand version).
        StandardAttack("std:autoattack-rand", "autoattack-rand")
        if randomized
        else StandardAttack("std:autoattack", "autoattack")
    )
    return [
        # One PGD run on the undefended classifier; its final iterate (the highest loss) transfers best.
        StandardAttack("std:transfer", "transfer-pgd", {"surrogate": "undefended", "steps": PGD_STEPS}),
        StandardAttack("std:pgd-ce", "pgd", {**pgd, "loss": "ce"}),
        StandardAttack("std:pgd-margin", "pgd", {**pgd, "loss": "margin"}),
        StandardAttack("std:bpda-frontend", "pgd", {"steps": PGD_STEPS, "loss": "ce"}, bpda="frontend"),
        autoattack,
    ]


def budgeted(
    attacks: list[StandardAttack], budget: Mapping[str, Mapping[str, Any]] | None
) -> tuple[list[StandardAttack], dict[str, str]]:
    """The protocol's attacks with a matrix's own budgets (``evaluation.standard_budget``, by label without
    ``std:``) merged over their parameters, and a note per changed attack (by label) saying what it runs
    instead of the protocol's budget, so that no row of a cell evaluated with less passes for the protocol."""
    out: list[StandardAttack] = []
    notes: dict[str, str] = {}
    for attack in attacks:
        change = dict((budget or {}).get(attack.label.removeprefix("std:"), {}))
        if change:
            said = ", ".join(
                f"{k} {v} (protocol: {attack.params.get(k, 'the attack default')})" for k, v in change.items()
            )
            notes[attack.label] = f"standard protocol budget changed: {attack.label} {said}"
            attack = replace(attack, params={**attack.params, **change})
        out.append(attack)
    return out, notes

