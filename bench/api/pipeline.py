"""The thing every attack in Frontline targets: ``classifier(frontend(x))``, end to end.

Attacks never see the front-end or the classifier on their own; they get a :class:`Pipeline`, which counts
every forward and backward pass (in images) so the cost of an evaluation is recorded next to its number,
applies BPDA to the parts the defense declared non-differentiable, and judges randomized pipelines by
majority over fresh draws rather than by one lucky sample. It also tallies every input gradient any attack
takes through it (its own PGD, CW, pyautoattack's code): a NaN or all-zero gradient blinds an attack
without an error (``sign(NaN)`` is 0, so PGD just stops moving), and the tally is what lets a cell say so.
A front-end whose output has no graph back to its input at all (a comparison, a ``.detach()``) is joined to
it with a zero gradient, so every attack runs to the end and sees the zero instead of crashing in autograd.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

from bench.api.frontend import FrontEnd, StraightThrough, set_bpda
from bench.errors import EvaluationError

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: How gradients cross the front-end: True, BPDA through the parts the defense declared non-differentiable;
#: False, autograd as written (what a naive attacker uses); ``"frontend"``, BPDA through the whole front-end
#: (:class:`~bench.api.frontend.StraightThrough`), which needs no declaration.
BpdaMode = bool | Literal["frontend"]


class _CountBackward(torch.autograd.Function):
    """Identity whose backward counts images, so passes made by third-party attacks are counted too."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pipeline: Pipeline) -> torch.Tensor:
        ctx.pipeline = pipeline
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        ctx.pipeline.n_backward += grad.shape[0]
        ctx.pipeline.note_gradient(grad)
        return grad, None


class _ZeroGradient(torch.autograd.Function):
    """Joins a front-end output that has no graph to the input it came from, with the gradient of a locally
    constant map: zero. Autograd would otherwise refuse the backward pass, and the attack would crash."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.input_like = (x.shape, x.dtype, x.device)
        return z.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        shape, dtype, device = ctx.input_like
        return None, torch.zeros(shape, dtype=dtype, device=device)


#: Label :meth:`Pipeline.predict` gives a randomized pipeline whose vote has no strict winner: it is right
#: for no class, so a tie that includes the true label never counts as robust.
NO_MAJORITY = -1


class Pipeline(nn.Module):
    def __init__(
        self,
        classifier: nn.Module,
        frontend: FrontEnd,
        *,
        bpda: BpdaMode = True,
        eot_samples: int = 20,
        vote_draws: int = 21,
    ) -> None:
        super().__init__()
        if bpda == "frontend" and not isinstance(frontend, StraightThrough):
            frontend = StraightThrough(frontend)
        self.classifier = classifier
        self.frontend = frontend
        self.n_forward = 0
        self.n_backward = 0
        self.bpda_parts = set_bpda(frontend, bpda is not False)
        self.randomized = bool(frontend.randomized)
        self.eot_samples = eot_samples if self.randomized else 1
        self.vote_draws = vote_draws if self.randomized else 1
        self.gradient_counts = torch.zeros(2, dtype=torch.long)
        self.eval()

    def reset_counters(self) -> None:
        self.n_forward = self.n_backward = 0
        self.gradient_counts = torch.zeros(2, dtype=torch.long)

    def note_gradient(self, grad: torch.Tensor) -> None:
        """Count input gradients that are non-finite or exactly zero, per image, without a host sync."""
        flat = grad.detach().flatten(1)
        counts = torch.stack([(~torch.isfinite(flat)).any(1).sum(), (flat == 0).all(1).sum()])
        self.gradient_counts = self.gradient_counts.to(counts.device) + counts

    def gradient_report(self) -> tuple[int, int]:
        """(non-finite, all-zero) input gradients since the counters were reset, in images."""
        nonfinite, zero = self.gradient_counts.tolist()
        return int(nonfinite), int(zero)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.n_forward += x.shape[0]
        if x.requires_grad:
            x = _CountBackward.apply(x, self)
        z = self.frontend(x)
        if z.shape != x.shape:
            raise EvaluationError(
                f"front-end {type(self.frontend).__name__} changed the input shape from {tuple(x.shape)} to "
                f"{tuple(z.shape)}; a front-end must return images of the shape it is given"
            )
        if x.requires_grad and torch.is_grad_enabled() and not z.requires_grad:
            z = _ZeroGradient.apply(z, x)
        logits: torch.Tensor = self.classifier(z)
        return logits

    def loss_and_grad(
        self, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example loss and its input gradient, averaged over ``eot_samples`` draws when randomized.

        The draws are one batched pass, so a step costs one forward and one backward over k*B images.
        Returns the logits of the first draw too, through ``self.last_logits``.
        """
        k = self.eot_samples
        x = x.detach().requires_grad_(True)
        xs = x.repeat(k, *([1] * (x.dim() - 1))) if k > 1 else x
        logits = self(xs)
        losses = loss_fn(logits, y.repeat(k) if k > 1 else y)
        (grad,) = torch.autograd.grad(losses.sum(), x)
        if k > 1:
            grad = grad / k
            losses = losses.view(k, -1).mean(0)
        self.last_logits = logits[: x.shape[0]].detach()
        return losses.detach(), grad

    @torch.no_grad()
    def votes(self, x: torch.Tensor) -> torch.Tensor:
        """Per example and class: how many of ``vote_draws`` fresh passes chose it (one if deterministic)."""
        votes: torch.Tensor | None = None
        for _ in range(self.vote_draws):
            logits = self(x)
            _check_finite(logits)
            if votes is None:
                votes = torch.zeros(logits.shape, dtype=torch.long, device=x.device)
            votes.scatter_add_(1, logits.argmax(1, keepdim=True), torch.ones_like(votes[:, :1]))
        assert votes is not None
        return votes

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Labels from a fresh pass; a randomized pipeline answers by plurality over ``vote_draws`` draws,
        and with :data:`NO_MAJORITY` where the top count is shared (argmax would hand ties to the lowest
        class index, which may be the true one)."""
        votes = self.votes(x)
        if self.vote_draws == 1:
            return votes.argmax(1)
        top = votes.max(1).values
        tied = (votes == top.unsqueeze(1)).sum(1) > 1
        return torch.where(tied, torch.full_like(top, NO_MAJORITY), votes.argmax(1))


def _check_finite(logits: torch.Tensor) -> None:
    if not torch.isfinite(logits).all():
        raise EvaluationError(
            "the pipeline produced NaN or infinite logits; no number can be reported for it"
        )
