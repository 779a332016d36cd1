"""PGD on the smoothed classifier, on a threshold whose smoothed probabilities have a closed form.

The base classifier says class 1 exactly where the first pixel exceeds 1/2. Under pixel noise of σ its
smoothed classifier g says 1 with probability Φ((x₀ - 1/2)/σ), so g's answer and the radius within which it
cannot change are known, and whether the attack can succeed is decided before it runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from scipy.stats import norm
from torch import nn

from bench.api import (
    ATTACKS,
    ConfigError,
    GaussianSmoothing,
    Identity,
    ImageData,
    JobContext,
    Norm,
    Pipeline,
    Threat,
)
from bench.api.data import DatasetInfo
from bench.attacks.smoothed_pgd import (
    NorouzzadehSmoothedParams,
    PGDIRSWeak,
    PGDNorouzzadehSmoothed,
    SmoothedPGD,
    SmoothedPGDParams,
    smoothed_loss_and_grad,
)
from bench.certify import GaussianNoise
from bench.evaluation.run_attack import run_attack
from tests.bench.test_config import edit, problems

pytestmark = pytest.mark.usefixtures("one_thread")

SIGMA = 0.25
SHAPE = (1, 2, 2)
INFO = DatasetInfo("toy", 2, SHAPE, (0.0,), (1.0,), 8, 8)


class Threshold(nn.Module):
    """Logits (0, s·(x₀ - 1/2)): class 1 where the first pixel exceeds 1/2, steep enough to be a step."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 200.0 * (x.flatten(1)[:, 0] - 0.5)
        return torch.stack([torch.zeros_like(score), score], dim=1)


class Smoothed(Identity):
    smoothing = GaussianSmoothing(SIGMA)


def images(first_pixel: list[float]) -> torch.Tensor:
    x = torch.full((len(first_pixel), *SHAPE), 0.5)
    x[:, 0, 0, 0] = torch.tensor(first_pixel)
    return x


def toy_data(first_pixel: list[float]) -> ImageData:
    x = images(first_pixel)
    return ImageData((x * 255).round().to(torch.uint8), torch.zeros(len(first_pixel), dtype=torch.long),
                     "toy", INFO)


def attack(**params: Any) -> SmoothedPGD:
    return SmoothedPGD(SmoothedPGDParams.model_validate({"steps": 20, "m": 16, **params}))


@pytest.mark.parametrize("norm_name", ["l2", "linf"])
def test_the_attack_breaks_g_where_the_ball_reaches_the_other_side(norm_name: Norm) -> None:
    # x₀ = 0.3: g says 0 (P(1) = Φ(-0.8) ≈ 0.21). Within 0.5 the point 0.8 has P(1) = Φ(1.2) ≈ 0.89, so g
    # says 1 there and PREDICT (n = 1000) sees it: the attack has to find it.
    data = toy_data([0.3, 0.3, 0.3])
    pipe = Pipeline(Threshold(), Smoothed())
    out = run_attack(pipe, attack(), data, Threat(norm_name, 0.5), JobContext(), 8, attack_seed=1)
    assert out.clean.all() and not out.robust.any()
    assert bool((out.x_adv[:, 0, 0, 0] > 0.6).all())


def test_the_attack_fails_where_g_is_constant_on_the_ball() -> None:
    # Within l2 0.05 of x₀ ≈ 0.3 the first pixel stays below 0.36, where P(1) ≤ Φ(-0.56) ≈ 0.29: g says 0 on
    # the whole ball, so no attack can succeed, and the harness must not claim one did.
    data = toy_data([0.3, 0.3, 0.3])
    pipe = Pipeline(Threshold(), Smoothed())
    assert norm.cdf((0.36 - 0.5) / SIGMA) < 0.3
    out = run_attack(pipe, attack(), data, Threat("l2", 0.05), JobContext(), 8, attack_seed=1)
    assert out.clean.all() and out.robust.all()


def test_each_draw_costs_one_forward_and_one_backward_pass_per_example_and_restart() -> None:
    x, y = images([0.1, 0.2, 0.3]), torch.zeros(3, dtype=torch.long)
    for max_batch in (2048, 5):  # all draws in one pass, or in groups of one draw (three images)
        pipe = Pipeline(Threshold(), Smoothed())
        atk = attack(steps=4, m=5, restarts=2, max_batch=max_batch)
        atk.perturb(pipe, x, y, Threat("l2", 0.5), JobContext())
        assert pipe.n_forward == pipe.n_backward == 4 * 5 * 2 * 3
        assert atk.cost_per_example(pipe) == 4 * 5 * 2


