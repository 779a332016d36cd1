"""The dead-gradient probe: the margin's first-order gain across the ball, and when it counts as dead."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.api import Identity, Norm, Pipeline, Threat
from bench.evaluation.gradient_probe import DEAD_GAIN, dead, margin_gain


@pytest.mark.parametrize(("norm", "p"), [("linf", 1.0), ("l2", 2.0), ("l1", float("inf"))])
def test_gain_of_a_linear_model_is_eps_times_the_dual_norm_of_margin_weights(norm: Norm, p: float) -> None:
    torch.manual_seed(0)
    linear = nn.Linear(16, 3)
    pipe = Pipeline(nn.Sequential(nn.Flatten(), linear), Identity())
    x = torch.rand(5, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(5, dtype=torch.long)
    losses, gain = margin_gain(pipe, x, y, Threat(norm, 0.3))
    logits = linear(x.flatten(1)).detach()
    other = logits[:, 1:].argmax(1) + 1
    w = linear.weight.detach()
    expected = 0.3 * (w[other] - w[0]).norm(p=p, dim=1)
    margin = logits.gather(1, other[:, None])[:, 0] - logits[:, 0]
    assert torch.allclose(gain, expected) and torch.allclose(losses, margin)
    assert pipe.n_forward == pipe.n_backward == 5


def test_dead_means_zero_non_finite_or_below_the_threshold_relative_to_the_margin() -> None:
    losses = torch.tensor([-2.0, -2.0, -2.0, -2.0, 0.0, -1e-30])
    gain = torch.tensor([0.0, float("nan"), 2 * DEAD_GAIN * 0.99, 2 * DEAD_GAIN * 1.01, 1e-20, 1e-20])
    assert dead(losses, gain).tolist() == [True, True, True, False, False, False]
