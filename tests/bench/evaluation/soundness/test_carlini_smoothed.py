"""The Carlini-style checks on a pipeline whose front-end declares smoothing attack g as its cell does.

A smoothed pipeline is the smoothed classifier g, judged by PREDICT and attacked by ``smoothed-pgd``; FGSM or
PGD on the noise-free f∘D would test a function nobody is judged by. Tiny: 16 examples of 16 pixels and a
linear classifier, so PREDICT's 1000 draws per judgment cost little.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from bench.api import (
    ATTACK_CHECKS,
    ATTACKS,
    AttackEvidence,
    CellEvidence,
    DatasetInfo,
    FrontEnd,
    GaussianSmoothing,
    Identity,
    ImageData,
    JobContext,
    Pipeline,
    Threat,
)
from bench.attacks.pgd import FGSM, PGD
from bench.attacks.smoothed_pgd import SmoothedPGD
from bench.evaluation.judge import judged
from bench.evaluation.run_attack import run_attack
from bench.evaluation.soundness.carlini import SWEEP_STEPS, family

pytestmark = pytest.mark.usefixtures("one_thread")

N, CLASSES, SHAPE = 16, 3, (1, 4, 4)
INFO = DatasetInfo("tiny", CLASSES, SHAPE, (0.5,), (0.5,), N, N)
THREAT = Threat("linf", 0.3)
#: The cell's smoothed attack: few steps and draws, a seed the checks must not reuse.
CELL_ATTACK: dict[str, Any] = {"steps": 5, "m": 4, "seed": 3}


class Smoothed(Identity):
    smoothing = GaussianSmoothing(0.25)


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, CLASSES)).eval()


def tiny_data(pipeline: Pipeline) -> ImageData:
    """Labels are g's answers (f's where PREDICT abstains), so most examples start correct."""
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(N, *SHAPE, generator=g) * 255).round().to(torch.uint8)
    x = images.float() / 255
    with torch.no_grad():
        answers = judged(pipeline, x, CLASSES)
        labels = torch.where(answers >= 0, answers, pipeline.predict(x))
    return ImageData(images, labels, "tiny", INFO)


def make_cell(frontend: type[FrontEnd], kind: str, params: dict[str, Any]) -> CellEvidence:
    """A cell that ran one attack, stored as an attack job stores it."""
    model = linear_model()
    data = tiny_data(Pipeline(model, frontend()))
    cls = ATTACKS.get(kind)
    attack = cls(cls.Params.model_validate(params))
    ctx = JobContext()
    out = run_attack(Pipeline(model, frontend()), attack, data, THREAT, ctx, 8)
    config = {"attack": kind, "params": attack.params.model_dump(mode="json"), "bpda": True,
              "norm": THREAT.norm, "eps": THREAT.eps}
    evidence = AttackEvidence(kind, config, out.clean, out.robust, out.x_adv, dead_gradients=out.dead)
    return CellEvidence(make_pipeline=lambda: Pipeline(model, frontend()), data=data, threat=THREAT,
                        attacks=[evidence], ctx=ctx, n_checks=N, batch_size=8)


@pytest.fixture(scope="module")
def smoothed_cell() -> CellEvidence:
    return make_cell(Smoothed, "smoothed-pgd", CELL_ATTACK)


def test_the_checks_attack_a_smoothed_cell_with_the_smoothed_family(smoothed_cell: CellEvidence) -> None:
    one_step = ATTACK_CHECKS.get("iterative-beats-fgsm")(smoothed_cell)
    assert "one-step smoothed PGD (4 draws) (bpda on)" in one_step.detail and "FGSM" not in one_step.detail
    sweep = ATTACK_CHECKS.get("eps-sweep-to-chance")(smoothed_cell)
    assert sweep.detail.startswith(f"smoothed PGD (4 draws), {SWEEP_STEPS} steps (cross-entropy of the mean "
                                   "softmax, no random start")
    doubling = ATTACK_CHECKS.get("steps-doubling-stable")(smoothed_cell)
    assert doubling.detail.startswith("smoothed-pgd (smoothed PGD (4 draws)): 5 -> 10 steps"), doubling.detail


def test_the_transfer_attack_on_the_bare_classifier_is_plain_pgd(smoothed_cell: CellEvidence) -> None:
    """The bare classifier declares no smoothing, so there is no g to attack with smoothed-pgd there."""
    result = ATTACK_CHECKS.get("whitebox-beats-transfer")(smoothed_cell)
    assert result.detail.startswith("PGD crafted on the undefended classifier"), result.detail


def test_the_checks_attacks_take_the_cells_draws_and_a_seed_of_their_own(smoothed_cell: CellEvidence) -> None:
    checks = family(smoothed_cell, smoothed_cell.make_pipeline())
    one_step, _ = checks.one_step(THREAT.eps)
    assert isinstance(one_step, SmoothedPGD)
    assert (one_step.params.steps, one_step.params.step_size, one_step.params.random_start) == (1, 0.3, False)
    one_step.check(THREAT)  # one step of eps reaches the edge of the ball: the reach rule lets it through
    sweep, _ = checks.sweep()
    assert isinstance(sweep, SmoothedPGD)
    assert (sweep.params.steps, sweep.params.random_start) == (SWEEP_STEPS, False)
    for attack in (one_step, sweep):
        assert (attack.params.m, attack.params.seed) == (CELL_ATTACK["m"], CELL_ATTACK["seed"] + 1)


def test_a_plain_cell_still_runs_plain_fgsm_and_pgd() -> None:
    cell = make_cell(Identity, "pgd", {"steps": 5})
    checks = family(cell, cell.make_pipeline())
    one_step, _ = checks.one_step(THREAT.eps)
    sweep, _ = checks.sweep()
    assert type(one_step) is FGSM and type(sweep) is PGD and sweep.params.loss == "margin"
    assert "FGSM (bpda on)" in ATTACK_CHECKS.get("iterative-beats-fgsm")(cell).detail
    assert ATTACK_CHECKS.get("eps-sweep-to-chance")(cell).detail.startswith(
        f"PGD-{SWEEP_STEPS} (margin loss, no random start")
    assert ATTACK_CHECKS.get("steps-doubling-stable")(cell).detail.startswith("pgd: 5 -> 10 steps")


def fake_cell(kind: str, params: dict[str, Any], threat: Threat) -> CellEvidence:
    """A smoothed cell whose stored outcome claims every example robust, without running the attack."""
    model = linear_model()
    data = tiny_data(Pipeline(model, Smoothed()))
    everything = torch.ones(N, dtype=torch.bool)
    stored = ATTACKS.get(kind).Params.model_validate(params).model_dump(mode="json")
    config = {"attack": kind, "params": stored, "bpda": True, "norm": threat.norm, "eps": threat.eps}
    evidence = AttackEvidence(kind, config, everything, everything.clone(), data.images.float() / 255)
    return CellEvidence(make_pipeline=lambda: Pipeline(model, Smoothed()), data=data, threat=threat,
                        attacks=[evidence], ctx=JobContext(), n_checks=N, batch_size=8)


def test_doubling_a_preset_that_fixes_its_steps_is_not_applicable() -> None:
    result = ATTACK_CHECKS.get("steps-doubling-stable")(fake_cell("pgd-irs-weak", {}, Threat("l2", 0.5)))
    assert result.passed and result.detail.startswith("not applicable: pgd-irs-weak (PGDIRSWeak) does not "
                                                      "accept 40 steps")


def test_transfer_wins_on_a_smoothed_pipeline_are_re_judged_by_a_larger_predict() -> None:
    """A white-box outcome claiming every example robust is contradicted by the transfer attack; its wins
    are confirmed by PREDICT on five times the draws, not by a forward pass of f∘D."""
    result = ATTACK_CHECKS.get("whitebox-beats-transfer")(fake_cell("smoothed-pgd", CELL_ATTACK, THREAT))
    assert "re-judged by 5000 fresh draws (PREDICT)" in result.detail, result.detail
    assert not result.passed
