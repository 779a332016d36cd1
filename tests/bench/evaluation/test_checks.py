"""The checks every cell runs for free, on outcomes built the way attack jobs build them."""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from bench.api import (
    ATTACKS,
    BASIC_CHECKS,
    AttackEvidence,
    BpdaMode,
    CellEvidence,
    DatasetInfo,
    FrontEnd,
    Identity,
    ImageData,
    JobContext,
    Pipeline,
    Threat,
)
from bench.evaluation.run_attack import run_attack
from tests.bench.attacks.test_pipeline import NaNGradient

INFO = DatasetInfo("tiny", 3, (1, 4, 4), (0.5,), (0.5,), 32, 32)


def evidence(frontend: FrontEnd) -> CellEvidence:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()
    g = torch.Generator().manual_seed(1)
    images = (torch.rand(32, 1, 4, 4, generator=g) * 255).round().to(torch.uint8)
    with torch.no_grad():
        labels = model(images.float() / 255).argmax(1)
    data = ImageData(images, labels, "tiny", INFO)
    threat = Threat("linf", 0.3)
    attack = ATTACKS.get("pgd")(ATTACKS.get("pgd").Params.model_validate({"steps": 5, "random_start": False}))
    out = run_attack(Pipeline(model, frontend), attack, data, threat, JobContext(), 16)
    a = AttackEvidence("pgd", {"attack": "pgd"}, out.clean, out.robust, out.x_adv, {}, out.n_backward,
                       out.nonfinite_grads, out.zero_grads)
    return CellEvidence(lambda: Pipeline(model, frontend), data, threat, [a], JobContext(), 32, 16)


def test_nan_gradients_make_the_cell_unreliable() -> None:
    blinded = evidence(NaNGradient())
    assert int(blinded.worst_case.sum()) == len(blinded.data), "PGD is blind: everything looks robust"
    result = BASIC_CHECKS.get("finite-gradients")(blinded)
    assert not result.passed and "non-finite input gradients" in result.detail


def test_finite_gradients_pass_and_report_zero_ones() -> None:
    result = BASIC_CHECKS.get("finite-gradients")(evidence(Identity()))
    assert result.passed and "exactly zero: pgd 0/" in result.detail


class Undeclared(FrontEnd):
    """Random, without saying so."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 0.1 * torch.randn_like(x)).clamp(0, 1)


def test_undeclared_randomness_makes_the_cell_unreliable() -> None:
    result = BASIC_CHECKS.get("pipeline-output")(evidence(Undeclared()))
    assert not result.passed and "does not declare randomized" in result.detail


def test_probabilities_instead_of_logits_make_the_cell_unreliable() -> None:
    cell = evidence(Identity())
    softmaxed = cell.make_pipeline()
    softmaxed.classifier = nn.Sequential(softmaxed.classifier, nn.Softmax(dim=1))
    result = BASIC_CHECKS.get("pipeline-output")(replace(cell, make_pipeline=lambda: softmaxed))
    assert not result.passed and "probabilities" in result.detail
    assert BASIC_CHECKS.get("pipeline-output")(cell).passed


class CutGraph(FrontEnd):
    """A near-identity whose output has no graph back to the input: every gradient through it is zero."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.detach() * 255).round() / 255


def probed(frontend: FrontEnd, runs: list[tuple[str, dict[str, object], BpdaMode]]) -> CellEvidence:
    """A cell whose attacks (label = kind plus BPDA mode) carry the probe's dead-gradient evidence."""
    base = evidence(frontend)
    model = base.make_pipeline().classifier
    found = []
    for kind, params, bpda in runs:
        cls = ATTACKS.get(kind)
        attack = cls(cls.Params.model_validate(params))
        pipe = Pipeline(model, frontend, bpda=bpda)
        out = run_attack(pipe, attack, base.data, base.threat, JobContext(), 16)
        found.append(AttackEvidence(f"{kind}-{bpda}", {"attack": kind, "bpda": bpda}, out.clean, out.robust,
                                    out.x_adv, {}, out.n_backward, out.nonfinite_grads, out.zero_grads,
                                    out.attacked, out.dead))
    return replace(base, attacks=found)


def test_dead_gradients_fail_the_cell_and_name_the_attack() -> None:
    result = BASIC_CHECKS.get("dead-gradients")(probed(CutGraph(), [("pgd", {"steps": 5}, True)]))
    assert not result.passed and "pgd-True" in result.detail and "gradient masking" in result.detail
    assert result.unreliable_attacks == ("pgd-True",)


def test_an_attack_with_live_gradients_saves_the_cell_but_the_masked_attack_stays_unreliable() -> None:
    cell = probed(CutGraph(), [("pgd", {"steps": 5}, True), ("pgd", {"steps": 5}, "frontend")])
    result = BASIC_CHECKS.get("dead-gradients")(cell)
    assert result.passed and result.unreliable_attacks == ("pgd-True",), result.detail


def test_live_gradients_pass_and_attacks_without_gradients_are_not_probed() -> None:
    weak = probed(Identity(), [("pgd", {"steps": 1, "step_sizes": [1e-3]}, True)])
    result = BASIC_CHECKS.get("dead-gradients")(weak)
    assert result.passed and not result.unreliable_attacks and "pgd-True 0/" in result.detail
    square = probed(Identity(), [("square", {"n_queries": 5}, True)])
    assert BASIC_CHECKS.get("dead-gradients")(square).detail.startswith("not applicable")
