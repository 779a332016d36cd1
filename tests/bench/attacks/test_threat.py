from __future__ import annotations

import pytest
import torch

from bench.api import Threat, max_radius
from bench.errors import ConfigError


@pytest.mark.parametrize("norm", ["linf", "l2", "l1"])
def test_projection_lands_in_ball_and_box(norm: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 8, 8, generator=g)
    far = x + 3 * torch.randn(16, 1, 8, 8, generator=g)
    threat = Threat(norm, 0.5)  # type: ignore[arg-type]
    proj = threat.project(x, far)
    assert not threat.violations(x, proj).any()
    assert float(proj.min()) >= 0 and float(proj.max()) <= 1


def test_projection_keeps_points_already_inside() -> None:
    x = torch.full((2, 1, 4, 4), 0.5)
    inside = x + 0.01
    assert torch.equal(Threat("linf", 0.1).project(x, inside), inside)


def test_violations_detect_ball_box_and_nan() -> None:
    x = torch.full((3, 1, 2, 2), 0.5)
    adv = x.clone()
    adv[0, 0, 0, 0] = 0.7  # outside an 0.1 linf ball
    adv[1, 0, 0, 0] = float("nan")
    assert Threat("linf", 0.1).violations(x, adv).tolist() == [True, True, False]
    box = torch.zeros(1, 1, 2, 2)
    assert Threat("linf", 0.5).violations(box, box - 0.01).tolist() == [True]


def test_max_radius() -> None:
    assert max_radius("l2", (1, 28, 28)) == pytest.approx(28.0)
    assert max_radius("linf", (3, 32, 32)) == 1.0


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), float("inf")])
def test_threat_refuses_a_radius_that_is_not_positive_and_finite(eps: float) -> None:
    with pytest.raises(ConfigError, match="positive finite radius"):
        Threat("linf", eps)


def test_threat_refuses_an_unknown_norm() -> None:
    with pytest.raises(ConfigError, match="unknown norm 'l3'"):
        Threat("l3", 0.1)  # type: ignore[arg-type]
