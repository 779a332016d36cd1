"""The smoothed classifier g(x) = argmax_c P(f(x+δ) = c) and Cohen et al. (2019)'s Monte-Carlo algorithms on
it: PREDICT (a class or abstain, wrong with probability at most α) and CERTIFY (a class and an ℓ2 radius
within which g is constant, wrong with probability at most α).

The base predictor f is any callable from a batch of noisy images to logits (B, C) or labels (B,); for a
defense it is the whole pipeline classifier(frontend(·)). Each noise draw costs exactly one image through f:
draws are made and classified ``noise_batch`` at a time, and the class counts are accumulated on the
device, read back once per sample.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from scipy.stats import norm

from bench.api import ConfigError, EvaluationError, Pipeline
from bench.certify.noise import GaussianNoise, noise_for
from bench.certify.params import DEFAULT_NOISE_BATCH, CertifyParams, check_alpha
from bench.stats import binomial_p_value, lower_confidence_bound

BasePredictor = Callable[[torch.Tensor], torch.Tensor]

#: The class PREDICT and CERTIFY answer when the draws do not single one out; it is right for no label.
ABSTAIN = -1


@dataclass(frozen=True)
class Certificate:
    """CERTIFY's outcome for one input."""

    #: The certified class, or :data:`ABSTAIN`.
    prediction: int
    #: nA: estimation draws (of n) in which f chose the class the selection draws picked.
    count: int
    #: p̲A, the one-sided (1 - α) Clopper-Pearson lower bound on P(f(x+δ) = class).
    p_lower: float
    #: σ·Φ⁻¹(p̲A), an ℓ2 radius in the declared noise space; 0 on abstain.
    radius: float
    #: The same certificate as an ℓ2 radius in [0,1] pixel space (equal to ``radius`` for pixel noise).
    radius_pixel: float
    #: Images the base predictor classified for it: n0 + n.
    forward_passes: int

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN


class SmoothedClassifier:
    """g built from base predictor ``base`` over ``num_classes`` classes and the noise it is smoothed with."""

    def __init__(self, base: BasePredictor, num_classes: int, noise: GaussianNoise) -> None:
        if num_classes < 2:
            raise ConfigError(f"a smoothed classifier needs at least two classes, got {num_classes}")
        self.base = base
        self.num_classes = num_classes
        self.noise = noise
        #: Images the base predictor has classified, over every call.
        self.n_forward = 0

    @torch.no_grad()
    def sample_counts(
        self, x: torch.Tensor, num: int, generator: torch.Generator, noise_batch: int = DEFAULT_NOISE_BATCH
    ) -> list[int]:
        """How often f chose each class over ``num`` fresh noisy copies of the image ``x`` (C, H, W)."""
        c = self.num_classes
        # An extra bin collects labels outside [0, C), so they fail loudly without a sync per batch.
        counts = torch.zeros(c + 1, dtype=torch.long, device=x.device)
        nonfinite = torch.zeros((), dtype=torch.long, device=x.device)
        remaining = num
        while remaining > 0:
            size = min(noise_batch, remaining)
            out = self.base(self.noise.sample(x, size, generator))
            self.n_forward += size
            remaining -= size
            if out.dim() == 2 and out.shape == (size, c):
                nonfinite += (~torch.isfinite(out)).any(1).sum()
                labels = out.argmax(1)
            elif out.dim() == 1 and out.shape[0] == size and not out.is_floating_point():
                labels = out
            else:
                raise EvaluationError(
                    f"the base predictor must return logits of shape ({size}, {c}) or integer labels of "
                    f"shape ({size},), got {tuple(out.shape)} of {out.dtype}"
                )
            labels = torch.where((labels < 0) | (labels >= c), c, labels)
            counts += torch.bincount(labels, minlength=c + 1)
        if int(nonfinite):
            raise EvaluationError(
                f"the base predictor gave NaN or infinite logits on {int(nonfinite)} noisy inputs"
            )
        tally: list[int] = counts.tolist()
        if tally[c]:
            raise EvaluationError(f"the base predictor returned {tally[c]} labels outside [0, {c})")
        return tally[:c]

    def predict(
        self,
        x: torch.Tensor,
        n: int,
        alpha: float,
        generator: torch.Generator,
        noise_batch: int = DEFAULT_NOISE_BATCH,
    ) -> int:
        """PREDICT: the top class of n draws, or :data:`ABSTAIN` unless a two-sided binomial test of its count
        nA against the runner-up's nB (nA of nA + nB at 1/2) rejects a tie at level α."""
        if n < 1:
            raise ConfigError(f"predict n must be >= 1, got {n}")
        check_alpha(alpha)
        counts = self.sample_counts(x, n, generator, noise_batch)
        top, runner_up = sorted(range(self.num_classes), key=lambda k: (-counts[k], k))[:2]
        n_a, n_b = counts[top], counts[runner_up]
        return top if binomial_p_value(n_a, n_a + n_b, 0.5) <= alpha else ABSTAIN

    def certify(self, x: torch.Tensor, params: CertifyParams, generator: torch.Generator) -> Certificate:
        """CERTIFY: guess the top class from n0 draws, bound its probability from below with n fresh ones,
        and abstain unless that bound p̲A reaches 1/2; otherwise g is constant within σ·Φ⁻¹(p̲A).

        Selection and estimation use separate draws, so the bound holds whatever class the first sample chose.
        """
        selection = self.sample_counts(x, params.n0, generator, params.noise_batch)
        guess = max(range(self.num_classes), key=lambda k: (selection[k], -k))
        n_a = self.sample_counts(x, params.n, generator, params.noise_batch)[guess]
        p_lower = lower_confidence_bound(n_a, params.n, params.alpha)
        passes = params.forward_passes
        if p_lower < 0.5:
            return Certificate(ABSTAIN, n_a, p_lower, 0.0, 0.0, passes)
        radius = self.noise.sigma * float(norm.ppf(p_lower))
        return Certificate(guess, n_a, p_lower, radius, self.noise.pixel_radius(radius), passes)


def smoothed_pipeline(pipeline: Pipeline, num_classes: int, channels: int) -> SmoothedClassifier:
    """g for a pipeline whose front-end declares its smoothing; the pipeline counts its passes as usual."""
    smoothing = pipeline.frontend.smoothing
    if smoothing is None:
        raise ConfigError(
            f"front-end {type(pipeline.frontend).__name__} declares no smoothing, so its pipeline has no "
            "smoothed classifier to certify; certify only defenses that set FrontEnd.smoothing"
        )
    return SmoothedClassifier(pipeline, num_classes, noise_for(smoothing, pipeline.classifier, channels))


def example_generator(seed: int, index: int, device: torch.device) -> torch.Generator:
    """A generator for the noise of test image ``index`` under run seed ``seed``: each image's draws depend
    on nothing else, so a certificate is the same whichever subset or order of images is certified."""
    digest = hashlib.sha256(f"certify:{seed}:{index}".encode()).digest()
    gen = torch.Generator(device=device)
    gen.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return gen


def certify_each(
    smoothed: SmoothedClassifier,
    images: torch.Tensor,
    indices: Sequence[int],
    params: CertifyParams,
    seed: int,
) -> list[Certificate]:
    """CERTIFY every image of ``images`` (N, C, H, W), whose test-set positions are ``indices``."""
    if len(indices) != images.shape[0]:
        raise ConfigError(f"{images.shape[0]} images but {len(indices)} indices")
    return [
        smoothed.certify(x, params, example_generator(seed, int(i), x.device))
        for x, i in zip(images, indices, strict=True)
    ]
