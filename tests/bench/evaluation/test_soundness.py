"""Each Carlini et al. check on tiny pipelines: one evaluation that must pass it, one that must fail it.

The stored outcomes are produced the way attack jobs produce them (``run_attack`` over the whole set), so the
checks see exactly what they see in a cell.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pytest
import torch
from torch import nn

from bench.api import (
    ATTACK_CHECKS,
    ATTACKS,
    BASIC_CHECKS,
    AttackEvidence,
    CellEvidence,
    CheckResult,
    DatasetInfo,
    FrontEnd,
    Identity,
    ImageData,
    JobContext,
    NonDifferentiable,
    Pipeline,
    Threat,
)
from bench.evaluation.run_attack import run_attack

N, CLASSES, SHAPE = 64, 3, (1, 4, 4)
INFO = DatasetInfo("tiny", CLASSES, SHAPE, (0.5,), (0.5,), N, N)

#: (attack kind, params, bpda)
AttackSpec = tuple[str, dict[str, Any], bool]


pytestmark = pytest.mark.usefixtures("one_thread")


class Quantize(FrontEnd):
    """Rounds to 4 grey levels: autograd gives a zero gradient, BPDA the identity's."""

    def __init__(self) -> None:
        super().__init__()
        self.q = NonDifferentiable(lambda x: torch.round(x * 3) / 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.q(x)
        return out


def linear_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, CLASSES)).eval()


def cell(
    frontend: Callable[[], FrontEnd], attacks: Sequence[AttackSpec], cascade: bool = False
) -> CellEvidence:
    """A Linf 0.3 cell whose labels are the pipeline's clean predictions, so every example starts correct.

    ``cascade``: each attack runs only on the examples the earlier ones left robust, as in the standard
    protocol. A transfer attack crafts on the classifier without the front-end."""
    threat = Threat("linf", 0.3)
    model = linear_model()
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(N, *SHAPE, generator=g) * 255).round().to(torch.uint8)
    with torch.no_grad():
        labels = Pipeline(model, frontend()).predict(images.float() / 255)
    data = ImageData(images, labels, "tiny", INFO)
    ctx = JobContext()
    evidence = []
    survivors = torch.ones(N, dtype=torch.bool)
    for kind, params, bpda in attacks:
        cls = ATTACKS.get(kind)
        attack = cls(cls.Params.model_validate(params))
        if cls.needs_surrogate:
            attack.bind_surrogate(Pipeline(model, Identity()))  # type: ignore[attr-defined]
        only = survivors if cascade else None
        out = run_attack(Pipeline(model, frontend(), bpda=bpda), attack, data, threat, ctx, 32, only=only)
        survivors &= out.robust
        config = {"attack": kind, "params": attack.params.model_dump(mode="json"), "bpda": bpda,
                  "norm": threat.norm, "eps": threat.eps}
        evidence.append(AttackEvidence(kind, config, out.clean, out.robust, out.x_adv,
                                       attacked=out.attacked if cascade else None, dead_gradients=out.dead))
    return CellEvidence(make_pipeline=lambda: Pipeline(model, frontend()), data=data, threat=threat,
                        attacks=evidence, ctx=ctx, n_checks=N, batch_size=32)


def check(name: str, evidence: CellEvidence) -> CheckResult:
    registry = ATTACK_CHECKS if name in ATTACK_CHECKS.names() else BASIC_CHECKS
    return registry.get(name)(evidence)


PGD: AttackSpec = ("pgd", {"steps": 20}, True)
NAIVE_PGD: AttackSpec = ("pgd", {"steps": 20}, False)


def test_all_checks_are_registered() -> None:
    attacking = {"iterative-beats-fgsm", "eps-sweep-to-chance", "steps-doubling-stable"}
    attacking.add("whitebox-beats-transfer")
    free = {"naive-gradient", "autoattack-checks", "finite-gradients", "pipeline-output", "inside-threat",
            "dead-gradients"}
    assert attacking <= set(ATTACK_CHECKS.names()) and free <= set(BASIC_CHECKS.names())


