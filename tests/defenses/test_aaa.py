"""AAA's paper options: the three losses, the settings each choice owns, one guide per batch, the plateau
schedule (and its resume), and the job key of the reference rows."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import defenses.aaa as aaa
from bench.api import Checkpoints, ConfigError, DatasetInfo, ImageData, JobContext
from defenses.aaa import AAA, AAAParams, ConvAutoencoder, training_loss, validate
from defenses.unet import BoundedUNet
from tests.interrupt import CountingContext, Killed, Steps

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)
#: 96 images in batches of 32: three steps per epoch.
TINY: dict[str, Any] = {"epochs": 2, "warmup_epochs": 0, "width": 4, "attack_steps": 2, "batch_size": 32}
#: examples/quick.yaml's AAA entry and the dump its reference rows' job key was computed from.
QUICK = {"epochs": 2, "batch_size": 64, "width": 8, "eps": 0.3, "attack_steps": 5, "attack_rel_step": 0.3}
QUICK_DUMP = {
    "attack_rel_step": 0.3,
    "attack_steps": 5,
    "batch_size": 64,
    "epochs": 2,
    "eps": 0.3,
    "eps_ramp_epochs": 1.0,
    "lr": 0.001,
    "norm": "linf",
    "recon_weight": 1.0,
    "warmup_epochs": 1,
    "width": 8,
}


def guide(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval().requires_grad_(False)


def images(n: int, seed: int) -> ImageData:
    x = torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed))
    info = DatasetInfo("tiny", 3, SHAPE, (0.5,), (0.5,), n, 0)
    return ImageData((x * 255).round().to(torch.uint8), guide()(x).argmax(1), f"tiny{seed}", info)


def params(**changes: Any) -> AAAParams:
    return AAAParams.model_validate({**TINY, **changes})


def fit(
    p: AAAParams, ctx: JobContext, guides: list[nn.Module] | None = None, val: ImageData | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    defense = AAA()
    torch.manual_seed(1)
    frontend = defense.build(p, SHAPE)
    metrics = defense.fit(frontend, guides or [guide(0), guide(1)], images(96, 1), val, p, ctx)
    return copy.deepcopy(frontend.state_dict()), metrics


def test_the_reference_rows_keep_their_job_key() -> None:
    """Every option added since keeps its old behaviour by default and stays out of the dump."""
    assert AAAParams.model_validate(QUICK).model_dump(mode="json") == QUICK_DUMP


def test_each_loss_is_its_terms() -> None:
    ce, mse = torch.tensor(1.5), torch.tensor(0.25)
    assert float(training_loss(params(loss="xent"), ce, mse)) == 1.5
    assert float(training_loss(params(loss="mse"), ce, mse)) == 0.25
    assert float(training_loss(params(loss="xent+mse", recon_weight=4.0), ce, mse)) == 2.5


def test_validation_loss_is_the_chosen_loss_on_the_same_adversarial_images() -> None:
    """Draws restart per call, so the three losses are scored on one set of PGD examples."""
    frontend = ConvAutoencoder(1, 4).eval()
    val, guides, ctx = images(40, 7), [guide(0), guide(1)], JobContext(seed=3)
    xent = validate(frontend, guides, val, params(loss="xent"), ctx)["val_loss"]
    mse = validate(frontend, guides, val, params(loss="mse"), ctx)["val_loss"]
    both = validate(frontend, guides, val, params(loss="xent+mse", recon_weight=3.0), ctx)["val_loss"]
    assert both == pytest.approx(xent + 3.0 * mse, rel=1e-5)
    assert xent > 0 and 0 < mse < 1


def test_reconstruction_loss_reconstructs_and_cross_entropy_alone_does_not() -> None:
    val = images(40, 7)
    _, by_mse = fit(params(loss="mse", epochs=4, lr=1e-2), JobContext(seed=2), val=val)
    _, by_xent = fit(params(loss="xent", epochs=4, lr=1e-2), JobContext(seed=2), val=val)
    assert by_mse["val_mse"] < 0.75 * by_xent["val_mse"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loss": "xent", "recon_weight": 1.0}, "loss 'xent' has none"),
        ({"loss": "mse", "recon_weight": 2.0}, "loss 'mse' is that term alone"),
        ({"loss": "xent+mse", "recon_weight": 0.0}, "which is loss: xent"),
        ({"arch": "unet", "width": 8}, "width sizes the conv autoencoder"),
        ({"arch": "conv", "scale": 4}, "scale: U-Net settings"),
        ({"attack_step": 0.01, "attack_rel_step": 0.2}, "not both"),
        ({"attack_step": None}, "give attack_step"),
    ],
)
def test_a_setting_of_another_choice_is_an_error(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AAAParams.model_validate(changes)


def test_settings_that_do_not_apply_are_absent() -> None:
    unet = AAAParams.model_validate({"arch": "unet"})
    assert (unet.width, unet.scale, unet.depth) == (None, 8, 4)
    dump = unet.model_dump(mode="json")
    assert "width" not in dump and dump["arch"] == "unet"
    assert "recon_weight" not in AAAParams.model_validate({"loss": "mse"}).model_dump(mode="json")
    for p in (unet, AAAParams.model_validate({"loss": "xent", "attack_rel_step": 0.25})):
        assert AAAParams.model_validate(p.model_dump(mode="json")) == p, "a dump validates to its params"


def test_unet_reuses_the_shared_module_and_is_checked_against_the_input() -> None:
    p = AAAParams.model_validate({"arch": "unet", "scale": 1, "depth": 2})
    frontend = AAA().build(p, (3, 32, 32))
    assert isinstance(frontend, BoundedUNet)
    with pytest.raises(ConfigError, match="depth"):
        AAA().check(AAAParams.model_validate({"arch": "unet"}), (1, 28, 28), [])


def test_a_training_radius_beyond_the_image_box_is_an_error() -> None:
    with pytest.raises(ConfigError, match="above the largest linf radius"):
        AAA().check(AAAParams.model_validate({"eps": 1.5}), SHAPE, [guide()])
    AAA().check(AAAParams.model_validate({"norm": "l2", "eps": 1.5}), SHAPE, [guide()])


class Recording(nn.Module):
    """A guide that logs its index on every forward pass."""

    def __init__(self, inner: nn.Module, index: int, log: list[int]) -> None:
        super().__init__()
        self.inner, self.index, self.log = inner, index, log

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.index)
        out: torch.Tensor = self.inner(x)
        return out


def test_each_batch_attacks_and_trains_through_one_guide_drawn_at_random() -> None:
    log: list[int] = []
    guides: list[nn.Module] = [Recording(guide(i), i, log) for i in range(3)]
    p = params(epochs=4, attack_steps=3)
    fit(p, JobContext(seed=2), guides=guides)
    per_batch = p.attack_steps + 1  # the PGD steps, then the training step
    batches = [log[i : i + per_batch] for i in range(0, len(log), per_batch)]
    assert len(batches) == 4 * 3 and len(log) == len(batches) * per_batch
    assert all(len(set(b)) == 1 for b in batches), "a batch switched guides"
    assert {b[0] for b in batches} == {0, 1, 2}, "every guide is drawn"


def test_plateau_settings_without_validation_images_are_an_error() -> None:
    with pytest.raises(ConfigError, match="n_val"):
        fit(params(lr_patience=3), JobContext(seed=2))


class ScriptedValidation:
    """Stands in for :func:`validate`: the i-th epoch's validation loss is ``losses[i]``."""

    def __init__(self, losses: list[float], done: int = 0) -> None:
        self.losses, self.calls = losses, done

    def __call__(self, *args: Any) -> dict[str, float]:
        loss = self.losses[self.calls]
        self.calls += 1
        return {"val_loss": loss, "val_adv_accuracy": 0.5}