class Replayed(GaussianNoise):
    """Hands out a fixed sequence of draws, so two groupings of the same draws can be compared."""

    def __init__(self, draws: torch.Tensor) -> None:
        super().__init__(GaussianSmoothing(SIGMA), SHAPE[0])
        self.draws, self.used = draws, 0

    def sample(self, x: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        out = self.draws[self.used : self.used + count] + x
        self.used += count
        return out


def test_the_loss_is_the_log_of_the_mean_softmax_and_its_gradient_is_exact_in_any_grouping() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
    x, y, m = torch.rand(2, *SHAPE), torch.tensor([0, 2]), 6
    draws = torch.randn(m * 2, *SHAPE) * SIGMA
    # Direct: -log((1/m)·Σ_j softmax(f(x + δ_j))_y), the draws laid out draw-major as the attack lays them.
    xr = x.clone().requires_grad_(True)
    probs = torch.softmax(net(xr.repeat(m, 1, 1, 1) + draws), 1).view(m, 2, 3).mean(0)
    direct = -probs.gather(1, y.unsqueeze(1)).squeeze(1).log()
    (expected,) = torch.autograd.grad(direct.sum(), xr)
    gen = torch.Generator()
    for max_batch in (100, 4, 2):  # one group, groups of two draws, one draw at a time
        pipe = Pipeline(net, Smoothed())
        loss, grad = smoothed_loss_and_grad(pipe, Replayed(draws), x, y, m, max_batch, gen)
        assert torch.allclose(loss, direct.detach(), atol=1e-5)
        assert torch.allclose(grad, expected, atol=1e-5)


def test_the_gradient_survives_a_base_classifier_confidently_wrong_on_every_draw() -> None:
    # softmax_y underflows to 0 in float32 on every draw; the mean's log and gradient must stay finite.
    linear = nn.Linear(4, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[-500.0, 0, 0, 0], [500.0, 0, 0, 0]]))
        linear.bias.zero_()
    net = nn.Sequential(nn.Flatten(), linear).eval()
    noise = GaussianNoise(GaussianSmoothing(0.01), 1)
    loss, grad = smoothed_loss_and_grad(
        Pipeline(net, Smoothed()), noise, images([0.9]), torch.tensor([0]), 4, 100, torch.Generator()
    )
    # -log p₀ grows with the first pixel, and so must the gradient say.
    assert torch.isfinite(loss).all() and torch.isfinite(grad).all() and float(grad[0, 0, 0, 0]) > 0


def test_seeds_make_it_deterministic_and_the_seed_parameter_picks_other_draws() -> None:
    x, y = images([0.2, 0.3]), torch.zeros(2, dtype=torch.long)

    def run(seed: int, ctx_seed: int = 0) -> torch.Tensor:
        pipe = Pipeline(Threshold(), Smoothed())
        return attack(steps=3, m=4, restarts=2, seed=seed).perturb(
            pipe, x, y, Threat("l2", 0.5), JobContext(seed=ctx_seed)
        )

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    assert not torch.equal(run(0), run(0, ctx_seed=1))


def test_a_pipeline_without_declared_smoothing_is_refused() -> None:
    pipe = Pipeline(Threshold(), Identity())
    with pytest.raises(ConfigError, match="declares no smoothing"):
        attack().perturb(pipe, images([0.3]), torch.zeros(1, dtype=torch.long), Threat("l2", 0.5),
                         JobContext())


def test_steps_that_cannot_reach_the_edge_of_the_ball_are_refused() -> None:
    short = attack(steps=20, step_size=0.01)
    with pytest.raises(ConfigError, match="cannot reach the edge of the ball"):
        short.check(Threat("l2", 0.5))
    short.check(Threat("l2", 0.2))


def test_the_irs_preset_is_the_one_weak_pgd_let_through_and_it_says_so() -> None:
    weak = ATTACKS.get("pgd-irs-weak")()
    assert isinstance(weak, PGDIRSWeak)
    weak.check(Threat("l2", 0.5))
    note = weak.budget_note()
    assert note is not None and note.startswith("weak: steps reach 0.2 of eps 0.5")
    assert weak.describe()["weak"] == note
    assert weak.params.steps * weak.params.alpha(0.5) == pytest.approx(0.2)
    # The exemption covers the published attack only: its budget cannot be changed under its name.
    for changed in ({"steps": 10}, {"step_size": 0.001}, {"rel_step_size": 0.1}, {"restarts": 2}):
        with pytest.raises(ValidationError):
            PGDIRSWeak.Params.model_validate(changed)
    with pytest.raises(ConfigError):
        weak.check(Threat("linf", 0.5))


L2 = {"l2": {"norm": "l2", "epsilons": [0.5]}}


@pytest.mark.parametrize(
    "kind, params",
    [("pgd", {"steps": 20, "step_sizes": [0.01]}), ("smoothed-pgd", {"steps": 20, "step_size": 0.01})],
)
def test_validation_refuses_the_weak_budget_as_an_ordinary_pgd(
    tmp_path: Path, kind: str, params: dict[str, Any]
) -> None:
    attacks = {"irs": {"kind": "pgd-irs-weak"}, "short": {"kind": kind, "params": params}}
    msg = problems(edit(threats=L2, attacks=attacks), tmp_path)
    assert "attacks.short" in msg and "cannot reach the edge of the ball" in msg
    assert "attacks.irs" not in msg


def test_the_norouzzadeh_preset_states_its_protocol_and_our_eot() -> None:
    preset = PGDNorouzzadehSmoothed()
    assert ATTACKS.get("pgd-norouzzadeh-smoothed") is PGDNorouzzadehSmoothed
    assert (preset.params.steps, preset.params.restarts) == (50, 2)
    assert preset.budget_note() is None
    assert "50 iterations x 2 restarts" in preset.source and "our addition" in preset.source
    assert "our addition" in str(preset.describe()["source"])
    reduced = PGDNorouzzadehSmoothed(NorouzzadehSmoothedParams(steps=10))
    assert reduced.budget_note() == "10 steps x 2 restarts of the protocol's 50 x 2"


def test_the_default_step_travels_past_the_edge() -> None:
    p = SmoothedPGDParams()
    assert math.isclose(p.reach(0.5), 2.5 * 0.5)
