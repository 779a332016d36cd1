"""Denoised smoothing: its defaults are Salman et al.'s, it declares pixel-space smoothing on an unclamped
denoiser, each objective's loss falls on a tiny fit, STAB trains against the guide's own labels, guides take
turns batch by batch, a killed fit resumes, and every bad setting of the issue is refused with its fix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from bench.api import DEFENSES, Checkpoints, ConfigError, DatasetInfo, ImageData, JobContext
from defenses.denoised_smoothing import DenoisedSmoothing, DenoisedSmoothingParams
from defenses.denoisers import DnCNN
from tests.bench.test_config import edit, problems
from tests.interrupt import CountingContext, Killed, Steps

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)
#: A 4-layer, 8-feature DnCNN, 96 images in batches of 32 (three steps an epoch), a rate that moves it.
TINY: dict[str, Any] = {"depth": 4, "width": 8, "batch_size": 32, "epochs": 2, "lr": 1e-2, "sigma": 0.25}


def guide(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    return net.eval().requires_grad_(False)


def images(n: int, seed: int, labels: torch.Tensor | None = None) -> ImageData:
    x = torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed))
    info = DatasetInfo("tiny", 3, SHAPE, (0.5,), (0.5,), n, 0)
    y = guide()(x).argmax(1) if labels is None else labels
    return ImageData((x * 255).round().to(torch.uint8), y, f"tiny{seed}", info)


def params(**overrides: Any) -> DenoisedSmoothingParams:
    return DenoisedSmoothingParams.model_validate({**TINY, **overrides})


def fit(
    ctx: JobContext,
    guides: list[nn.Module],
    data: ImageData | None = None,
    val: ImageData | None = None,
    start: DnCNN | None = None,
    **overrides: Any,
) -> tuple[DnCNN, dict[str, float]]:
    defense, p = DenoisedSmoothing(), params(**overrides)
    torch.manual_seed(1)
    frontend = defense.build(p, SHAPE)
    assert isinstance(frontend, DnCNN)
    if start is not None:
        frontend.load_state_dict(start.state_dict())
    metrics = defense.fit(frontend, guides, data or images(96, 1), val, p, ctx)
    return frontend, metrics


def test_defaults_are_the_papers_cifar10_settings() -> None:
    p = DenoisedSmoothingParams()
    assert (p.arch, p.depth, p.width, p.sigma) == ("dncnn", 17, 64, 0.25)
    assert (p.objective, p.access) == ("mse", "white-box")
    assert (p.optimizer, p.lr, p.weight_decay, p.epochs, p.batch_size) == ("adam", 1e-3, 1e-4, 90, 256)
    assert (p.lr_step, p.lr_gamma, p.momentum, p.train_sigma) == (30, 0.1, None, None)
    tune = DenoisedSmoothingParams(objective="stab+mse")
    assert (tune.lr, tune.epochs) == (1e-5, 20)
    assert DenoisedSmoothing().epochs_at_full_scale(tune) == 20
    assert DenoisedSmoothing().epochs_at_full_scale(p) == 90
    assert DenoisedSmoothingParams(arch="dncnn-wide").width == 128
    memnet = DenoisedSmoothingParams(arch="memnet")
    assert (memnet.memory_blocks, memnet.residual_blocks, memnet.depth) == (3, 6, None)
    assert DenoisedSmoothingParams(optimizer="sgd").momentum == 0.9
    assert DEFENSES.get("denoised-smoothing") is DenoisedSmoothing


def test_the_dump_leaves_out_what_does_not_apply() -> None:
    dumped = DenoisedSmoothingParams(arch="memnet").model_dump(mode="json")
    assert not {"depth", "momentum", "train_sigma"} & set(dumped)
    assert dumped["memory_blocks"] == 3
    same = DenoisedSmoothingParams(sigma=0.5, train_sigma=0.5)
    assert same.model_dump() == DenoisedSmoothingParams(sigma=0.5).model_dump(), "the same run, the same key"


def test_the_front_end_declares_pixel_smoothing_and_is_not_clamped() -> None:
    p = params(sigma=0.5)
    frontend = DenoisedSmoothing().build(p, SHAPE)
    assert frontend.smoothing is not None
    assert (frontend.smoothing.sigma, frontend.smoothing.space) == (0.5, "pixel")
    assert frontend.output_range == (-math.inf, math.inf)
    x = torch.full((2, *SHAPE), 1.5)
    assert torch.equal(frontend.eval()(x), x), "an untrained DnCNN is the identity, and nothing clamps it"


@pytest.mark.parametrize(
    ("field", "value", "valid"),
    [("arch", "unet", "'dncnn', 'dncnn-wide' or 'memnet'"), ("objective", "stability", "'mse', 'stab'")],
)
def test_an_unknown_arch_or_objective_names_the_valid_ones(field: str, value: str, valid: str) -> None:
    with pytest.raises(ValidationError, match=valid):
        DenoisedSmoothingParams.model_validate({field: value})


def test_settings_of_other_choices_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"depth: not a size of arch 'memnet' \(its sizes: width, "):
        DenoisedSmoothingParams(arch="memnet", depth=5)
    with pytest.raises(ValidationError, match="memory_blocks: not a size of arch 'dncnn'"):
        DenoisedSmoothingParams(memory_blocks=2)
    with pytest.raises(ValidationError, match="momentum is SGD's"):
        DenoisedSmoothingParams(momentum=0.5)


def test_training_at_another_sigma_needs_the_matrix_to_say_so() -> None:
    with pytest.raises(ValidationError, match=r"at sigma 0.25 \(train_sigma\) and certified at sigma 0.5"):
        DenoisedSmoothingParams(sigma=0.5, train_sigma=0.25)
    allowed = DenoisedSmoothingParams(sigma=0.5, train_sigma=0.25, sigma_mismatch="allowed")
    assert (allowed.noise_sigma, allowed.sigma) == (0.25, 0.5)


def test_stab_trains_against_the_guides_own_label_and_classification_against_the_true_one() -> None:
    """Labels that are never the guide's answer: STAB's loss must not see them, classification's must."""
    data = images(32, 1)
    x = data.float_images()
    own = guide()(x).argmax(1)
    y = (own + 1) % 3
    noisy = x + 0.25 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    frontend = DenoisedSmoothing().build(params(), SHAPE).eval()
    ctx = JobContext(seed=0)
    with torch.no_grad():
        logits = guide()(frontend(noisy))
        stab, agree = DenoisedSmoothing.loss(frontend, guide(), x, noisy, y, "stab", ctx)
        clf, _ = DenoisedSmoothing.loss(frontend, guide(), x, noisy, y, "classification", ctx)
        tuned, _ = DenoisedSmoothing.loss(frontend, guide(), x, noisy, y, "stab+mse", ctx)
        mse, _ = DenoisedSmoothing.loss(frontend, guide(), x, noisy, y, "mse", ctx)
    assert torch.allclose(stab, F.cross_entropy(logits, own)) and torch.equal(tuned, stab)
    assert torch.allclose(clf, F.cross_entropy(logits, y)) and not torch.allclose(stab, clf)
    assert float(agree) == float((logits.argmax(1) == own).float().mean())
    assert torch.allclose(mse, F.mse_loss(frontend(noisy), x))


