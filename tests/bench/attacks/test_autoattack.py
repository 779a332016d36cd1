"""AutoAttack through pyautoattack on tiny models: seeding, the ball, pass counting, captured checks."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from bench.api import ATTACKS, FrontEnd, Identity, JobContext, NonDifferentiable, Pipeline, Threat
from bench.attacks.autoattack import (
    AutoAttack,
    AutoAttackParams,
    AutoAttackRand,
    AutoAttackRandParams,
    VoteJudged,
)
from bench.errors import ConfigError


def linear_model(classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, classes)).eval()


def labelled(pipe: Pipeline, n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs with label = the pipeline's own prediction, so clean accuracy is 100%."""
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 8, 8, generator=g)
    return x, pipe.predict(x)


BIG = {"linf": 0.5, "l2": 4.0, "l1": 24.0}


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_large_eps_breaks_a_linear_model_inside_the_ball(norm: str) -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe)
    threat = Threat(norm, BIG[norm])  # type: ignore[arg-type]
    attack = AutoAttack(AutoAttackParams(seed=3, n_iter=20, n_queries=20))
    adv = attack.perturb(pipe, x, y, threat, JobContext())
    assert adv.shape == x.shape
    assert not threat.violations(x, adv).any()
    assert float((pipe.predict(adv) == y).float().mean()) < 0.2


def test_explicit_seed_is_reproducible_and_recorded() -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe)
    threat = Threat("linf", 0.05)
    params = AutoAttackParams(seed=7, n_iter=3, n_queries=5)
    a = AutoAttack(params).perturb(pipe, x, y, threat, JobContext())
    b = AutoAttack(params).perturb(pipe, x, y, threat, JobContext())
    assert torch.equal(a, b)
    assert AutoAttack(params).describe()["params"]["seed"] == 7


def test_forward_and_backward_passes_are_counted_through_the_pipeline() -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe, 8)
    pipe.n_forward = pipe.n_backward = 0
    attack = AutoAttack(AutoAttackParams(n_iter=10))
    attack.perturb(pipe, x, y, Threat("linf", 0.5), JobContext())
    # APGD-CE alone takes n_iter gradients of every example before anything else can stop it.
    assert pipe.n_backward >= 10 * 8
    assert pipe.n_forward >= pipe.n_backward
    assert attack.cost_per_example(pipe) == 10


def test_all_four_attacks_run_quietly_at_a_small_radius(capsys: pytest.CaptureFixture[str]) -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe, 6)
    attack = AutoAttack(AutoAttackParams(n_iter=3, n_queries=5))
    threat = Threat("linf", 0.002)
    adv = attack.perturb(pipe, x, y, threat, JobContext())
    assert not threat.violations(x, adv).any()
    log = "\n".join(attack.last_log)
    for name in ("APGD-CE", "APGD-T", "FAB-T", "SQUARE"):
        assert f"after {name}" in log
    assert capsys.readouterr().out == ""
    assert attack.last_warnings == []


def test_global_rng_and_logger_are_left_as_found() -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe, 4)
    logger = logging.getLogger("auto-attack")
    before = (logger.level, logger.propagate, list(logger.handlers))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    AutoAttack(AutoAttackParams(n_iter=2)).perturb(pipe, x, y, Threat("linf", 0.5), JobContext())
    assert torch.equal(torch.rand(3), expected)
    assert (logger.level, logger.propagate, list(logger.handlers)) == before


class Noisy(FrontEnd):
    randomized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        noise = torch.randn(x.shape, generator=self.rng(x.device), device=x.device)
        return (x + 0.05 * noise).clamp(0, 1)


def noisy_pipeline() -> Pipeline:
    fe = Noisy()
    fe.reseed(0)
    return Pipeline(linear_model(), fe, eot_samples=4, vote_draws=5)


def test_rand_version_runs_on_a_randomized_front_end_with_its_own_eot() -> None:
    pipe = noisy_pipeline()
    x, y = labelled(pipe, 6)
    pipe.n_forward = pipe.n_backward = 0
    attack = ATTACKS.get("autoattack-rand")(AutoAttackRandParams(n_iter=3))
    assert isinstance(attack, AutoAttackRand)
    threat = Threat("linf", 0.5)
    adv = attack.perturb(pipe, x, y, threat, JobContext())
    assert not threat.violations(x, adv).any()
    # pyautoattack's eot_iter=20 sequential draws per step, not the pipeline's eot_samples=4
    assert pipe.n_backward >= 3 * 20 * 6
    assert attack.cost_per_example(pipe) == 3 * 20
    assert float((pipe.predict(adv) == y).float().mean()) < 0.5
    assert not any("randomized" in w for w in attack.last_warnings)


def test_standard_version_flags_a_randomized_pipeline() -> None:
    pipe = noisy_pipeline()
    x, y = labelled(pipe, 6)
    attack = AutoAttack(AutoAttackParams(n_iter=2))
    attack.perturb(pipe, x, y, Threat("linf", 0.5), JobContext())
    assert any("randomized defense" in w for w in attack.last_warnings)
    assert any("randomized defense" in w for w in attack.describe()["warnings"])


def test_softmax_outputs_are_flagged() -> None:
    pipe = Pipeline(nn.Sequential(linear_model(), nn.Softmax(dim=1)), Identity())
    x, y = labelled(pipe, 4)
    attack = AutoAttack(AutoAttackParams(n_iter=2, n_queries=2))
    attack.perturb(pipe, x, y, Threat("linf", 0.5), JobContext())
    assert any("probability distribution" in w for w in attack.all_warnings)


