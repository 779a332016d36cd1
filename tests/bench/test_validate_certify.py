"""A certify block's bad input is refused before any work, each problem with its key path and the fix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
import yaml
from pydantic import Field

from bench.api import DEFENSES, Defense, DefenseParams, FrontEnd, GaussianSmoothing
from bench.config import load_matrix
from bench.validate import validate_matrix
from tests.bench.test_config import edit, problems


class Noisy(FrontEnd):
    """The identity on the noisy images it is fed, so its range is unbounded like the `smoothing` defense's
    (registered for the whole session, it is held to the defense contract too)."""

    output_range: ClassVar[tuple[float, float]] = (-math.inf, math.inf)

    def __init__(self, smoothing: GaussianSmoothing) -> None:
        super().__init__()
        self.smoothing = smoothing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FixedSmoothing(Defense):
    """Test-only: declares smoothing at a σ it fixes itself, with no ``sigma`` parameter."""

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return Noisy(GaussianSmoothing(0.25))


class AnySpaceParams(DefenseParams):
    space: str = "pixel"


class AnySpaceSmoothing(Defense):
    """Test-only: passes any noise space through to its declaration, unchecked by its parameters."""

    Params = AnySpaceParams

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return Noisy(GaussianSmoothing(0.25, params.space))


class BoundedParams(DefenseParams):
    sigma: float = Field(0.25, gt=0, le=1)


class BoundedSigmaSmoothing(Defense):
    """Test-only: smoothing whose σ parameter is bounded (a denoiser trained only up to σ=1, say)."""

    Params = BoundedParams

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        return Noisy(GaussianSmoothing(params.sigma))


for name, cls in (
    ("test-fixed-smoothing", FixedSmoothing),
    ("test-any-space", AnySpaceSmoothing),
    ("test-bounded-sigma", BoundedSigmaSmoothing),
):
    if name not in DEFENSES:
        DEFENSES.add(name, cls)


def certified(certify: dict[str, Any], **defense: Any) -> dict[str, Any]:
    """The base matrix with a smoothing defense in its native experiment, and a certify block."""
    smooth = defense or {"kind": "smoothing", "params": {"sigma": 0.25}}
    return edit(defenses__smooth=smooth, experiments__0__defenses=["aaa", "none", "smooth"], certify=certify)


def test_a_certify_block_on_a_smoothing_defense_passes(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(certified({"sigmas": [0.25, 0.5], "n0": 10, "n": 100, "radii": [0.5]})))
    validate_matrix(load_matrix(path), str(path), tmp_path, tmp_path)


@pytest.mark.parametrize(
    "certify, expected",
    [
        ({"sigmas": [0.25, 0.0]}, "certify.sigmas: Value error, smoothing sigma must be a finite number > 0"),
        ({"sigmas": [-1]}, "smoothing sigma must be a finite number > 0, got -1.0"),
        ({"n0": 1000, "n": 100}, "certify: Value error, certify n0=1000 exceeds n=100"),
        ({"n0": 200_000}, "certify n0=200000 exceeds n=100000"),
        ({"alpha": 0}, "certify.alpha: Value error, certify alpha is a failure probability and must lie in"),
        ({"alpha": 1.5}, "must lie in (0, 1), got 1.5"),
        ({"radii": [0.5, -0.25]}, "certify.radii: Value error, radii to report must be finite and >= 0, got"),
        ({"radii": [0.5, 0.5]}, "each radius is listed once; [0.5] repeat"),
        ({"preset": "salmon"}, "unknown certify preset 'salmon'; did you mean 'salman'?"),
        ({"preset": "salman", "n": 1000, "every": 10}, "preset 'salman' fixes n0, n, alpha and the images"),
        ({"noise_batch": 0}, "certify.noise_batch: Input should be greater than or equal to 1"),
        ({"sigma": 0.5}, "certify.sigma: unknown key"),
    ],
)
def test_bad_certify_settings_are_refused(tmp_path: Path, certify: dict[str, Any], expected: str) -> None:
    assert expected in problems(certified(certify), tmp_path)


def test_a_preset_refusal_names_what_to_remove(tmp_path: Path) -> None:
    msg = problems(certified({"preset": "salman", "n": 1000, "every": 10}), tmp_path)
    assert "remove n, every, or drop the preset" in msg


def test_a_certify_block_without_any_smoothing_defense_is_refused(tmp_path: Path) -> None:
    msg = problems(edit(certify={"n": 1000}), tmp_path)
    assert "certify: no defense of the matrix's experiments declares smoothing" in msg


def test_a_smoothing_defense_outside_every_experiment_does_not_count(tmp_path: Path) -> None:
    raw = edit(defenses__smooth={"kind": "smoothing"}, certify={"n": 1000})
    msg = problems(raw, tmp_path)
    assert "declares smoothing (FrontEnd.smoothing), so there is nothing to certify" in msg


def test_sigmas_need_a_sigma_parameter_on_every_smoothing_defense(tmp_path: Path) -> None:
    msg = problems(certified({"sigmas": [0.5]}, kind="test-fixed-smoothing"), tmp_path)
    assert "defenses.smooth: certify.sigmas plans every smoothing defense once per sigma" in msg
    assert "declares smoothing without a sigma parameter" in msg


def test_without_sigmas_a_defense_certifies_at_the_sigma_it_declares(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(certified({"n": 1000}, kind="test-fixed-smoothing")))
    validate_matrix(load_matrix(path), str(path), tmp_path, tmp_path)


def test_sigmas_are_checked_against_the_defense_parameters(tmp_path: Path) -> None:
    msg = problems(certified({"sigmas": [0.5, 2.0]}, kind="test-bounded-sigma"), tmp_path)
    assert "defenses.smooth.params.sigma: Input should be less than or equal to 1; got 2.0" in msg
    assert "got 0.5" not in msg


@pytest.mark.parametrize(
    "defense, expected",
    [
        ({"kind": "smoothing", "params": {"space": "lab"}}, "defenses.smooth.params.space: Input should be"),
        ({"kind": "test-any-space", "params": {"space": "lab"}}, "unknown smoothing noise space 'lab'"),
    ],
)
def test_a_noise_space_other_than_pixel_or_normalized_is_refused(
    tmp_path: Path, defense: dict[str, Any], expected: str
) -> None:
    assert expected in problems(certified({"n": 1000}, **defense), tmp_path)


def test_normalized_noise_on_a_classifier_of_unknown_normalization_is_refused(tmp_path: Path) -> None:
    raw = certified({"n": 1000}, kind="smoothing", params={"space": "normalized"})
    raw["classifiers"]["Z"] = {"source": "torchvision:resnet18", "dataset": "mnist"}
    cross = {"kind": "cross-model", "defenses": ["smooth"], "guides": ["A"], "targets": ["Z"]}
    raw["experiments"].append(cross)
    msg = problems(raw, tmp_path)
    assert "experiments[2].defenses[0]: defense 'smooth' adds its noise after the classifier's" in msg
    assert "target 'Z' is a model-zoo classifier" in msg
    assert "experiments[0]" not in msg, "classifiers trained by the harness have a known normalization"


def test_a_front_end_declaring_its_own_std_may_smooth_a_classifier_of_unknown_normalization(
    tmp_path: Path,
) -> None:
    """irs normalizes with its own statistics and declares them, so the zoo model's are not needed."""
    raw = certified({"n": 1000}, kind="irs", params={"mean": [0.5], "std": [0.5], "scale": 1, "depth": 2})
    raw["classifiers"]["Z"] = {"source": "torchvision:resnet18", "dataset": "mnist"}
    cross = {"kind": "cross-model", "defenses": ["smooth"], "guides": ["A"], "targets": ["Z"]}
    raw["experiments"].append(cross)
    msg = problems(raw, tmp_path)
    assert "model-zoo classifier" not in msg and "normalization" not in msg, msg