def objective_loss(frontend: DnCNN, objective: str) -> float:
    """The objective on a fixed noisy batch, the denoiser in training mode as in ``fit``."""
    data = images(64, 7)
    x, y = data.float_images(), data.labels
    noisy = x + 0.25 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4))
    frontend.train()
    with torch.no_grad():
        loss, _ = DenoisedSmoothing.loss(frontend, guide(), x, noisy, y, objective, JobContext(seed=0))
    return float(loss)


@pytest.mark.parametrize("objective", ["mse", "stab", "classification"])
def test_each_objective_falls_on_a_tiny_fit(objective: str) -> None:
    torch.manual_seed(1)
    before = objective_loss(DenoisedSmoothing().build(params(), SHAPE), objective)  # type: ignore[arg-type]
    trained, metrics = fit(JobContext(seed=0), [guide()], objective=objective, epochs=8)
    assert objective_loss(trained, objective) < 0.9 * before
    assert metrics["final_epoch_loss"] > 0
    assert ("final_epoch_train_agreement" in metrics) == (objective != "mse")


def test_stab_mse_fine_tunes_an_mse_denoiser_and_lowers_its_stab_loss() -> None:
    mse, _ = fit(JobContext(seed=0), [guide()], objective="mse", epochs=8)
    before = objective_loss(mse, "stab")
    tuned, _ = fit(JobContext(seed=0), [guide()], start=mse, objective="stab+mse", epochs=6)
    assert objective_loss(tuned, "stab") < 0.9 * before


def test_guides_take_turns_batch_by_batch_and_mse_runs_none() -> None:
    """Three steps an epoch for two epochs through two guides: 0, 1, 0 | 1, 0, 1 (the turn carries across
    epochs); each STAB step runs its guide twice (the clean label, then the denoised image)."""
    calls: list[int] = []
    guides = [guide(0), guide(1)]
    for i, g in enumerate(guides):
        g.register_forward_hook(lambda *_, i=i: calls.append(i))
    fit(JobContext(seed=0), guides, objective="stab")
    assert calls == [0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1]
    calls.clear()
    fit(JobContext(seed=0), guides, objective="mse")
    assert calls == []


def test_validation_metrics_come_from_the_held_out_images() -> None:
    _, metrics = fit(JobContext(seed=0), [guide(0), guide(1)], val=images(20, 5), objective="stab")
    assert metrics["val_mse"] > 0
    assert 0 <= metrics["val_noisy_accuracy"] <= 1 and 0 <= metrics["val_stability"] <= 1


