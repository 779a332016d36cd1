"""Training recipes: seeded determinism on CPU, the on-device crop/flip augmentation, the CIFAR optimizer and
schedules, a short real MNIST fit that must clear 90% test accuracy, adversarial training that buys
robustness, and Gaussian noise training that leaves the job keys of noiseless recipes as they were."""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

import classifiers  # noqa: F401  (registers the built-in architectures and recipes)
from bench.api import (
    DATASETS,
    RECIPES,
    Checkpoints,
    Classifier,
    ImageData,
    JobContext,
    Recipe,
    RecipeParams,
    Threat,
    build_classifier,
    step_direction,
)
from bench.config import Normalization
from bench.data.sources import SPLITS  # noqa: F401  (importing it registers the built-in datasets)
from bench.data.splits import eval_subset, train_split
from bench.jobs.configs import TrainedClassifier
from classifiers.training import (
    CifarParams,
    CifarRecipe,
    MadryATParams,
    MadryATRecipe,
    MnistParams,
    MnistRecipe,
    random_crop_flip,
)
from tests.interrupt import CountingContext, Killed, Steps

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mnist(data_dir: Path) -> tuple[ImageData, ImageData]:
    source = DATASETS.get("mnist")
    return source.load(data_dir, "train", download=False), source.load(data_dir, "test", download=False)


def _tiny_dropout_bn() -> Classifier:
    """BatchNorm and dropout: state and randomness beyond the shuffle order that a seed must pin down."""
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, stride=2),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(4 * 13 * 13, 10),
    )
    return Classifier(net, MNIST_MEAN, MNIST_STD)


def _fit(
    init: nn.Module, recipe: Recipe, params: RecipeParams, data: ImageData, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    model = copy.deepcopy(init)
    metrics = recipe.fit(model, data, params, JobContext(seed=seed))
    return model.state_dict(), metrics


@pytest.mark.parametrize(
    "case", ["mnist/mnist-c", "mnist/tiny-dropout-bn", "cifar/tiny-dropout-bn", "madry-at/tiny-dropout-bn"]
)
def test_fit_is_bit_identical_for_a_seed_and_differs_across_seeds(
    case: str, mnist: tuple[ImageData, ImageData]
) -> None:
    recipe_name, arch = case.split("/")
    train, _ = train_split(mnist[0], n_train=512, n_val=0)
    torch.manual_seed(123)
    init = (
        _tiny_dropout_bn() if arch == "tiny-dropout-bn" else build_classifier(arch, 10, MNIST_MEAN, MNIST_STD)
    )
    recipe = RECIPES.get(recipe_name)()
    # 512 images in batches of 32 for two epochs: 32 optimizer steps.
    params = recipe.Params.model_validate({"epochs": 2, "batch_size": 32})

    first, metrics = _fit(init, recipe, params, train, seed=0)
    again, _ = _fit(init, recipe, params, train, seed=0)
    other, _ = _fit(init, recipe, params, train, seed=1)

    assert first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[k], again[k]) for k in first), "same seed, different weights"
    assert any(not torch.equal(first[k], other[k]) for k in first), "the seed does not reach training"
    start = init.state_dict()
    assert any(not torch.equal(first[k], start[k]) for k in first), "training changed nothing"
    assert set(metrics) >= {"train_wall_s", "train_images_per_s", "final_epoch_loss"}
    assert metrics["final_epoch_loss"] == metrics["final_epoch_loss"] > 0  # finite, not NaN


@pytest.mark.parametrize("recipe_name", ["mnist", "cifar", "madry-at"])
def test_a_fit_killed_mid_epoch_resumes_to_the_uninterrupted_weights(
    recipe_name: str, mnist: tuple[ImageData, ImageData], tmp_path: Path
) -> None:
    """The built-in optimizers and schedules (Adam + cosine, SGD + one-cycle, SGD + steps) and crop/flip
    augmentation, and adversarial training's attack."""
    train, _ = train_split(mnist[0], n_train=256, n_val=0)
    torch.manual_seed(123)
    init = _tiny_dropout_bn()
    recipe = RECIPES.get(recipe_name)()
    params = recipe.Params.model_validate({"epochs": 3, "batch_size": 64})  # 4 steps per epoch
    expected, expected_metrics = _fit(init, recipe, params, train, seed=0)

    killed = CountingContext(seed=0, checkpoints=Checkpoints(tmp_path), bar=Steps(kill_after=6))
    with pytest.raises(Killed):
        recipe.fit(copy.deepcopy(init), train, params, killed)
    model = copy.deepcopy(init)
    metrics = recipe.fit(model, train, params, JobContext(seed=0, checkpoints=Checkpoints(tmp_path)))
    weights = model.state_dict()
    assert all(torch.equal(weights[k], expected[k]) for k in expected), "resumed weights differ"
    assert metrics["final_epoch_loss"] == expected_metrics["final_epoch_loss"]


