"""``StraightThrough``: BPDA through a whole front-end, exact forward, identity backward, randomness kept."""

from __future__ import annotations

import torch
from torch import nn

from bench.api import FrontEnd, NonDifferentiable, Pipeline, StraightThrough


class Blur(FrontEnd):
    """A declared rounding (with a BPDA approximation of its own) after a differentiable scaling."""

    def __init__(self) -> None:
        super().__init__()
        self.q = NonDifferentiable(lambda x: torch.round(x * 7) / 7, approx=lambda x: x * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.q(x * 0.9 + 0.05)
        return out


class Noise(FrontEnd):
    randomized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * torch.randn(x.shape, generator=self.rng(x.device), device=x.device)


def images() -> torch.Tensor:
    return torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))


def test_forward_is_the_wrapped_output_bit_for_bit_and_backward_the_identity() -> None:
    x = images().requires_grad_(True)
    inner = Blur()
    with torch.no_grad():
        exact = inner(x)
    out = StraightThrough(inner)(x)
    assert torch.equal(out, exact), "declared parts must keep their exact values, not surrogate + difference"
    weights = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad((out * weights).sum(), x)
    assert torch.equal(grad, weights)


def test_randomness_and_seeding_are_the_wrapped_front_ends() -> None:
    wrapped = StraightThrough(Noise())
    assert wrapped.randomized and not StraightThrough(Blur()).randomized
    plain, other = Noise(), Noise()
    plain.reseed(5)
    wrapped.reseed(5)
    other.reseed(6)
    x = images()
    assert torch.equal(wrapped(x), plain(x)) and not torch.equal(wrapped(x), other(x))
    pipe = Pipeline(nn.Flatten(), Noise(), bpda="frontend", eot_samples=3, vote_draws=5)
    assert isinstance(pipe.frontend, StraightThrough) and pipe.randomized and pipe.eot_samples == 3


def test_pipeline_with_bpda_frontend_wraps_once_and_counts_declared_parts() -> None:
    pipe = Pipeline(nn.Flatten(), Blur(), bpda="frontend")
    assert isinstance(pipe.frontend, StraightThrough) and pipe.bpda_parts == 1
    again = Pipeline(nn.Flatten(), pipe.frontend, bpda="frontend")
    assert again.frontend is pipe.frontend
    assert not isinstance(Pipeline(nn.Flatten(), Blur(), bpda=True).frontend, StraightThrough)
