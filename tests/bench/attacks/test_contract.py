"""Every registered attack, in every norm it declares, holds the contract the harness relies on.

Parametrized over the registry, so an attack is held to it the day it is registered: its candidates lie in
the threat's ball and in [0,1], it leaves its inputs alone, and the same seed gives the same candidates (an
attack may draw from the global RNG, which ``JobContext.seed_everything`` seeds, as the runner does).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from bench.api import (
    ATTACKS,
    NORMS,
    Attack,
    AttackParams,
    GaussianSmoothing,
    Identity,
    JobContext,
    Norm,
    Pipeline,
    Threat,
)
from bench.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")

#: The smallest budget at which every attack proposes something other than its clean inputs (CW's Adam at
#: lr 0.01 needs about 20 steps, Square about 100 queries), by the knob names attacks use. Only the knobs an
#: attack's parameters have are set, and a value the attack refuses (FGSM's single step) falls back to its
#: default. An attack with a budget knob of another name runs at its default budget: add the knob here.
BUDGET: dict[str, int] = {
    "steps": 20,
    "restarts": 2,
    "binary_search_steps": 2,
    "n_iter": 2,
    "n_queries": 100,
    "n_restarts": 1,
    "eot_iter": 2,
}
#: 1x8x8: pyautoattack's L2 Square (in ``square`` and standard AutoAttack) needs images of at least 5x5.
SHAPE = (1, 8, 8)
N, CLASSES = 4, 10
EPS: dict[Norm, float] = {"linf": 0.3, "l2": 2.0, "l1": 12.0}
CASES = [(name, norm) for name in ATTACKS.names() for norm in ATTACKS.get(name).norms]
REFUSED = [(name, norm) for name in ATTACKS.names() for norm in NORMS if norm not in ATTACKS.get(name).norms]


def cheap_params(cls: type[Attack]) -> AttackParams:
    fields = cls.Params.model_fields
    budget: dict[str, Any] = {k: v for k, v in BUDGET.items() if k in fields}
    try:
        return cls.Params.model_validate(budget)
    except ValidationError as e:
        refused = {err["loc"][0] for err in e.errors() if err["loc"]}
        return cls.Params.model_validate({k: v for k, v in budget.items() if k not in refused})


def classifier() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(SHAPE[0], 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, CLASSES)
        ).eval()


class Smoothed(Identity):
    """The identity declaring smoothing: the pipeline an attack on a smoothed classifier needs."""

    smoothing = GaussianSmoothing(0.25)


def setup(name: str) -> tuple[Attack, Pipeline, torch.Tensor, torch.Tensor]:
    """A fresh attack with a tiny budget on a tiny pipeline, and inputs it classifies as labelled."""
    cls = ATTACKS.get(name)
    attack = cls(cheap_params(cls))
    clf = classifier()
    pipe = Pipeline(clf, Smoothed() if cls.needs_smoothing else Identity())
    if cls.needs_surrogate:
        # The runner's default surrogate (the same classifier undefended, a pipeline of its own), bound
        # through the method that declaring needs_surrogate promises.
        attack.bind_surrogate(Pipeline(clf, Identity()))  # type: ignore[attr-defined]
    x = torch.rand(N, *SHAPE, generator=torch.Generator().manual_seed(1))
    return attack, pipe, x, pipe.predict(x)


def run(name: str, threat: Threat, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, labels, candidates) of one seeded run; inputs and labels are checked untouched."""
    attack, pipe, x, y = setup(name)
    x_before, y_before = x.clone(), y.clone()
    ctx = JobContext(seed=seed)
    ctx.seed_everything()
    adv = attack.perturb(pipe, x, y, threat, ctx)
    assert torch.equal(x, x_before), f"{name} changed its input images"
    assert torch.equal(y, y_before), f"{name} changed its labels"
    return x, y, adv


@pytest.mark.parametrize(("name", "norm"), CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_candidates_lie_in_the_ball_and_the_box(name: str, norm: Norm) -> None:
    threat = Threat(norm, EPS[norm])
    x, _, adv = run(name, threat, seed=5)
    assert adv.shape == x.shape and adv.dtype == x.dtype
    assert not threat.violations(x, adv).any(), f"{name} proposed points outside the {norm} ball or [0,1]"
    assert bool((threat.distance(x, adv) > 0).any()), (
        f"{name} proposed only its clean inputs, which tests nothing: give it a budget in BUDGET"
    )


@pytest.mark.parametrize(("name", "norm"), CASES, ids=[f"{n}-{m}" for n, m in CASES])
def test_same_seed_same_candidates(name: str, norm: Norm) -> None:
    threat = Threat(norm, EPS[norm])
    _, _, first = run(name, threat, seed=5)
    _, _, again = run(name, threat, seed=5)
    assert torch.equal(first, again), f"{name} gave different candidates for the same seed"


@pytest.mark.parametrize(("name", "norm"), REFUSED, ids=[f"{n}-{m}" for n, m in REFUSED])
def test_a_norm_the_attack_does_not_declare_is_refused(name: str, norm: Norm) -> None:
    attack, pipe, x, y = setup(name)
    with pytest.raises(ConfigError):
        attack.perturb(pipe, x, y, Threat(norm, EPS[norm]), JobContext())