def test_sound_evaluation_passes_every_check() -> None:
    evidence = cell(Quantize, [PGD])
    for entry in [*ATTACK_CHECKS, *BASIC_CHECKS]:
        result = entry.obj(evidence)
        assert result.passed, f"{entry.name}: {result.detail}"


def test_fgsm_stronger_than_a_stuck_iterative_attack_fails() -> None:
    stuck = ("pgd", {"steps": 2, "step_sizes": [1e-4], "random_start": False}, True)
    result = check("iterative-beats-fgsm", cell(Identity, [stuck]))
    assert not result.passed and "FGSM is stronger" in result.detail


def test_fgsm_check_needs_an_iterative_attack() -> None:
    result = check("iterative-beats-fgsm", cell(Identity, [("fgsm", {}, True)]))
    assert result.passed and result.detail.startswith("not applicable")


def test_masked_gradients_fail_the_sweep_and_the_naive_check() -> None:
    """Rounding attacked without BPDA: zero gradients, so no radius helps, and the number is naive."""
    evidence = cell(Quantize, [NAIVE_PGD])
    sweep = check("eps-sweep-to-chance", evidence)
    assert not sweep.passed and "never reached chance" in sweep.detail and "bpda off" in sweep.detail
    naive = check("naive-gradient", evidence)
    assert not naive.passed and "naive evaluation" in naive.detail
    transfer = check("whitebox-beats-transfer", evidence)
    assert not transfer.passed, transfer.detail


def test_sweep_reaches_chance_on_an_undefended_model() -> None:
    result = check("eps-sweep-to-chance", cell(Identity, [PGD]))
    assert result.passed and "at eps=0.25" in result.detail


def test_unconverged_attack_fails_steps_doubling() -> None:
    short = ("pgd", {"steps": 2, "step_sizes": [0.04], "random_start": False}, True)
    result = check("steps-doubling-stable", cell(Identity, [short]))
    assert not result.passed and "2 -> 4 steps" in result.detail and "sign test" in result.detail


def test_steps_doubling_is_decided_by_evidence_not_by_a_few_examples() -> None:
    """3 examples fooled only with doubled steps and none only by the stored run: a fair coin does that
    one time in eight, so it is no evidence of an unconverged attack (the old 1-point rule failed it)."""
    short = ("pgd", {"steps": 2, "step_sizes": [0.02], "random_start": False}, True)
    result = check("steps-doubling-stable", cell(Identity, [short]))
    assert result.passed and "3 fooled only with doubled steps, 0 only" in result.detail, result.detail


def test_converged_attack_passes_steps_doubling() -> None:
    result = check("steps-doubling-stable", cell(Identity, [PGD]))
    assert result.passed and "20 -> 40 steps" in result.detail


def test_steps_doubling_skips_fgsm() -> None:
    result = check("steps-doubling-stable", cell(Identity, [("fgsm", {}, True)]))
    assert result.passed and result.detail.startswith("not applicable")


def test_naive_gradient_cases() -> None:
    assert check("naive-gradient", cell(Identity, [PGD])).detail.startswith("not applicable")
    assert check("naive-gradient", cell(Quantize, [PGD])).passed
    mixed = check("naive-gradient", cell(Quantize, [NAIVE_PGD, PGD]))
    assert mixed.passed and "worst case includes" in mixed.detail
    differentiable = check("naive-gradient", cell(Identity, [NAIVE_PGD]))
    assert differentiable.passed and "true ones" in differentiable.detail


@pytest.mark.parametrize("name", ["iterative-beats-fgsm", "eps-sweep-to-chance", "steps-doubling-stable",
                                  "whitebox-beats-transfer"])
def test_pgd_checks_do_not_apply_to_l1(name: str) -> None:
    result = check(name, replace(cell(Identity, [PGD]), threat=Threat("l1", 1.0)))
    assert result.passed and result.detail.startswith("not applicable")


