"""CERTIFY and PREDICT against classifiers whose smoothed behaviour is known in closed form.

For a linear binary classifier f(z) = [w·z + b > 0] and isotropic noise of size σ, P(f(x+δ) = class of x) is
Φ(d/σ) with d = |w·x + b| / ‖w‖ the distance to the hyperplane; the smoothed classifier's decision boundary is
the hyperplane itself, so its true ℓ2 robustness radius at x is d = σ·Φ⁻¹(pA).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import norm
from torch import nn

from bench.api import Classifier, ConfigError, EvaluationError, GaussianSmoothing, Identity, Pipeline
from bench.certify import (
    ABSTAIN,
    BasePredictor,
    CertifyParams,
    GaussianNoise,
    SmoothedClassifier,
    certify_each,
    noise_for,
    smoothed_pipeline,
)
from bench.stats import lower_confidence_bound

pytestmark = pytest.mark.usefixtures("one_thread")

W = torch.tensor([3.0, 4.0])  # ‖w‖ = 5
B = -1.0


class Halfplane(nn.Module):
    """Logits (-s, s) with s = w·z + b over the flattened input: class 1 exactly where w·z + b > 0."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w, self.b = w, b

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s = z.flatten(1) @ self.w + self.b
        return torch.stack([-s, s], 1)


def image(*values: float) -> torch.Tensor:
    return torch.tensor(values).view(1, 1, -1)


def smoothed(sigma: float, base: BasePredictor | None = None) -> SmoothedClassifier:
    noise = GaussianNoise(GaussianSmoothing(sigma), channels=1)
    return SmoothedClassifier(Halfplane(W, B) if base is None else base, 2, noise)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def radius_at(count: float, n: int, alpha: float, sigma: float) -> float:
    return sigma * float(norm.ppf(lower_confidence_bound(max(0, min(n, math.floor(count))), n, alpha)))


@pytest.mark.parametrize(("point", "sigma", "seed"), [((0.6, 0.2), 0.5, 0), ((0.0, 0.0), 0.25, 1),
                                                      ((0.3, 0.3), 0.5, 2), ((1.0, 1.0), 1.0, 3)])
def test_certified_radius_is_a_lower_bound_within_monte_carlo_error(
    point: tuple[float, float], sigma: float, seed: int
) -> None:
    x = image(*point)
    score = float(W @ torch.tensor(point)) + B
    dist = abs(score) / float(W.norm())
    p_a = float(norm.cdf(dist / sigma))
    params = CertifyParams(n0=100, n=10_000, alpha=0.001)
    cert = smoothed(sigma).certify(x, params, gen(seed))
    assert cert.prediction == int(score > 0)
    # nA is Binomial(n, pA): within 5 standard deviations of its mean, and the radius follows from it.
    sd = math.sqrt(params.n * p_a * (1 - p_a))
    assert abs(cert.count - params.n * p_a) <= 5 * sd
    assert cert.p_lower == pytest.approx(lower_confidence_bound(cert.count, params.n, params.alpha))
    assert cert.radius == pytest.approx(sigma * norm.ppf(cert.p_lower))
    low = radius_at(params.n * p_a - 5 * sd, params.n, params.alpha, sigma)
    high = radius_at(params.n * p_a + 5 * sd, params.n, params.alpha, sigma)
    assert low <= cert.radius <= high
    # A certificate never claims more than the truth: the true radius is the distance to the hyperplane.
    assert 0 < cert.radius <= dist
    assert cert.radius_pixel == cert.radius


def test_a_point_on_the_boundary_ties_and_both_algorithms_abstain() -> None:
    x = image(0.2, 0.1)  # w·x + b = 0: each class wins half the draws
    g = smoothed(0.5)
    cert = g.certify(x, CertifyParams(n0=100, n=10_000, alpha=0.001), gen(0))
    assert cert.prediction == ABSTAIN and cert.abstained
    assert cert.radius == cert.radius_pixel == 0.0
    assert cert.p_lower < 0.5
    assert abs(cert.count - 5_000) < 250
    assert g.predict(x, 1_000, 0.001, gen(0)) == ABSTAIN
    # Away from the boundary PREDICT answers.
    assert g.predict(image(1.0, 1.0), 1_000, 0.001, gen(0)) == 1
    assert g.predict(image(-1.0, -1.0), 1_000, 0.001, gen(0)) == 0


def test_a_larger_failure_probability_never_gives_a_smaller_certificate() -> None:
    # 0.04 from the boundary, pA = Φ(0.04 / 0.5) ≈ 0.53: abstained at strict alpha, certified at loose alpha.
    x = image(0.2 + 0.04 * 0.6, 0.1 + 0.04 * 0.8)
    alphas = [1e-8, 1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.25, 0.45]
    g = smoothed(0.5)
    certs = [g.certify(x, CertifyParams(n0=1_000, n=2_000, alpha=a), gen(7)) for a in alphas]
    assert len({c.count for c in certs}) == 1  # the same seed gives the same draws whatever alpha
    radii = [c.radius for c in certs]
    assert radii == sorted(radii)
    assert certs[0].abstained and not certs[-1].abstained


def test_the_same_seed_gives_the_same_certificates_whatever_the_subset() -> None:
    images = torch.stack([image(0.3, 0.2), image(0.25, 0.1), image(-0.2, 0.4)])
    params = CertifyParams(n0=50, n=500, noise_batch=128)
    g = smoothed(0.5)
    first = certify_each(g, images, [10, 11, 12], params, seed=3)
    assert certify_each(g, images, [10, 11, 12], params, seed=3) == first
    assert certify_each(g, images[1:], [11, 12], params, seed=3) == first[1:]
    other = certify_each(g, images, [10, 11, 12], params, seed=4)
    assert [c.count for c in other] != [c.count for c in first]


class CountingModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = Halfplane(W, B)
        self.batches: list[int] = []

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.batches.append(z.shape[0])
        out: torch.Tensor = self.inner(z)
        return out


def test_one_forward_pass_per_noise_draw_in_batches() -> None:
    model = CountingModel()
    g = smoothed(0.5, model)
    cert = g.certify(image(0.5, 0.5), CertifyParams(n0=7, n=23, noise_batch=10), gen(0))
    assert model.batches == [7, 10, 10, 3]
    assert g.n_forward == cert.forward_passes == 30
    g.predict(image(0.5, 0.5), 25, 0.01, gen(0), noise_batch=10)
    assert model.batches[4:] == [10, 10, 5] and g.n_forward == 55


def test_labels_count_like_the_logits_they_come_from() -> None:
    model = Halfplane(W, B)
    by_logits = smoothed(0.5, model).sample_counts(image(0.3, 0.2), 300, gen(5), noise_batch=64)
    by_labels = smoothed(0.5, lambda z: model(z).argmax(1)).sample_counts(image(0.3, 0.2), 300, gen(5), 64)
    assert by_logits == by_labels and sum(by_logits) == 300


@pytest.mark.parametrize(
    ("predictor", "message"),
    [
        (lambda z: torch.zeros(z.shape[0], 3), r"logits of shape \(\d+, 2\)"),
        (lambda z: torch.full((z.shape[0],), 2), "outside"),
        (lambda z: torch.full((z.shape[0], 2), math.nan), "NaN"),
        (lambda z: torch.zeros(z.shape[0]), "integer labels"),
    ],
)
def test_a_misbehaving_base_predictor_fails_loudly(predictor: object, message: str) -> None:
    g = SmoothedClassifier(predictor, 2, GaussianNoise(GaussianSmoothing(0.5), 1))  # type: ignore[arg-type]
    with pytest.raises(EvaluationError, match=message):
        g.sample_counts(image(0.1, 0.1), 20, gen(0))


def norm_classifier(w: torch.Tensor) -> Classifier:
    return Classifier(Halfplane(w, B), mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.4])


def test_normalized_noise_is_noise_added_after_normalization() -> None:
    """The engine's per-channel pixel noise classifies exactly like normalizing, adding σ and classifying."""
    w = torch.tensor([1.0, -2.0, 0.5, 1.5, 2.0, -0.5])
    clf = norm_classifier(w)
    sigma, x = 0.5, torch.tensor([0.6, 0.5, 0.3, 0.4, 0.7, 0.2]).view(3, 1, 2)
    g = SmoothedClassifier(clf, 2, noise_for(GaussianSmoothing(sigma, "normalized"), clf, 3))
    params = CertifyParams(n0=100, n=2_000, noise_batch=2_000)
    cert = g.certify(x, params, gen(11))

    direct = gen(11)
    x_norm = (x - clf.mean[0]) / clf.std[0]

    def counts(num: int) -> list[int]:
        z = x_norm + sigma * torch.randn((num, *x.shape), generator=direct)
        labels: list[int] = torch.bincount(clf.net(z).argmax(1), minlength=2).tolist()
        return labels

    selection, estimation = counts(params.n0), counts(params.n)
    guess = max((0, 1), key=lambda k: (selection[k], -k))
    assert (cert.prediction, cert.count) == (guess, estimation[guess])
    # The certificate holds in normalized space; in pixel space it shrinks by the smallest std...
    assert cert.radius_pixel == pytest.approx(cert.radius * 0.2)
    # ... and stays below the true pixel distance to the boundary, w·((x - m)/s) + b = 0, weight w/s in x.
    score = float(w @ x_norm.flatten()) + B
    assert 0 < cert.radius <= abs(score) / float(w.norm())
    assert cert.radius_pixel <= abs(score) / float((w / clf.std.flatten().repeat_interleave(2)).norm())


def test_a_pipeline_is_certified_only_when_its_front_end_declares_smoothing() -> None:
    clf = norm_classifier(torch.ones(6))
    with pytest.raises(ConfigError, match="declares no smoothing"):
        smoothed_pipeline(Pipeline(clf, Identity()), 2, 3)
    frontend = Identity()
    frontend.smoothing = GaussianSmoothing(0.25, "normalized")
    pipeline = Pipeline(clf, frontend)
    g = smoothed_pipeline(pipeline, 2, 3)
    assert g.noise.pixel_sigmas == pytest.approx((0.05, 0.0625, 0.1))
    cert = g.certify(torch.full((3, 1, 2), 0.5), CertifyParams(n0=10, n=90, noise_batch=32), gen(0))
    assert pipeline.n_forward == cert.forward_passes == 100
    # A classifier without a known normalization cannot take normalized-space noise.
    with pytest.raises(ConfigError, match="normalization"):
        smoothed_pipeline(Pipeline(Halfplane(torch.ones(6), B), frontend), 2, 3)


@pytest.mark.parametrize(
    ("values", "message"),
    [({"n0": 200, "n": 100}, "exceeds n"), ({"alpha": 0.0}, "alpha"), ({"alpha": 1.0}, "alpha"),
     ({"alpha": math.nan}, "alpha"), ({"n0": 0}, "n0"), ({"noise_batch": 0}, "noise_batch")],
)
def test_bad_parameters_are_refused_before_any_work(values: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        CertifyParams(**values)  # type: ignore[arg-type]
    g = smoothed(0.5)
    with pytest.raises(ConfigError, match="alpha"):
        g.predict(image(0.1, 0.1), 10, 1.5, gen(0))
    assert g.n_forward == 0