# ----------------------------------------------------------------------------------- random_crop_flip


def _distinct_images(n: int, c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Values in [0.5, 1): almost surely distinct, and never equal to the zero padding."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g) * 0.5 + 0.5


def test_crop_flip_without_padding_only_flips_about_half() -> None:
    x = _distinct_images(1000, 3, 8, 8)
    out = random_crop_flip(x, 0, torch.Generator().manual_seed(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(3)).flatten(1).all(1)
    # Every row is the input or its horizontal (not vertical) mirror, so its pixels are the input's.
    assert bool((same ^ flipped).all())
    assert torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    assert 0.4 < flipped.float().mean().item() < 0.6


def test_crop_flip_takes_each_row_from_one_crop_of_the_padded_input() -> None:
    n, c, h, w, pad = 2000, 3, 8, 8, 4
    x = _distinct_images(n, c, h, w)
    out = random_crop_flip(x, pad, torch.Generator().manual_seed(2))
    assert out.shape == x.shape and out.dtype == x.dtype

    # Every h x w window of the zero-padded input: (n, c, 2p+1, 2p+1, h, w), indexed by (top, left).
    windows = torch.nn.functional.pad(x, (pad,) * 4).unfold(2, h, 1).unfold(3, w, 1)
    k = 2 * pad + 1
    plain = (windows == out[:, :, None, None]).permute(0, 2, 3, 1, 4, 5).reshape(n, k, k, -1).all(-1)
    mirror = (windows == out.flip(3)[:, :, None, None]).permute(0, 2, 3, 1, 4, 5).reshape(n, k, k, -1).all(-1)
    matches = torch.stack([plain, mirror], dim=1)  # (n, flip, top, left)
    # Exactly one (flip, top, left) explains each output row, with all channels cropped alike.
    assert torch.equal(matches.flatten(1).sum(1), torch.ones(n, dtype=torch.long))

    per_offset = matches.sum(dim=(0, 1))  # how often each (top, left) was drawn
    assert bool((per_offset > 0).all()), "some crop offsets never occur"
    assert 0.4 < matches[:, 1].flatten(1).any(1).float().mean().item() < 0.6
    # The unpadded centre crop is one of 81 offsets, not a default.
    assert per_offset[pad, pad].item() < 0.05 * n


def test_crop_without_flip_never_mirrors() -> None:
    x = _distinct_images(500, 1, 8, 8)
    out = random_crop_flip(x, 0, torch.Generator().manual_seed(1), flip=False)
    assert torch.equal(out, x)


def test_crop_flip_is_a_function_of_the_generator() -> None:
    x = _distinct_images(64, 3, 32, 32)
    a = random_crop_flip(x, 4, torch.Generator().manual_seed(7))
    b = random_crop_flip(x, 4, torch.Generator().manual_seed(7))
    c = random_crop_flip(x, 4, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --------------------------------------------------------------------------------- optimizers, schedules


def _lrs(
    opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler | None, steps: int
) -> list[float]:
    """The learning rate each of ``steps`` training steps uses, stepping exactly as ``Recipe.fit`` does."""
    assert sched is not None
    lrs = []
    for _ in range(steps):
        lrs.append(float(opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()
    return lrs


def test_cifar_onecycle_is_nesterov_sgd_sized_to_the_run() -> None:
    params = CifarParams(epochs=4, lr=0.1)
    opt, sched = CifarRecipe().make_optimizer(nn.Linear(4, 2), params, steps_per_epoch=25)
    assert isinstance(opt, torch.optim.SGD)
    assert isinstance(sched, torch.optim.lr_scheduler.OneCycleLR)
    group = opt.param_groups[0]
    assert group["nesterov"] is True and group["weight_decay"] == pytest.approx(5e-4)

    total = 4 * 25
    lrs = _lrs(opt, sched, total)  # exactly fit's number of scheduler steps: no "stepped too often" error
    peak = max(range(total), key=lambda i: lrs[i])
    assert lrs[0] == pytest.approx(0.1 / 25)  # OneCycleLR's default div_factor
    assert lrs[peak] == pytest.approx(0.1)
    assert peak == round(0.15 * total) - 1  # warm-up over the first 15% of the run
    assert lrs[-1] < 1e-3 * 0.1
    with pytest.raises(ValueError):  # one step past the run: the schedule was sized to epochs x steps
        opt.step()
        sched.step()


def test_cifar_cosine_decays_from_lr_to_zero() -> None:
    params = CifarParams(epochs=2, lr=0.05, schedule="cosine", momentum=0.8, weight_decay=1e-4)
    opt, sched = CifarRecipe().make_optimizer(nn.Linear(4, 2), params, steps_per_epoch=50)
    assert isinstance(opt, torch.optim.SGD)
    assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR)
    group = opt.param_groups[0]
    assert group["nesterov"] is True
    assert group["momentum"] == pytest.approx(0.8) and group["weight_decay"] == pytest.approx(1e-4)
    lrs = _lrs(opt, sched, 100)
    assert lrs[0] == pytest.approx(0.05)
    assert lrs[50] == pytest.approx(0.025)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(0.0, abs=1e-12)


def test_cifar_without_momentum_is_plain_sgd() -> None:
    # torch refuses Nesterov without momentum; the recipe must not ask for it.
    opt, _ = CifarRecipe().make_optimizer(nn.Linear(4, 2), CifarParams(epochs=1, momentum=0.0), 10)
    assert opt.param_groups[0]["nesterov"] is False


def test_mnist_recipe_is_adam_with_cosine_decay() -> None:
    opt, sched = MnistRecipe().make_optimizer(nn.Linear(4, 2), MnistParams(epochs=1), steps_per_epoch=10)
    assert isinstance(opt, torch.optim.Adam)
    lrs = _lrs(opt, sched, 10)
    assert lrs[0] == pytest.approx(1e-3) and lrs[5] == pytest.approx(5e-4)


# ------------------------------------------------------------------------------------------ a real fit


def test_mnist_recipe_trains_mnist_c_past_90_percent(mnist: tuple[ImageData, ImageData]) -> None:
    train, _ = train_split(mnist[0], n_train=12_800, n_val=0)
    test = eval_subset(mnist[1], 1000, seed=0)
    ctx = JobContext(seed=0)
    ctx.seed_everything()
    model = build_classifier("mnist-c", 10, MNIST_MEAN, MNIST_STD)
    # 100 steps per epoch x 3 epochs = 300 Adam steps.
    MnistRecipe().fit(model, train, MnistParams(epochs=3, batch_size=128), ctx)
    model.eval()
    with torch.no_grad():
        acc = sum(int((model(x).argmax(1) == y).sum()) for x, y in test.batches(500)) / len(test)
    assert acc > 0.90, f"mnist-c reached only {acc:.3f} on 1000 test images"


# ------------------------------------------------------------------ the GPU-only settings, run on the CPU


@pytest.mark.parametrize("arch, channels", [("resnet20", 3), ("mnist-a", 1)])
def test_bf16_autocast_and_channels_last_train_and_leave_an_fp32_model(arch: str, channels: int) -> None:
    """The settings CUDA runs use by default, forced on here, so their code path runs without a GPU."""
    g = torch.Generator().manual_seed(0)
    side = 32 if channels == 3 else 28
    images = (torch.rand(64, channels, side, side, generator=g) * 255).to(torch.uint8)
    info = DATASETS.get("cifar10" if channels == 3 else "mnist").info
    data = ImageData(images, torch.randint(0, 10, (64,), generator=g), "synthetic", info)
    torch.manual_seed(0)
    model = build_classifier(arch, 10, info.mean, info.std)
    before = copy.deepcopy(model.state_dict())
    recipe = RECIPES.get("cifar" if channels == 3 else "mnist")()
    params = recipe.Params.model_validate({"epochs": 1, "batch_size": 32})
    ctx = JobContext(mixed_precision=True, channels_last=True)
    metrics = recipe.fit(model, data, params, ctx)
    assert metrics["final_epoch_loss"] == metrics["final_epoch_loss"] > 0
    after = model.state_dict()
    assert all(v.dtype == before[k].dtype for k, v in after.items()), "autocast must not change weight dtypes"
    assert any(not torch.equal(after[k], before[k]) for k in after)
    with torch.no_grad():
        logits = model(data.float_images()[:4])
    assert logits.dtype == torch.float32 and bool(torch.isfinite(logits).all())


@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile needs a C compiler on the CPU")
def test_compiled_training_matches_eager_closely(mnist: tuple[ImageData, ImageData]) -> None:
    """``compile: true`` trains the same module (weights shared with the compiled wrapper), to float noise."""
    train, _ = train_split(mnist[0], n_train=256, n_val=0)
    torch.manual_seed(0)
    init = build_classifier("mnist-c", 10, MNIST_MEAN, MNIST_STD)
    recipe = MnistRecipe()
    eager, _ = _fit(init, recipe, MnistParams(epochs=1, batch_size=64), train, seed=0)
    compiled, _ = _fit(init, recipe, MnistParams(epochs=1, batch_size=64, compile=True), train, seed=0)
    for k in eager:
        torch.testing.assert_close(compiled[k], eager[k], rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------------- adversarial training


def test_madry_at_defaults_are_the_cifar_setting_and_its_schedule_steps_down_twice() -> None:
    p = MadryATParams()
    assert (p.norm, p.eps, p.attack_steps, p.attack_step) == ("linf", 8 / 255, 7, 2 / 255)
    assert (p.lr, p.momentum, p.weight_decay, p.batch_size) == (0.1, 0.9, 2e-4, 128)
    assert MadryATRecipe.full_scale_epochs == p.epochs == 205  # 80k steps of 128 CIFAR-10 images
    opt, sched = MadryATRecipe().make_optimizer(nn.Linear(4, 2), MadryATParams(epochs=4), steps_per_epoch=25)
    assert opt.param_groups[0]["nesterov"] is False
    lrs = _lrs(opt, sched, 100)
    assert lrs[0] == lrs[49] == pytest.approx(0.1)
    assert lrs[50] == lrs[74] == pytest.approx(0.01) and lrs[75] == lrs[99] == pytest.approx(0.001)


def _robust_accuracy(model: nn.Module, data: ImageData, eps: float) -> float:
    """Accuracy under 10 steps of Linf PGD (no random start), the model in eval mode."""
    model.eval()
    x, y = data.float_images(), data.labels
    threat, adv = Threat("linf", eps), x.clone()
    for _ in range(10):
        adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(model(adv), y), adv)
        adv = threat.project(x, adv.detach() + eps / 4 * step_direction(grad, threat))
    with torch.no_grad():
        return float((model(adv).argmax(1) == y).float().mean())


def test_adversarial_training_buys_robustness_plain_training_does_not(
    mnist: tuple[ImageData, ImageData],
) -> None:
    """The same recipe, optimizer and steps (64 of them, on 2048 MNIST images), with a 0.2 training radius or
    a vanishing one: PGD at 0.2 leaves the adversarially trained mnist-c several times more accurate."""
    train, _ = train_split(mnist[0], n_train=2048, n_val=0)
    test = eval_subset(mnist[1], 500, seed=0)
    accuracy = {}
    for eps in (1e-6, 0.2):
        torch.manual_seed(0)
        model = build_classifier("mnist-c", 10, MNIST_MEAN, MNIST_STD)
        params = MadryATParams(
            epochs=2, batch_size=64, lr=0.05, eps=eps, attack_steps=5, attack_step=eps / 2.5, crop_padding=0,
            flip=False,
        )
        MadryATRecipe().fit(model, train, params, JobContext(seed=0))
        accuracy[eps] = _robust_accuracy(model, test, 0.2)
    assert accuracy[1e-6] < 0.05 and accuracy[0.2] > 3 * max(accuracy[1e-6], 0.02), accuracy


def test_the_attack_leaves_the_running_statistics_to_the_training_step() -> None:
    """In train mode (batch statistics, as Madry et al. attacked) but with BatchNorm's running statistics put
    back, so only the step on the adversarial batch moves them."""
    torch.manual_seed(0)
    model = _tiny_dropout_bn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    adv = MadryATRecipe().train_inputs(model, x, y, MadryATParams(), torch.Generator().manual_seed(0))
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert (adv - x).abs().max() <= 8 / 255 + 1e-6 and not torch.equal(adv, x)
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1


# ------------------------------------------------------------------- Gaussian noise training (Cohen et al.)


def _inputs_seen(params: MnistParams, data: ImageData) -> torch.Tensor:
    """Every batch the model was called on in one fit, in pixel space (before its own normalization)."""
    torch.manual_seed(0)
    model = _tiny_dropout_bn()
    seen: list[torch.Tensor] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    MnistRecipe().fit(model, data, params, JobContext(seed=0))
    return torch.cat(seen)


def test_noise_training_feeds_the_model_unclamped_pixel_noise_of_sigma(
    mnist: tuple[ImageData, ImageData],
) -> None:
    """One step on 16 images: the same seed shuffles alike, so the noisy batch minus the clean one is the
    noise itself, N(0, σ²) in pixel units, and it leaves [0,1] (Cohen et al. do not clamp)."""
    train, _ = train_split(mnist[0], n_train=16, n_val=0)
    clean = _inputs_seen(MnistParams(epochs=1, batch_size=16), train)
    noisy = _inputs_seen(MnistParams(epochs=1, batch_size=16, noise_sigma=0.5), train)
    assert clean.shape == noisy.shape == (16, 1, 28, 28)
    assert float(clean.min()) >= 0 and float(clean.max()) <= 1
    noise = noisy - clean
    assert abs(float(noise.mean())) < 0.03 and float(noise.std()) == pytest.approx(0.5, rel=0.05)
    assert float(noisy.min()) < -0.5 and float(noisy.max()) > 1.5


def test_noise_training_resumes_to_the_uninterrupted_weights(
    mnist: tuple[ImageData, ImageData], tmp_path: Path
) -> None:
    """The noise comes from the loop's checkpointed stream, so a killed run redraws what it would have."""
    train, _ = train_split(mnist[0], n_train=256, n_val=0)
    torch.manual_seed(123)
    init = _tiny_dropout_bn()
    recipe, params = MnistRecipe(), MnistParams(epochs=3, batch_size=64, noise_sigma=0.25)
    expected, _ = _fit(init, recipe, params, train, seed=0)
    clean, _ = _fit(init, recipe, MnistParams(epochs=3, batch_size=64), train, seed=0)
    assert any(not torch.equal(expected[k], clean[k]) for k in expected), "the noise changed nothing"
    killed = CountingContext(seed=0, checkpoints=Checkpoints(tmp_path), bar=Steps(kill_after=6))
    with pytest.raises(Killed):
        recipe.fit(copy.deepcopy(init), train, params, killed)
    model = copy.deepcopy(init)
    recipe.fit(model, train, params, JobContext(seed=0, checkpoints=Checkpoints(tmp_path)))
    assert all(torch.equal(model.state_dict()[k], expected[k]) for k in expected), "resumed weights differ"


@pytest.mark.parametrize("noise_sigma", [-0.1, math.inf, math.nan])
def test_noise_sigma_is_a_finite_non_negative_number(noise_sigma: float) -> None:
    with pytest.raises(ValidationError, match="noise_sigma"):
        MnistParams(noise_sigma=noise_sigma)


def test_recipe_dumps_without_noise_are_the_ones_job_keys_always_hashed() -> None:
    """The dump of a recipe's parameters is hashed into the classifier's job key: with the noise off it must
    be exactly the dump from before the option existed, and with it on it must say so."""
    before = {"epochs": 10, "batch_size": 128, "lr": 1e-3, "weight_decay": 0.0, "n_train": None, "n_val": 0,
              "compile": False}
    assert MnistParams().model_dump(mode="json") == before
    assert MnistParams(noise_sigma=0).model_dump(mode="json") == before
    assert MnistParams(noise_sigma=0.5).model_dump(mode="json") == {**before, "noise_sigma": 0.5}
    for name in ("mnist", "cifar", "madry-at"):
        params = RECIPES.get(name).Params.model_validate({})
        assert "noise_sigma" not in params.model_dump(mode="json")
        assert RECIPES.get(name).Params.model_validate(params.model_dump(mode="json")) == params
    common = {"arch": "mnist-c", "dataset": "mnist", "num_classes": 10, "seed": 0,
              "normalization": Normalization(mean=list(MNIST_MEAN), std=list(MNIST_STD))}
    config = TrainedClassifier(**common, recipe="mnist", train=MnistParams(noise_sigma=0.25))
    assert config.model_dump(mode="json")["train"]["noise_sigma"] == 0.25
    plain = TrainedClassifier(**common, recipe="mnist", train=MnistParams())
    assert plain.model_dump(mode="json")["train"] == before


def test_adversarial_and_noise_training_are_training_for_robustness() -> None:
    assert MadryATRecipe.retrains_for_robustness and MadryATRecipe.robust_training(MadryATParams())
    assert not MnistRecipe.retrains_for_robustness and not CifarRecipe.retrains_for_robustness
    assert not MnistRecipe.robust_training(MnistParams()) and not CifarRecipe.robust_training(CifarParams())
    assert MnistRecipe.robust_training(MnistParams(noise_sigma=0.25))
    assert CifarRecipe.robust_training(CifarParams(noise_sigma=0.12))


def test_madry_at_mnist_is_their_mnist_run() -> None:
    """mnist_challenge's config: Adam at a constant 1e-4, batches of 50 for 100k steps (83 epochs of 60k
    images), no augmentation, 40 PGD steps of 0.01 in Linf 0.3; the attack is madry-at's, statistics kept."""
    recipe = RECIPES.get("madry-at-mnist")()
    p = recipe.Params.model_validate({})
    assert (p.norm, p.eps, p.attack_steps, p.attack_step) == ("linf", 0.3, 40, 0.01)  # type: ignore[attr-defined]
    assert (p.lr, p.batch_size, p.epochs) == (1e-4, 50, 83) and recipe.full_scale_epochs == 83
    assert recipe.robust_training(p)
    opt, sched = recipe.make_optimizer(nn.Linear(4, 2), p, steps_per_epoch=10)
    assert isinstance(opt, torch.optim.Adam) and sched is None
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    assert torch.equal(recipe.augment(x, p, torch.Generator()), x)
    torch.manual_seed(0)
    model = _tiny_dropout_bn().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adv = recipe.train_inputs(model, x, y, p, torch.Generator().manual_seed(0))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert (adv - x).abs().max() <= 0.3 + 1e-6 and not torch.equal(adv, x)


def test_madry_at_mnist_ramps_the_radius_by_the_optimizers_steps(
    mnist: tuple[ImageData, ImageData], tmp_path: Path
) -> None:
    """The ramp reads the step count from Adam's state, so a killed run resumes on the same radii."""
    recipe = RECIPES.get("madry-at-mnist")()
    p = recipe.Params.model_validate({"epochs": 3, "batch_size": 64, "eps_ramp_epochs": 2, "attack_steps": 2})
    torch.manual_seed(0)
    model = _tiny_dropout_bn().train()
    recipe.make_optimizer(model, p, steps_per_epoch=4)  # a ramp of 8 steps: the first is at 0.3 / 8
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    adv = recipe.train_inputs(model, x, y, p, torch.Generator().manual_seed(0))
    assert 0 < float((adv - x).abs().max()) <= 0.3 / 8 + 1e-6
    train, _ = train_split(mnist[0], n_train=256, n_val=0)  # 4 steps per epoch
    init = _tiny_dropout_bn()
    expected, _ = _fit(init, RECIPES.get("madry-at-mnist")(), p, train, seed=0)
    killed = CountingContext(seed=0, checkpoints=Checkpoints(tmp_path), bar=Steps(kill_after=6))
    with pytest.raises(Killed):
        RECIPES.get("madry-at-mnist")().fit(copy.deepcopy(init), train, p, killed)
    resumed = copy.deepcopy(init)
    ctx = JobContext(seed=0, checkpoints=Checkpoints(tmp_path))
    RECIPES.get("madry-at-mnist")().fit(resumed, train, p, ctx)
    assert all(torch.equal(v, expected[k]) for k, v in resumed.state_dict().items()), "resumed weights differ"