#: Best, best, then two epochs without improvement (a cut at patience 2), two more (the second cut).
LOSSES = [1.0, 0.9, 0.95, 0.97, 0.92, 0.99, 0.5, 0.5]
PLATEAU = {"epochs": 8, "lr_patience": 2, "lr_factor": 0.5, "max_lr_reductions": 2}


def test_the_rate_drops_after_patience_epochs_without_improvement_and_training_stops_at_the_last_cut(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rates: list[float] = []
    step = torch.optim.Adam.step

    def recording_step(self: torch.optim.Adam, *args: Any, **kwargs: Any) -> Any:
        rates.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(aaa, "validate", ScriptedValidation(LOSSES))
    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    _, metrics = fit(params(**PLATEAU), JobContext(seed=2), val=images(8, 7))
    assert metrics["epochs_run"] == 6 and metrics["lr_reductions"] == 2
    per_epoch = [rates[i * 3] for i in range(6)]
    assert per_epoch == [1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4]


@pytest.mark.parametrize("killed_after_steps", [4, 13])
def test_a_fit_with_the_plateau_schedule_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_after_steps: int
) -> None:
    val = images(8, 7)
    monkeypatch.setattr(aaa, "validate", ScriptedValidation(LOSSES))
    expected, expected_metrics = fit(params(**PLATEAU), JobContext(seed=2), val=val)
    monkeypatch.setattr(aaa, "validate", ScriptedValidation(LOSSES))
    killed = CountingContext(seed=2, checkpoints=Checkpoints(tmp_path), bar=Steps(killed_after_steps))
    with pytest.raises(Killed):
        fit(params(**PLATEAU), killed, val=val)
    done = killed_after_steps // 3
    monkeypatch.setattr(aaa, "validate", ScriptedValidation(LOSSES, done=done))
    torch.manual_seed(999)
    resumed = CountingContext(seed=2, checkpoints=Checkpoints(tmp_path))
    weights, metrics = fit(params(**PLATEAU), resumed, val=val)
    assert resumed.bar.skipped == done * 3, "resumed after the last whole epoch"
    assert all(torch.equal(weights[k], expected[k]) for k in expected), "resumed weights differ"
    assert {k: v for k, v in metrics.items() if "wall" not in k} == {
        k: v for k, v in expected_metrics.items() if "wall" not in k
    }
