"""The Robustifier: its defaults are the paper's, its hooks read the named guide layers, each batch trains
through one guide of an ensemble, a few steps lower its loss, early stopping keeps the best epoch, a killed
fit resumes bit for bit, and bad settings are refused with the names that are valid."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError
from torch import nn

import classifiers  # noqa: F401  (registers the zoo's architectures)
from bench.api import DEFENSES, Checkpoints, ConfigError, DatasetInfo, ImageData, JobContext, build_classifier
from defenses.guides import capture, guide_layers
from defenses.robustifier import Robustifier, RobustifierParams
from defenses.unet import UNet
from tests.interrupt import CountingContext, Killed, Steps

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (1, 8, 8)
#: A tiny U-Net (two levels on 8x8 images), two PGD steps, 96 images in batches of 32: three steps an epoch.
TINY: dict[str, Any] = {
    "scale": 1,
    "depth": 2,
    "epochs": 2,
    "batch_size": 32,
    "attack_steps": 2,
    "eps": 0.1,
    "attack_step": 0.05,
    "guide_layers": ["1", "3"],
}


def guide(seed: int = 0) -> nn.Module:
    """A small MLP whose hidden layers ("1", "3") stand in for a ResNet's stages."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))
    return net.eval().requires_grad_(False)


def images(n: int, seed: int) -> ImageData:
    x = torch.rand((n, *SHAPE), generator=torch.Generator().manual_seed(seed))
    info = DatasetInfo("tiny", 3, SHAPE, (0.5,), (0.5,), n, 0)
    return ImageData((x * 255).round().to(torch.uint8), guide()(x).argmax(1), f"tiny{seed}", info)


def fit(
    ctx: JobContext, guides: list[nn.Module] | None = None, val: ImageData | None = None, **overrides: Any
) -> tuple[UNet, dict[str, float]]:
    defense = Robustifier()
    params = RobustifierParams.model_validate({**TINY, **overrides})
    torch.manual_seed(1)
    frontend = defense.build(params, SHAPE)
    assert isinstance(frontend, UNet)
    metrics = defense.fit(frontend, guides or [guide()], images(96, 1), val, params, ctx)
    return frontend, metrics


def test_defaults_are_the_papers_best_setting() -> None:
    p = RobustifierParams()
    assert (p.alpha, p.beta, p.gamma) == (0.005, 15.0, 30.0)
    assert (p.norm, p.eps, p.attack_steps, p.attack_step) == ("linf", 0.031, 5, 0.008)
    assert (p.lr, p.warmup_fraction, p.momentum, p.weight_decay, p.epochs) == (0.005, 0.2, 0.9, 5e-4, 100)
    assert p.scale == 16 and p.guide_layers is None
    assert DEFENSES.get("robustifier") is Robustifier


def test_default_guide_layers_are_the_resnet_stages_and_hooks_capture_them() -> None:
    torch.manual_seed(0)
    net = build_classifier("resnet20", 10, (0.5,) * 3, (0.25,) * 3).eval()
    names = guide_layers(net, None, 0, 1)
    assert names == ["net.layer1", "net.layer2", "net.layer3"]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), capture(net, names) as taken:
        logits = net(x)
    shapes = {name: tuple(t[0].shape) for name, t in taken.items()}
    assert shapes == {
        "net.layer1": (2, 16, 32, 32),
        "net.layer2": (2, 32, 16, 16),
        "net.layer3": (2, 64, 8, 8),
    }
    with torch.no_grad():
        expected = net.net.layer3(net.net.layer2(net.net.layer1(torch.relu(net.net.bn1(net.net.conv1(
            (x - net.mean) / net.std
        ))))))
    assert torch.equal(taken["net.layer3"][0], expected)
    # The final linear layer is named explicitly; its output is the logits.
    with torch.no_grad(), capture(net, ["net.linear"]) as taken:
        net(x)
    assert torch.equal(taken["net.linear"][0], logits)
    assert not net.net.layer1._forward_hooks, "hooks are removed when the block ends"


