"""Square Attack via pyautoattack: black-box (no backward pass at all), in the ball, seeded, effective."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.api import ATTACKS, Identity, JobContext, Pipeline, Threat
from bench.attacks.square import Square, SquareParams
from bench.errors import ConfigError


def linear_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()


def labelled(pipe: Pipeline, n: int = 16, side: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, side, side, generator=g)
    return x, pipe.predict(x)


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.5), ("l2", 4.0)])
def test_black_box_in_the_ball_and_effective(norm: str, eps: float) -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe)
    pipe.n_forward = pipe.n_backward = 0
    threat = Threat(norm, eps)  # type: ignore[arg-type]
    adv = Square(SquareParams(n_queries=1000)).perturb(pipe, x, y, threat, JobContext())
    assert pipe.n_backward == 0, "Square must never ask the pipeline for a gradient"
    assert pipe.n_forward > 0
    assert not threat.violations(x, adv).any()
    assert float((pipe.predict(adv) == y).float().mean()) < 0.3


def test_seeded_and_reproducible() -> None:
    pipe = Pipeline(linear_model(), Identity())
    x, y = labelled(pipe, 8)
    threat = Threat("linf", 0.05)
    a = Square(SquareParams(n_queries=30, seed=4)).perturb(pipe, x, y, threat, JobContext())
    b = Square(SquareParams(n_queries=30, seed=4)).perturb(pipe, x, y, threat, JobContext())
    assert torch.equal(a, b)


def test_small_images_in_l2_are_refused_clearly() -> None:
    pipe = Pipeline(nn.Sequential(nn.Flatten(), nn.Linear(16, 10)).eval(), Identity())
    x, y = labelled(pipe, 2, side=4)
    with pytest.raises(ConfigError, match="at least 5x5"):
        Square().perturb(pipe, x, y, Threat("l2", 1.0), JobContext())


def test_preset() -> None:
    sq = ATTACKS.get("square")()
    assert isinstance(sq, Square) and not Square.uses_gradients
    assert (sq.params.n_queries, sq.params.p_init) == (5000, 0.8)
    assert "Andriushchenko" in sq.describe()["source"]
    with pytest.raises(ConfigError, match="works in linf, l2"):
        sq.check(Threat("l1", 5.0))


def test_fewer_queries_than_autoattacks_are_stated() -> None:
    assert Square().budget_note() is None
    assert Square(SquareParams(n_queries=1000)).budget_note() == "1000 of 5000 queries"
    assert Square(SquareParams(n_queries=10000)).budget_note() is None
