"""The pipeline's own bookkeeping: the gradient tally every attack passes through, and tie-safe votes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.api import ATTACKS, NO_MAJORITY, FrontEnd, Identity, JobContext, Pipeline, Threat


class _NaNGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return torch.full_like(grad, float("nan"))


class NaNGradient(FrontEnd):
    """Identity forward, NaN backward: the shape of a numerically broken defense under attack."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = _NaNGrad.apply(x)
        return out


def linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).eval()


def data(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_gradient_tally_counts_nan_gradients_of_any_attack() -> None:
    x, y = data()
    for kind in ("pgd", "cw-l2"):
        pipe = Pipeline(linear(), NaNGradient())
        cls = ATTACKS.get(kind)
        threat = Threat("l2" if kind == "cw-l2" else "linf", 1.0)
        cls(cls.Params.model_validate({"steps": 3})).perturb(pipe, x, y, threat, JobContext())
        nonfinite, _ = pipe.gradient_report()
        assert nonfinite == pipe.n_backward > 0, kind


def test_gradient_tally_counts_exactly_zero_gradients_and_resets() -> None:
    x, y = data()
    pipe = Pipeline(linear(), Identity())
    pipe.loss_and_grad(x, y, lambda z, t: (z * 0).sum(1))
    assert pipe.gradient_report() == (0, x.shape[0])
    pipe.reset_counters()
    assert pipe.gradient_report() == (0, 0) and pipe.n_backward == 0


class FixedVotes(FrontEnd):
    """Cycles through given images, one per draw, so the votes of a randomized pipeline are known."""

    randomized = True

    def __init__(self, draws: list[torch.Tensor]) -> None:
        super().__init__()
        self.draws, self.i = draws, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.draws[self.i % len(self.draws)]
        self.i += 1
        return out


class FirstPixel(nn.Module):
    """Logits that pick class round(2 * first pixel)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cls = (x.flatten(1)[:, 0] * 2).round().long()
        return nn.functional.one_hot(cls, 3).float()


def test_tied_vote_is_no_answer_even_when_the_true_class_is_among_the_tied() -> None:
    def img(v: float) -> torch.Tensor:
        return torch.full((1, 1, 2, 2), v)

    tied = Pipeline(FirstPixel(), FixedVotes([img(0.0), img(0.5), img(0.0), img(0.5)]), vote_draws=4)
    assert tied.predict(img(0.0)).tolist() == [NO_MAJORITY]
    clear = Pipeline(FirstPixel(), FixedVotes([img(0.0), img(0.5), img(0.0)]), vote_draws=3)
    assert clear.predict(img(0.0)).tolist() == [0]