@pytest.mark.parametrize("killed_after_steps", [1, 4])
def test_a_fit_killed_part_way_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, killed_after_steps: int
) -> None:
    settings: dict[str, Any] = {"objective": "stab", "epochs": 3, "lr_step": 1}
    expected, expected_metrics = fit(JobContext(seed=2), [guide(0), guide(1)], **settings)
    with pytest.raises(Killed):
        ctx = CountingContext(seed=2, checkpoints=Checkpoints(tmp_path), bar=Steps(killed_after_steps))
        fit(ctx, [guide(0), guide(1)], **settings)
    torch.manual_seed(999)
    resumed = CountingContext(seed=2, checkpoints=Checkpoints(tmp_path))
    weights, metrics = fit(resumed, [guide(0), guide(1)], **settings)
    assert resumed.bar.skipped == killed_after_steps // 3 * 3
    state, want = weights.state_dict(), expected.state_dict()
    assert all(torch.equal(state[k], want[k]) for k in want), "resumed weights differ"
    assert metrics["final_epoch_loss"] == expected_metrics["final_epoch_loss"]


def test_stab_mse_needs_an_mse_denoiser_to_start_from() -> None:
    defense, tune = DenoisedSmoothing(), params(objective="stab+mse")
    with pytest.raises(ConfigError, match="give init_from: the label of a denoised-smoothing entry with obj"):
        defense.check_init(tune, None, None)
    with pytest.raises(ConfigError, match="init_from names one trained with objective 'stab'"):
        defense.check_init(tune, "denoised-smoothing", params(objective="stab"))
    with pytest.raises(ConfigError, match="init_from names a aaa front-end"):
        defense.check_init(tune, "aaa", None)
    with pytest.raises(ConfigError, match="trained at sigma 0.5, this one at sigma 0.25"):
        defense.check_init(tune, "denoised-smoothing", params(objective="mse", sigma=0.5))
    defense.check_init(tune, "denoised-smoothing", params(objective="mse"))
    assert DenoisedSmoothing.init_objectives == {"stab+mse": "mse"}


def test_objectives_from_scratch_refuse_an_init() -> None:
    defense = DenoisedSmoothing()
    with pytest.raises(ConfigError, match="fine-tuning an mse denoiser is objective 'stab\\+mse'"):
        defense.check_init(params(objective="mse"), "denoised-smoothing", params(objective="mse"))
    with pytest.raises(ConfigError, match="objective 'stab' trains the denoiser from scratch"):
        defense.check_init(params(objective="stab"), "denoised-smoothing", params(objective="mse"))
    defense.check_init(params(objective="stab"), None, None)


def test_access_must_match_where_the_denoiser_is_evaluated() -> None:
    defense = DenoisedSmoothing()
    black, white = params(objective="stab", access="black-box"), params(objective="stab")
    with pytest.raises(ConfigError, match="R20 is among its surrogates \\(R20, R32\\), which is white-box"):
        defense.check_targets(black, ["R20", "R32"], ["R20"])
    defense.check_targets(black, ["R32", "R44"], ["R56"])
    with pytest.raises(ConfigError, match="R56 is not among its guides \\(R20\\), which is black-box"):
        defense.check_targets(white, ["R20"], ["R56"])
    defense.check_targets(white, ["R20"], ["R20"])
    mse = params(objective="mse", access="black-box")
    defense.check_targets(mse, ["R20"], ["R20"])  # an mse denoiser never saw a classifier


def test_the_checks_refuse_guides_that_do_not_fit_only_when_the_objective_uses_them() -> None:
    wide = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 3))
    with pytest.raises(ConfigError, match="cannot take the front-end's images"):
        DenoisedSmoothing().check(params(objective="stab"), SHAPE, [wide])
    DenoisedSmoothing().check(params(objective="mse"), SHAPE, [wide])


def matrix(access: str, **experiment: Any) -> dict[str, Any]:
    """The base MNIST matrix with a STAB denoiser of the given access, and ``A2``, an entry identical to
    ``A`` under another label."""
    raw = edit(
        defenses__ds={"kind": "denoised-smoothing", "params": {"objective": "stab", "access": access}},
        experiments=[{"defenses": ["ds"], **experiment}],
    )
    raw["classifiers"]["A2"] = dict(raw["classifiers"]["A"])
    return raw


def test_the_validator_refuses_a_black_box_denoiser_evaluated_on_a_surrogate(tmp_path: Path) -> None:
    found = problems(matrix("black-box", kind="native", guides=["A"]), tmp_path)
    assert "experiments[0].defenses[0]: defense 'ds' (denoised-smoothing), guides A: access 'black" in found
    assert "A is among its surrogates (A), which is white-box" in found
    aliased = problems(matrix("black-box", kind="cross-model", guides=["A"], targets=["A2", "C"]), tmp_path)
    assert "A is among its surrogates (A), which is white-box" in aliased
    assert aliased.endswith("(A2 is the same classifier as A)")
    white = problems(matrix("white-box", kind="cross-model", guides=["A"], targets=["C"]), tmp_path)
    assert "C is not among its guides (A), which is black-box: set access: black-box" in white
