"""The pipeline's own bookkeeping: the gradient tally every attack passes through, and tie-safe votes."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from bench.api import ATTACKS, NO_MAJORITY, FrontEnd, Identity, JobContext, Norm, Pipeline, Threat


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


class CutGraph(FrontEnd):
    """A near-identity computed on a detached input: its output has no autograd graph back to the image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.detach() * 255).round() / 255


def test_a_cut_graph_gives_every_gradient_attack_an_exactly_zero_gradient_instead_of_a_crash() -> None:
    """PGD, FGSM, CW and pyautoattack's AutoAttack (which calls the model itself) all run to the end; every
    input gradient they take is exactly zero, and BPDA through the whole front-end breaks the pipeline."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    x = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = Pipeline(model, CutGraph()).predict(x)
    runs: list[tuple[str, dict[str, int], Norm]] = [
        ("pgd", {"steps": 3}, "linf"), ("fgsm", {}, "linf"), ("cw-l2", {"steps": 3}, "l2"),
        ("autoattack", {"n_iter": 2, "n_queries": 5}, "linf"),
    ]
    for kind, params, norm in runs:
        pipe = Pipeline(model, CutGraph())
        cls = ATTACKS.get(kind)
        x_adv = cls(cls.Params.model_validate(params)).perturb(pipe, x, y, Threat(norm, 0.3), JobContext())
        assert x_adv.shape == x.shape, kind
        _, zero = pipe.gradient_report()
        assert zero == pipe.n_backward > 0, kind
    bpda = Pipeline(model, CutGraph(), bpda="frontend")
    _, grad = bpda.loss_and_grad(x, y, lambda z, t: z.gather(1, t[:, None]).squeeze(1))
    assert bool((grad.flatten(1) != 0).any(1).all())
    pgd = ATTACKS.get("pgd")(ATTACKS.get("pgd").Params.model_validate({"steps": 10}))
    x_adv = pgd.perturb(bpda, x, y, Threat("linf", 0.5), JobContext())
    assert bool((bpda.predict(x_adv) != y).all()), "BPDA through the front-end must break a linear model"


def test_zero_gradient_join_keeps_the_front_end_output_exact() -> None:
    x = torch.rand(2, 1, 4, 4, requires_grad=True)
    pipe = Pipeline(nn.Flatten(), CutGraph())
    out = pipe(x)
    assert out.requires_grad and torch.equal(out, CutGraph()(x).flatten(1))