def test_the_check_accepts_the_paper_setting_on_a_cifar_resnet() -> None:
    net = build_classifier("resnet20", 10, (0.5,) * 3, (0.25,) * 3)
    Robustifier().check(RobustifierParams(), (3, 32, 32), [net, copy.deepcopy(net)])


def test_an_unknown_guide_layer_is_refused_with_the_valid_names() -> None:
    net = build_classifier("resnet20", 10, (0.5,) * 3, (0.25,) * 3)
    params = RobustifierParams(guide_layers=["net.layer1", "net.layr2"])
    with pytest.raises(ConfigError, match="'net.layr2'") as err:
        Robustifier().check(params, (3, 32, 32), [net])
    assert "did you mean 'net.layer2'" in str(err.value) and "net.linear" in str(err.value)
    with pytest.raises(ConfigError, match="no ResNet stages") as err:
        Robustifier().check(RobustifierParams(depth=3), SHAPE, [guide()])
    assert "valid: 0, 1, 2, 3" in str(err.value)


def test_guides_of_different_input_shapes_or_class_counts_are_refused() -> None:
    params = RobustifierParams.model_validate({**TINY})
    wide = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 16), nn.ReLU(), nn.Linear(16, 3))
    with pytest.raises(ConfigError, match=r"guide 2 of 2 cannot take the front-end's images of shape \(1, 8"):
        Robustifier().check(params, SHAPE, [guide(), wide])
    other_classes = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 5))
    with pytest.raises(ConfigError, match=r"different numbers of classes \(3, 5\)"):
        Robustifier().check(params, SHAPE, [guide(), other_classes])


def test_a_depth_the_input_cannot_halve_is_refused_by_the_check_and_the_build() -> None:
    params = RobustifierParams.model_validate({**TINY, "depth": 4})
    with pytest.raises(ConfigError, match="28 -> 14 -> 7 -> 3 -> 1"):
        Robustifier().check(params, (1, 28, 28), [])
    with pytest.raises(ConfigError, match="28 -> 14 -> 7 -> 3 -> 1"):
        Robustifier().build(params, (1, 28, 28))


@pytest.mark.parametrize("weight", ["alpha", "beta", "gamma"])
def test_a_negative_loss_weight_is_refused(weight: str) -> None:
    with pytest.raises(ValidationError, match=f"{weight}\n.*greater than or equal to 0"):
        RobustifierParams.model_validate({weight: -1.0})


def test_each_batch_trains_through_one_guide_of_the_ensemble() -> None:
    """Every step runs PGD (2 passes) and the loss (clean activations, robustified) through one guide only;
    over several steps both guides are drawn."""
    calls: list[int] = []
    guides = [guide(0), guide(1)]
    for i, g in enumerate(guides):
        g.register_forward_hook(lambda *_, i=i: calls.append(i))
    fit(JobContext(seed=0), guides, epochs=3)
    per_step = TINY["attack_steps"] + 2
    assert len(calls) == 9 * per_step
    chunks = [calls[k : k + per_step] for k in range(0, len(calls), per_step)]
    assert all(len(set(c)) == 1 for c in chunks), "a step mixed guides"
    assert {c[0] for c in chunks} == {0, 1}, "the draw never picked one of the guides"


def test_a_few_steps_lower_the_training_loss() -> None:
    data = images(96, 1)
    params = RobustifierParams.model_validate(TINY)
    x, y = data.float_images()[:32], data.labels[:32]
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    x_adv = (x + 0.1 * torch.sign(noise)).clamp(0, 1)
    ctx = JobContext(seed=0)

    def loss(frontend: UNet) -> float:
        frontend.train()
        with torch.no_grad():
            terms, _ = Robustifier._loss_terms(frontend, guide(), ["1", "3"], x, x_adv, y, ctx)
        weights = torch.tensor([params.alpha, params.beta, params.gamma])
        return float((weights * terms).sum())

    torch.manual_seed(1)
    before = loss(Robustifier().build(params, SHAPE))  # type: ignore[arg-type]
    trained, metrics = fit(ctx, epochs=6, lr=0.05)
    assert loss(trained) < 0.75 * before
    assert 0 <= metrics["final_epoch_train_adv_accuracy"] <= 1 and metrics["epochs_run"] == 6


