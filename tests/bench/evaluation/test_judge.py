"""The harness judges a smoothed pipeline by PREDICT on fresh noise, abstentions counting as wrong, on base
classifiers whose smoothed answers are known in closed form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.api import FrontEnd, GaussianSmoothing, Identity, ImageData, JobContext, Pipeline, Threat
from bench.api.data import DatasetInfo
from bench.attacks.smoothed_pgd import SmoothedPGD, SmoothedPGDParams
from bench.evaluation.judge import DEFAULT_PREDICT, SmoothedPredict, judged, predict_details
from bench.evaluation.rows import prediction_cost
from bench.evaluation.run_attack import run_attack

pytestmark = pytest.mark.usefixtures("one_thread")

SIGMA = 0.25
SHAPE = (1, 2, 2)
INFO = DatasetInfo("toy", 2, SHAPE, (0.0,), (1.0,), 8, 8)


class Band(nn.Module):
    """Class 1 only where the first pixel lies within 0.02 of 0.3: f says 1 at 0.3, but g says 0 there,
    since a draw of σ = 0.25 lands in the band with probability 2Φ(0.08) - 1 ≈ 0.06."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 1000.0 * (0.02 - (x.flatten(1)[:, 0] - 0.3).abs())
        return torch.stack([torch.zeros_like(score), score], dim=1)


class Threshold(nn.Module):
    """Class 1 where the first pixel exceeds 1/2: g says 1 with probability Φ((x₀ - 1/2)/σ)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 200.0 * (x.flatten(1)[:, 0] - 0.5)
        return torch.stack([torch.zeros_like(score), score], dim=1)


class Smoothed(Identity):
    smoothing = GaussianSmoothing(SIGMA)


def images(first_pixel: list[float]) -> torch.Tensor:
    x = torch.full((len(first_pixel), *SHAPE), 0.5)
    x[:, 0, 0, 0] = torch.tensor(first_pixel)
    return x


def data(first_pixel: list[float], labels: list[int]) -> ImageData:
    stored = (images(first_pixel) * 255).round().to(torch.uint8)
    return ImageData(stored, torch.tensor(labels), "toy", INFO)


def smoothed(base: nn.Module, seed: int = 0) -> Pipeline:
    frontend: FrontEnd = Smoothed()
    frontend.reseed(seed)
    return Pipeline(base, frontend)


def test_a_smoothed_pipeline_answers_as_g_not_as_one_forward_pass() -> None:
    x = images([0.3])
    assert int(Pipeline(Band(), Identity()).predict(x)) == 1
    pipe = smoothed(Band())
    assert judged(pipe, x, 2).tolist() == [0]
    assert pipe.n_forward == DEFAULT_PREDICT.n  # one pass per noisy copy, nothing else


def test_clean_accuracy_of_a_smoothed_pipeline_is_gs() -> None:
    # Label 0 at x₀ = 0.3: one pass of f says 1 (wrong), g says 0 (right).
    pipe, toy = smoothed(Band()), data([0.3, 0.3], [0, 0])
    out = run_attack(pipe, attack(), toy, Threat("l2", 0.01), JobContext(), 8)
    assert out.clean.tolist() == [True, True]


def test_an_abstention_is_right_for_no_label() -> None:
    # x₀ = 1/2 is g's boundary: P(1) = 1/2, so PREDICT cannot separate the classes and abstains.
    x = images([0.5, 0.5])
    assert judged(smoothed(Threshold()), x, 2).tolist() == [-1, -1]
    out = run_attack(smoothed(Threshold()), attack(), data([0.5, 0.5], [0, 1]), Threat("l2", 0.5),
                     JobContext(), 8)
    assert not out.clean.any()


def test_judging_noise_is_seeded_by_the_front_end_and_fresh_on_every_call() -> None:
    # Near the boundary, with few draws and a lax level, answers vary from draw to draw.
    few = SmoothedPredict(n=15, alpha=0.5)
    x = images([0.5] * 40)

    def answers(seed: int) -> tuple[list[int], list[int]]:
        pipe = smoothed(Threshold(), seed)
        return judged(pipe, x, 2, few).tolist(), judged(pipe, x, 2, few).tolist()

    first, second = answers(3)
    assert answers(3) == (first, second)
    assert first != second and answers(4)[0] != first
    assert {-1, 0, 1} <= set(first + second)


def attack() -> SmoothedPGD:
    return SmoothedPGD(SmoothedPGDParams(steps=20, m=16))


def test_each_judgment_costs_n_passes_and_only_attacked_examples_are_rechecked() -> None:
    # Three examples g gets right and the attack breaks (x₀ = 0.3, eps 0.5 reaches 0.8), one g gets wrong.
    n = DEFAULT_PREDICT.n
    out = run_attack(smoothed(Threshold()), attack(), data([0.3, 0.3, 0.3, 0.3], [0, 0, 0, 1]),
                     Threat("l2", 0.5), JobContext(), 8, attack_seed=1)
    assert out.clean.tolist() == [True, True, True, False] and not out.robust.any()
    attacked = 3
    assert out.n_backward == 20 * 16 * attacked
    assert out.n_forward == 4 * n + 20 * 16 * attacked + attacked * n


def test_rows_state_passes_per_prediction_and_the_predict_parameters() -> None:
    pipe = smoothed(Threshold())
    assert prediction_cost(pipe) == 1000 and prediction_cost(pipe, SmoothedPredict(n=50)) == 50
    assert predict_details(pipe) == {
        "judged_by": "predict", "sigma": SIGMA, "noise_space": "pixel", "n": 1000, "alpha": 0.001,
        "noise_batch": 1000,
    }
    plain = Pipeline(Threshold(), Identity(), vote_draws=7)
    assert prediction_cost(plain) == 1 and predict_details(plain) is None


def test_straight_through_keeps_the_declared_smoothing() -> None:
    pipe = Pipeline(Threshold(), Smoothed(), bpda="frontend")
    assert judged(pipe, images([0.3]), 2).tolist() == [0]
    assert pipe.n_forward == DEFAULT_PREDICT.n
