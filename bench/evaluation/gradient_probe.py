"""Whether an attack still had a gradient to follow where it gave up.

An example an attack leaves robust is evidence only if the attack had something to follow there. So after
the attack, :func:`~bench.evaluation.run_attack.run_attack` takes one more input gradient per robust example:
of the margin loss (best other logit minus the true one, which does not flatten when the softmax saturates,
unlike cross-entropy) at the attack's final point, through the same pipeline (same BPDA setting, averaged
over the EOT draws of a randomized one).

Its size is read without units: ``gain = eps * ||grad||_*`` (the dual norm of the threat's) is how far the
margin would move, to first order, across the whole threat ball, and the gradient is *dead* when the gain is
exactly zero, not finite, or below :data:`DEAD_GAIN` times ``|margin|``: then no step inside the ball is
predicted to move the margin by a measurable fraction of what it must cross. The ratio needs no scale of
the logits or of the input dimension, and it is not small for a genuinely robust example: for a linear
model an example is robust exactly when ``|margin| > gain``, so its ratio is below 1 but of order 1.
``benchmarks/dead_gradients.py`` measured the ratio on healthy and on masking pipelines; see
``benchmarks/README.md``.
"""

from __future__ import annotations

import math

import torch

from bench.api import Pipeline, Threat, margin

#: A robust example's gradient is dead when ``gain / |margin|`` is below this. Measured
#: (``benchmarks/dead_gradients.py``, after PGD-20): on healthy pipelines (trained MNIST classifiers bare and
#: behind a trained AAA, a pre-trained CIFAR-10 ResNet-20; 1,093 robust examples) the smallest ratio was
#: 7.3e-2; on masking ones (bit-depth and JPEG without BPDA, a ``.detach()``, a steep sigmoid, a 50-fold
#: contraction; 1,072 robust examples) 1,042 were below 1e-4, 786 of them exactly 0, and every masking
#: pipeline had at least 88% of its robust examples below. 1e-4 lies nearly three decades under the
#: healthy minimum.
DEAD_GAIN = 1e-4

#: The dual norm's order, per threat norm: the most a unit of the threat's norm can move a linear function.
_DUAL = {"linf": 1.0, "l2": 2.0, "l1": math.inf}


def margin_gain(
    pipeline: Pipeline, x: torch.Tensor, y: torch.Tensor, threat: Threat
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: the margin loss at ``x`` and ``eps * ||grad||_*``, its first-order change across the
    ball (both EOT-averaged on a randomized pipeline). One forward and one backward pass per example and
    draw, counted by the pipeline like an attack's."""
    losses, grad = pipeline.loss_and_grad(x, y, margin)
    gain = threat.eps * grad.flatten(1).float().norm(p=_DUAL[threat.norm], dim=1)
    return losses, gain


def dead(losses: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Per example: the gradient carries no usable direction (zero, not finite, or vanishing; see module)."""
    floor = losses.abs().clamp_min(torch.finfo(torch.float32).tiny)
    live = torch.isfinite(gain) & (gain >= DEAD_GAIN * floor)
    return ~live