class Quantize(FrontEnd):
    def __init__(self) -> None:
        super().__init__()
        self.q = NonDifferentiable(lambda x: torch.round(x * 3) / 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x)


def test_zero_gradients_without_bpda_are_flagged() -> None:
    pipe = Pipeline(linear_model(), Quantize(), bpda=False)
    x, y = labelled(pipe, 4)
    attack = AutoAttack(AutoAttackParams(n_iter=2, n_queries=2))
    attack.perturb(pipe, x, y, Threat("linf", 0.01), JobContext())
    assert any("zero gradient" in w for w in attack.last_warnings)


def test_target_classes_are_capped_and_too_few_classes_refused() -> None:
    pipe = Pipeline(linear_model(classes=5), Identity())
    x, y = labelled(pipe, 4)
    attack = AutoAttack(AutoAttackParams(n_iter=2, n_queries=2))
    adv = attack.perturb(pipe, x, y, Threat("linf", 0.01), JobContext())
    assert adv.shape == x.shape
    assert any("capped from 9 to 4" in n for n in attack.notes)
    three = Pipeline(linear_model(classes=3), Identity())
    with pytest.raises(ConfigError, match="at least 4 classes"):
        AutoAttack().perturb(three, *labelled(three, 2), Threat("linf", 0.1), JobContext())


def test_registry_presets() -> None:
    assert ATTACKS.get("autoattack")().params.version == "standard"  # type: ignore[attr-defined]
    assert ATTACKS.get("autoattack-rand")().params.version == "rand"  # type: ignore[attr-defined]
    assert "Croce" in AutoAttack.source
    with pytest.raises(ValueError):
        AutoAttackParams(surprise=1)  # type: ignore[call-arg]


class LuckyDraws(FrontEnd):
    """Randomized: about one draw in three blanks the image (the all-zero image's class is usually wrong),
    the rest pass it through. Any single draw may be 'fooled', the majority almost never is."""

    randomized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        blank = torch.rand(x.shape[0], generator=self.rng(x.device), device=x.device) < 0.3
        return torch.where(blank.view(-1, 1, 1, 1), torch.zeros_like(x), x)


def test_vote_judged_model_gives_single_draws_for_gradients_and_the_vote_for_judging() -> None:
    fe = LuckyDraws()
    fe.reseed(0)
    pipe = Pipeline(linear_model(), fe, eot_samples=1, vote_draws=21)
    judged = VoteJudged(pipe)
    x, y = labelled(pipe, 16)
    with torch.no_grad():
        assert torch.equal(judged(x).argmax(1), pipe.votes(x).argmax(1))
    x.requires_grad_(True)
    single = judged(x)
    assert single.requires_grad and single.shape == (16, 10)


def test_rand_version_on_a_randomized_pipeline_judges_success_by_the_vote(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyautoattack

    seen: list[nn.Module] = []
    real = pyautoattack.AutoAttack

    def recording(model: nn.Module, *args: object, **kwargs: object) -> object:
        seen.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(pyautoattack, "AutoAttack", recording)
    fe = LuckyDraws()
    fe.reseed(0)
    pipe = Pipeline(linear_model(), fe, eot_samples=1, vote_draws=21)
    x, y = labelled(pipe, 6)
    AutoAttackRand(AutoAttackRandParams(n_iter=2, eot_iter=2)).perturb(pipe, x, y, Threat("linf", 0.1),
                                                                       JobContext())
    AutoAttack(AutoAttackParams(n_iter=2)).perturb(
        Pipeline(linear_model(), Identity()), x, y, Threat("linf", 0.1), JobContext()
    )
    assert isinstance(seen[0], VoteJudged) and seen[0].pipeline is pipe
    assert isinstance(seen[1], Pipeline), "deterministic pipelines are passed as they are"


def test_budget_below_the_published_one_is_stated() -> None:
    assert AutoAttack().budget_note() is None
    assert AutoAttackRand().budget_note() is None
    assert AutoAttack(AutoAttackParams(n_iter=10)).budget_note() == "10 of 100 APGD/FAB iterations"
    both = AutoAttack(AutoAttackParams(n_iter=10, n_queries=20)).budget_note()
    assert both == "10 of 100 APGD/FAB iterations, 20 of 5000 Square queries"
    # rand runs no Square; fewer EOT draws than its 20 is a cut, more is not.
    assert AutoAttackRand(AutoAttackRandParams(n_queries=20)).budget_note() is None
    assert AutoAttackRand(AutoAttackRandParams(eot_iter=5)).budget_note() == "5 of 20 EOT draws per gradient"
    assert AutoAttackRand(AutoAttackRandParams(eot_iter=40)).budget_note() is None


def test_a_subset_of_sub_attacks_runs_only_those_and_says_so() -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe, 6)
    params = AutoAttackParams(n_iter=3, attacks=["apgd-t", "apgd-ce"])
    assert params.attacks == ["apgd-ce", "apgd-t"]  # pyautoattack's order: one key however listed
    attack = AutoAttack(params)
    attack.perturb(pipe, x, y, Threat("linf", 0.002), JobContext())
    log = "\n".join(attack.last_log)
    assert "after APGD-CE" in log and "after APGD-T" in log
    assert "FAB-T" not in log and "SQUARE" not in log
    note = "3 of 100 APGD/FAB iterations, fab-t, square not run (of the standard version)"
    assert attack.budget_note() == note
    # Unset, the parameter is absent from the dump, so keys of jobs planned before it existed stay.
    assert "attacks" not in AutoAttackParams().model_dump(mode="json")
    with pytest.raises(ValueError, match="the rand version runs apgd-ce, apgd-dlr, not square"):
        AutoAttackRandParams(attacks=["square"])
