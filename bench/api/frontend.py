"""The front-end contract: what a defense builds and the harness attacks.

A front-end maps images in [0,1] to images of the same shape, in [0,1] unless it declares a wider
``output_range``, and is placed before a frozen classifier. What a defense *declares* here decides how it is
attacked: non-differentiable parts are wrapped in :class:`NonDifferentiable` so the harness can switch on
BPDA, and ``randomized`` front-ends get EOT and a private generator, so attack code that reseeds the global
RNG cannot steer the defense's randomness.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from bench.api.smoothing import GaussianSmoothing


class FrontEnd(nn.Module):
    """Base class of every front-end; subclasses implement ``forward``."""

    #: True when the output depends on random draws; attacks then average gradients (EOT) and judge
    #: success by majority over fresh draws. A class-level declaration, which a wrapper such as
    #: :class:`StraightThrough` overrides per instance with the value of the front-end it wraps.
    randomized: bool = False
    #: The interval every output pixel is promised to lie in, whatever the input in [0,1]; the contract tests
    #: hold each registered defense to it. A front-end whose output feeds the classifier outside the image
    #: box (a denoiser whose output is not clamped, say) declares its wider range here.
    output_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    #: Gaussian noise the pipeline is certified under (randomized smoothing), or None. The noise is not drawn
    #: in ``forward``: the certification engine adds it to the input from its own seeded generator, so this
    #: may be set per instance (a defense whose σ is a parameter) and ``forward`` stays deterministic.
    smoothing: GaussianSmoothing | None = None

    def __init__(self) -> None:
        super().__init__()
        self._seed = 0
        self._generators: dict[torch.device, torch.Generator] = {}

    def reseed(self, seed: int) -> None:
        """Restart the front-end's private random stream; the harness does so per job, from the job's key."""
        self._seed = seed
        self._generators = {}

    def rng(self, device: torch.device) -> torch.Generator:
        """The private generator for draws on ``device``: a generator serves one device only, and a front-end
        without parameters cannot know where its inputs will live until it sees them."""
        gen = self._generators.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self._seed)
            self._generators[device] = gen
        return gen

    def random_state(self) -> dict[str, Any]:
        """Where the private streams stand, for a training checkpoint (they are no part of ``state_dict``)."""
        generators = {str(device): g.get_state() for device, g in self._generators.items()}
        return {"seed": self._seed, "generators": generators}

    def load_random_state(self, state: dict[str, Any]) -> None:
        """Continue the private streams from :meth:`random_state`, as a resumed training run must."""
        self._seed = int(state["seed"])
        self._generators = {}
        for name, position in state["generators"].items():
            device = torch.device(name)
            gen = torch.Generator(device=device)
            gen.set_state(position)
            self._generators[device] = gen


class Identity(FrontEnd):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class NonDifferentiable(nn.Module):
    """Wraps a function whose gradient is useless (zero, undefined or shattered).

    With ``straight_through`` on (BPDA, Athalye et al. 2018) the forward value is ``fn(x)`` (up to float
    rounding) while the gradient is that of ``approx`` (identity by default):
    ``approx(x) + (fn(x) - approx(x)).detach()``. With it off, autograd sees ``fn`` as written, which is what
    a naive attacker would use.
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        approx: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.fn = fn
        self.approx = approx
        self.straight_through = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.straight_through and torch.is_grad_enabled() and x.requires_grad):
            return self.fn(x)
        surrogate = x if self.approx is None else self.approx(x)
        with torch.no_grad():
            exact = self.fn(x.detach())
        return surrogate + (exact - surrogate).detach()


class _IdentityBackward(torch.autograd.Function):
    """Returns ``exact`` (computed without a graph) and passes the gradient to ``x`` unchanged."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
        return exact.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


class StraightThrough(FrontEnd):
    """BPDA through a whole front-end (Athalye et al. 2018): its exact output forward, the identity backward.

    A front-end maps images to images of the same shape, so the identity is always an available approximation
    of its Jacobian. Attacked this way, a part the author never declared :class:`NonDifferentiable` (a
    rounding, a ``.detach()``, a saturating or deeply iterated map) cannot hide the classifier's gradient.
    The wrapped front-end runs without a graph, so its declared parts return their exact values too, and
    the output is bit-identical to the wrapped front-end's. Randomness and the private stream are the wrapped
    front-end's: the harness's seeding reaches it, and EOT and votes apply when it is randomized; so is its
    declared smoothing, so the pipeline is still judged and attacked as the smoothed classifier.
    """

    def __init__(self, frontend: FrontEnd) -> None:
        super().__init__()
        self.inner = frontend
        self.randomized = frontend.randomized
        self.smoothing = frontend.smoothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.is_grad_enabled() and x.requires_grad):
            out: torch.Tensor = self.inner(x)
            return out
        with torch.no_grad():
            exact: torch.Tensor = self.inner(x.detach())
        if exact.shape != x.shape:
            return exact  # the pipeline reports the wrong shape; no gradient can be defined for it
        through: torch.Tensor = _IdentityBackward.apply(x, exact)
        return through

    def reseed(self, seed: int) -> None:
        self.inner.reseed(seed)

    def rng(self, device: torch.device) -> torch.Generator:
        return self.inner.rng(device)

    def random_state(self) -> dict[str, Any]:
        return self.inner.random_state()

    def load_random_state(self, state: dict[str, Any]) -> None:
        self.inner.load_random_state(state)


def set_bpda(module: nn.Module, enabled: bool) -> int:
    """Switch BPDA on or off for every non-differentiable part; returns how many parts were found."""
    parts = [m for m in module.modules() if isinstance(m, NonDifferentiable)]
    for m in parts:
        m.straight_through = enabled
    return len(parts)
