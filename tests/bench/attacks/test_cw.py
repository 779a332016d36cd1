"""Carlini & Wagner L2 on tiny models: success only within the bound, in the ball, and it attacks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.api import ATTACKS, Identity, JobContext, Pipeline, Threat
from bench.attacks.cw import CWL2, CWParams
from bench.errors import ConfigError


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()


def labelled(pipe: Pipeline, n: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, 4, 4, generator=g)
    return x, pipe.predict(x)


def test_lowers_accuracy_within_the_bound() -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe)
    threat = Threat("l2", 3.0)
    adv = CWL2(CWParams(steps=100)).perturb(pipe, x, y, threat, JobContext())
    assert not threat.violations(x, adv).any()
    assert float((pipe.predict(adv) == y).float().mean()) < 0.2


def test_success_counts_only_within_max_l2() -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe)
    wide = Threat("l2", 4.0)
    small = CWL2(CWParams(steps=100, max_l2=0.5)).perturb(pipe, x, y, wide, JobContext())
    big = CWL2(CWParams(steps=100, max_l2=4.0)).perturb(pipe, x, y, wide, JobContext())
    dist = wide.distance(x, small)
    moved = dist > 0
    # Every returned perturbation is a success within max_l2; the rest are the clean inputs, untouched.
    assert bool((dist[moved] <= 0.5 + 1e-6).all())
    assert bool((pipe.predict(small[moved]) != y[moved]).all())
    assert torch.equal(small[~moved], x[~moved])
    fooled_small = int((pipe.predict(small) != y).sum())
    fooled_big = int((pipe.predict(big) != y).sum())
    assert 0 < fooled_small < fooled_big


def test_threat_radius_below_max_l2_is_the_bound() -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe, 16)
    threat = Threat("l2", 0.5)
    adv = CWL2(CWParams(steps=50, max_l2=3.0)).perturb(pipe, x, y, threat, JobContext())
    assert not threat.violations(x, adv).any()


def test_one_gradient_per_step_and_pass_counts() -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe, 8)
    pipe.n_forward = pipe.n_backward = 0
    attack = CWL2(CWParams(steps=7, binary_search_steps=2))
    attack.perturb(pipe, x, y, Threat("l2", 3.0), JobContext())
    assert pipe.n_backward == 7 * 2 * 8
    assert pipe.n_forward == 7 * 2 * 8
    assert attack.cost_per_example(pipe) == 14


def test_binary_search_finds_no_larger_distortions_than_fixed_c() -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe, 16)
    threat = Threat("l2", 3.0)
    fixed = CWL2(CWParams(steps=60, c=100.0, binary_search_steps=1)).perturb(pipe, x, y, threat, JobContext())
    search = CWL2(CWParams(steps=60, c=100.0, binary_search_steps=3))
    searched = search.perturb(pipe, x, y, threat, JobContext())
    assert not threat.violations(x, searched).any()
    both = (pipe.predict(fixed) != y) & (pipe.predict(searched) != y)
    # The first round is the fixed-c run, so the search keeps that point or a closer one.
    assert bool((threat.distance(x, searched)[both] <= threat.distance(x, fixed)[both] + 1e-6).all())


def test_binary_search_lowers_c_after_overshooting_the_bound() -> None:
    # A large c with a large step fools the model only far outside a tight bound. Carlini & Wagner's search
    # reads that as "c too large" and lowers it, which brings successes inside the bound; reading it as a
    # failure (nothing within the bound) would raise c and never get there.
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe)
    wide = Threat("l2", 4.0)
    params = {"steps": 30, "c": 100.0, "lr": 0.5, "max_l2": 0.5}
    fixed = CWL2(CWParams(**params, binary_search_steps=1)).perturb(pipe, x, y, wide, JobContext())
    searched = CWL2(CWParams(**params, binary_search_steps=6)).perturb(pipe, x, y, wide, JobContext())
    assert bool((wide.distance(x, searched) <= 0.5 + 1e-6).all())
    assert int((pipe.predict(searched) != y).sum()) >= int((pipe.predict(fixed) != y).sum()) + 5


def test_preset_and_norms() -> None:
    cw = ATTACKS.get("cw-l2")()
    assert isinstance(cw, CWL2)
    p = cw.params
    assert (p.c, p.kappa, p.lr, p.steps, p.binary_search_steps, p.max_l2) == (1.0, 0.0, 0.1, 100, 3, 3.0)
    with pytest.raises(ConfigError, match="works in l2"):
        cw.check(Threat("linf", 0.3))
    with pytest.raises(ValueError):
        CWParams(steps=0)


def test_fewer_steps_than_the_protocol_are_stated() -> None:
    assert CWL2().budget_note() is None
    assert CWL2(CWParams(steps=50)).budget_note() == "3 of 3 rounds of 50 of 100 Adam steps"
    assert CWL2(CWParams(binary_search_steps=1)).budget_note() == "1 of 3 rounds of 100 of 100 Adam steps"


@pytest.mark.parametrize("bound", [0.0, -3.0, float("nan")])
def test_a_bound_that_is_not_positive_is_refused_by_name(bound: float) -> None:
    with pytest.raises(ValueError, match="max_l2 is the L2 distance .* give a positive distance"):
        CWParams(max_l2=bound)