def test_early_stopping_keeps_the_best_epoch(tmp_path: Path) -> None:
    """A guide that always answers class 0 gives the same validation score every epoch: the first epoch is
    the best, and training stops ``patience`` epochs later, back at the first epoch's weights (those the
    checkpoint after the first epoch of an identical run holds)."""
    constant = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    with torch.no_grad():
        for p in constant.parameters():
            p.zero_()
        constant[3].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    constant.requires_grad_(False)
    settings: dict[str, Any] = {"val": images(20, 5), "epochs": 6, "patience": 2}
    frontend, metrics = fit(JobContext(seed=0), [constant], **settings)
    assert metrics["epochs_run"] == 3 and metrics["best_epoch"] == 1
    assert set(metrics) >= {"val_clean_accuracy", "val_adv_accuracy"}
    with pytest.raises(Killed):  # killed on the first step of the second epoch
        fit(CountingContext(seed=0, checkpoints=Checkpoints(tmp_path), bar=Steps(3)), [constant], **settings)
    found = Checkpoints(tmp_path).load()
    assert found is not None and found.epoch == 1
    first = found.state["parts"]["frontend"]
    assert all(torch.equal(v, first[k]) for k, v in frontend.state_dict().items())


@pytest.mark.parametrize("killed_after_steps", [1, 7])
def test_a_fit_killed_part_way_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, killed_after_steps: int
) -> None:
    """With validation images, so early stopping's bookkeeping (best weights, score, patience) is resumed
    too; three epochs of three steps."""
    val = images(20, 5)
    expected, expected_metrics = fit(JobContext(seed=2), [guide(0), guide(1)], val=val, epochs=3, patience=2)
    assert expected_metrics["epochs_run"] == 3, "stopped before the kill; the test would not resume anything"
    with pytest.raises(Killed):
        fit(
            CountingContext(seed=2, checkpoints=Checkpoints(tmp_path), bar=Steps(killed_after_steps)),
            [guide(0), guide(1)],
            val=val,
            epochs=3,
            patience=2,
        )
    torch.manual_seed(999)
    resumed = CountingContext(seed=2, checkpoints=Checkpoints(tmp_path))
    weights, metrics = fit(resumed, [guide(0), guide(1)], val=val, epochs=3, patience=2)
    done = killed_after_steps // 3 * 3
    assert resumed.bar.skipped == done
    state, want = weights.state_dict(), expected.state_dict()
    assert all(torch.equal(state[k], want[k]) for k in want), "resumed weights differ"
    assert {k: v for k, v in metrics.items() if "wall" not in k} == {
        k: v for k, v in expected_metrics.items() if "wall" not in k
    }


def test_warm_up_epochs_come_first_and_are_not_counted_as_adversarial_epochs(tmp_path: Path) -> None:
    """Killed in the middle of the warm-up (the second step of two warm-up epochs of three steps), the fit
    resumes to the uninterrupted weights; ``epochs_run`` counts adversarial epochs only."""
    settings: dict[str, Any] = {"warmup_epochs": 2, "epochs": 1}
    expected, expected_metrics = fit(JobContext(seed=2), **settings)
    assert expected_metrics["epochs_run"] == 1
    with pytest.raises(Killed):
        fit(CountingContext(seed=2, checkpoints=Checkpoints(tmp_path), bar=Steps(4)), **settings)
    resumed = CountingContext(seed=2, checkpoints=Checkpoints(tmp_path))
    weights, _ = fit(resumed, **settings)
    assert resumed.bar.skipped == 3 and resumed.bar.run == 6
    state, want = weights.state_dict(), expected.state_dict()
    assert all(torch.equal(state[k], want[k]) for k in want), "resumed weights differ"
    cold, _ = fit(JobContext(seed=2), epochs=1)
    assert not all(torch.equal(cold.state_dict()[k], want[k]) for k in want), "the warm-up changed nothing"