def test_checks_use_only_the_check_prefix() -> None:
    small = replace(cell(Identity, [PGD]), n_checks=10, batch_size=4)
    for name in ["iterative-beats-fgsm", "steps-doubling-stable", "whitebox-beats-transfer"]:
        result = check(name, small)
        assert result.passed and "first 10" in result.detail, result.detail


def test_autoattack_warnings_fail_the_cell() -> None:
    check = BASIC_CHECKS.get("autoattack-checks")
    x = torch.zeros(2, 1, 4, 4)
    ok = torch.ones(2, dtype=torch.bool)

    def cell(report: dict[str, object]) -> CellEvidence:
        evidence = AttackEvidence("aa", {"attack": "autoattack"}, ok, ok, x, report)
        return CellEvidence(lambda: None, None, None, [evidence], None, 2, 2)  # type: ignore[arg-type,return-value]

    assert check(cell({})).detail.startswith("not applicable")
    assert check(cell({"params": {"version": "standard"}, "warnings": []})).passed
    flagged = check(cell({"params": {"version": "standard"}, "warnings": ["there are zero gradients"]}))
    assert not flagged.passed and "zero gradients" in flagged.detail
    rand = {"params": {"version": "rand"}, "warnings": ["it seems to be a randomized defense! Please use"]}
    assert check(cell(rand)).passed, "randomness is the expected finding of version rand"


class NoisyQuantize(Quantize):
    """Rounding, then noise so slight that a large vote judges every example reliably."""

    randomized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.rng(x.device), device=x.device)
        return (super().forward(x) + 1e-3 * noise).clamp(0, 1)


def test_randomized_pipeline_fails_when_a_confirmed_transfer_example_beats_the_white_box() -> None:
    result = check("whitebox-beats-transfer", cell(NoisyQuantize, [NAIVE_PGD]))
    assert not result.passed and "fresh draws" in result.detail and "gradient masking" in result.detail


def test_randomized_pipeline_with_a_sound_white_box_passes_the_transfer_check() -> None:
    result = check("whitebox-beats-transfer", cell(NoisyQuantize, [PGD]))
    assert result.passed, result.detail


def test_check_attacks_return_the_examples_they_fool_within_the_cells_radius() -> None:
    short = ("pgd", {"steps": 2, "step_sizes": [0.04], "random_start": False}, True)
    evidence = cell(Identity, [short])
    clean = evidence.attacks[0].clean
    for name in ["iterative-beats-fgsm", "eps-sweep-to-chance", "steps-doubling-stable",
                 "whitebox-beats-transfer"]:
        found = check(name, evidence).counterexamples
        assert found is not None and found.shape == (N,) and bool(found.any()), name
        assert not bool((found & ~clean).any()), name
    narrow = replace(evidence, threat=Threat("linf", 0.1))
    swept = check("eps-sweep-to-chance", narrow)
    assert swept.counterexamples is not None and not bool(swept.counterexamples.any()), \
        "every sweep radius is larger than 0.1, so none of its examples counts at the cell's radius"
    assert "strongest attack pgd" in swept.detail and "PGD-10 (margin loss" in swept.detail



TRANSFER: AttackSpec = ("transfer-pgd", {"steps": 20}, True)


def test_a_cascade_reruns_the_white_box_attack_on_what_the_transfer_attack_broke_first() -> None:
    """Naive PGD in a cascade never sees the examples the transfer attack broke; judged by its stored
    outcome the white-box attacks would miss nothing. Rerun alone on them, it misses what transfer finds."""
    result = check("whitebox-beats-transfer", cell(Quantize, [TRANSFER, NAIVE_PGD], cascade=True))
    assert not result.passed and "rerunning them alone" in result.detail, result.detail
    assert result.counterexamples is not None and bool(result.counterexamples.any())


def test_a_cascade_reruns_the_attack_whose_steps_are_doubled() -> None:
    result = check("steps-doubling-stable", cell(Identity, [TRANSFER, PGD], cascade=True))
    assert result.passed and "alone (rerun" in result.detail, result.detail
    sound = check("whitebox-beats-transfer", cell(Quantize, [TRANSFER, PGD], cascade=True))
    assert sound.passed, sound.detail
