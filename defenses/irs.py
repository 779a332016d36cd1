"""IRS-Net (Kumar & Narayan, "Towards Robust Certified Defense via Improved Randomized Smoothing"): a U-Net
denoiser for randomized smoothing whose Gaussian noise is added AFTER normalization.

The paper's pipeline (its Fig. 1 and Algorithm 1) normalizes the image with ImageNet's mean and std (their
Sec. V.C, on CIFAR-10 too), adds δ ~ N(0, σ²I) to the normalized image, and a U-Net maps the noisy normalized
image back to the range the classifier expects, here [0,1] pixels, since every classifier of the harness
normalizes inside itself. The front-end therefore normalizes with its OWN statistics, whatever the classifier
uses, and declares that std with its noise (:class:`~bench.api.GaussianSmoothing` in ``normalized`` space with
``std``): the certification engine draws the noise as pixel noise σ·s_c, which the front-end's normalization
turns into exactly the paper's σ on the normalized image, and converts the certificate into a pixel-space
radius R·min_c s_c (about 0.224·R for ImageNet's std), the only radius the harness stores.

Training is their Algorithm 1: the loss of a batch is their Eq. 3,

    λ · CE(f(U(x' + δ)), y) + MAE(x, U(x' + δ)),     x' = (x - μ) / s,  λ = 0.1,

with f the frozen surrogate and y the true label. Their "rescaled reconstruction loss" rescales the
cross-entropy, not the reconstruction: λ brings the CE term down to the magnitude of the mean absolute error,
so the denoiser does not overfit the one surrogate it sees (their Sec. IV.A and Table V). The MAE compares
the output with the image the classifier expects, x in [0,1]. SGD at learning rate 0.1 for 20 epochs with one
surrogate (a ResNet-18 on CIFAR-10); Algorithm 1's update is plain gradient descent, so momentum and weight
decay default to 0. The paper states neither the batch size nor the U-Net's width; ours are 128 and the
classic 64-to-1024-channel U-Net (S = 8) with bilinear upsampling, ending in a sigmoid so every output is a
valid pixel. With several guides each batch goes through one drawn at random, as for the Robustifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from bench.api import (
    ConfigError,
    DefenseParams,
    FrontEnd,
    GaussianSmoothing,
    ImageData,
    JobContext,
    ShuffledBatches,
    Stateful,
    TrainingState,
    register_defense,
)
from defenses.unet import UNet, UNetDefense, build_unet

#: The normalization of the paper's Sec. V.C, used for CIFAR-10 and ImageNet alike.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Salts of the training and validation noise streams.
TRAIN_SALT, VAL_SALT = 0x1A5, 0x1A6

Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class IRSParams(DefenseParams):
    #: Noise std σ on the NORMALIZED image (the paper's units); 0.25 for their Table I.
    sigma: float = Field(0.25, gt=0, allow_inf_nan=False)
    #: The front-end's own normalization, one value per channel (or one for all); ImageNet's by default, as
    #: in the paper. A single-channel dataset needs its own, e.g. ``mean: [0.5], std: [0.5]``.
    mean: list[Finite] = Field(default_factory=lambda: list(IMAGENET_MEAN), min_length=1)
    std: list[Positive] = Field(default_factory=lambda: list(IMAGENET_STD), min_length=1)
    #: U-Net width scale S: level i has 8·S·2^i channels.
    scale: int = Field(8, ge=1)
    #: U-Net levels below the top one; the image side must be divisible by 2^depth.
    depth: int = Field(4, ge=1)
    #: λ of Eq. 3, the weight of the cross-entropy against the (unweighted) mean absolute error.
    ce_weight: float = Field(0.1, ge=0)
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)


class IRSFrontEnd(FrontEnd):
    """x -> U((x - μ) / s): normalization with the front-end's own statistics, then the U-Net back to [0,1].

    The engine feeds it x + σ·s·ε, so the U-Net sees (x - μ)/s + σ·ε, the paper's noisy normalized image.
    """

    output_range: ClassVar[tuple[float, float]] = (0.0, 1.0)
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, unet: UNet, mean: Sequence[float], std: Sequence[float], sigma: float) -> None:
        super().__init__()
        self.unet = unet
        # Fixed by the parameters, so kept out of the state dict: the weights are the U-Net's alone.
        self.register_buffer("mean", torch.tensor(list(mean)).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(list(std)).view(-1, 1, 1), persistent=False)
        self.smoothing = GaussianSmoothing(sigma, "normalized", tuple(float(s) for s in std))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.unet(self.normalize(x))
        return out


def channels_problem(params: IRSParams, channels: int) -> str | None:
    """Why the normalization does not fit images of ``channels`` channels, or None when it does."""
    for name, values in (("mean", params.mean), ("std", params.std)):
        if len(values) not in (1, channels):
            return (
                f"irs normalizes with {name} {values}, {len(values)} values, but the images have {channels} "
                f"channel(s); give one value per channel or one for all (ImageNet's statistics, the default, "
                "fit only colour images)"
            )
    return None


@register_defense("irs")
class IRS(UNetDefense):
    """U-Net denoiser for noise added after normalization, trained on λ·CE + MAE (Kumar & Narayan)."""

    Params = IRSParams

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        problem = channels_problem(params, input_shape[0])
        if problem is not None:
            raise ConfigError(problem)
        unet = build_unet(input_shape, params.scale, params.depth, "bilinear", sigmoid=True)
        return IRSFrontEnd(unet, params.mean, params.std, params.sigma)

    def check(self, params: Any, input_shape: tuple[int, int, int], guides: Sequence[nn.Module]) -> None:
        problem = channels_problem(params, input_shape[0])
        if problem is not None:
            raise ConfigError(problem)
        super().check(params, input_shape, guides)

    def fit(
        self,
        frontend: FrontEnd,
        guides: Sequence[nn.Module],
        train: ImageData,
        val: ImageData | None,
        params: Any,
        ctx: JobContext,
    ) -> dict[str, float]:
        ctx.seed_everything()
        device = ctx.device
        frontend.to(device).train()
        opt = torch.optim.SGD(
            frontend.parameters(), lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay
        )
        gen = ctx.generator(salt=TRAIN_SALT, device=device)
        scales = pixel_noise_scales(frontend, train.info.input_shape[0], device)
        batches = ShuffledBatches(ctx, gen, params.batch_size, train.images, train.labels)
        totals = torch.zeros(3, device=device)  # cross-entropy, MAE, guide accuracy on the denoised images
        parts: dict[str, Stateful | None] = {"frontend": frontend, "optimizer": opt}
        state = TrainingState(ctx, parts, {"irs": gen}, {"totals": totals})
        for _ in batches.epochs(state, params.epochs, "train irs"):
            totals.zero_()
            for x, y in batches:
                i = int(torch.randint(len(guides), (1,), generator=gen, device=device))
                noisy = x + scales * torch.randn(x.shape, generator=gen, device=device)
                with ctx.autocast():
                    terms, hits = loss_terms(frontend, guides[i], x, noisy, y)
                loss = params.ce_weight * terms[0] + terms[1]
                opt.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                opt.step()
                totals += torch.cat([terms.detach(), hits.view(1)])
        frontend.eval()
        last = (totals / batches.steps).tolist()
        metrics = {
            "train_wall_s": state.elapsed_s(),
            "final_epoch_ce": last[0],
            "final_epoch_mae": last[1],
            "final_epoch_train_noisy_accuracy": last[2],
        }
        if val is not None:
            metrics.update(validate(frontend, guides, val, params.batch_size, ctx))
        return metrics


def pixel_noise_scales(frontend: FrontEnd, channels: int, device: torch.device) -> torch.Tensor:
    """Per-channel pixel std of the declared noise, shaped to multiply a batch: training draws the noise as
    the certification engine does (σ·s_c in pixels, which the front-end's normalization makes σ)."""
    smoothing = frontend.smoothing
    if smoothing is None:
        raise ConfigError(f"irs denoises declared noise, but {type(frontend).__name__} declares none")
    return torch.tensor(smoothing.pixel_sigmas(None, channels), device=device).view(1, -1, 1, 1)


def loss_terms(
    frontend: nn.Module, guide: nn.Module, x: torch.Tensor, noisy: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 3's two unweighted terms, CE of the guide on the denoised images and their MAE to the clean ones,
    and the fraction of the batch the guide classifies right."""
    out = frontend(noisy)
    logits = guide(out).float()
    ce = F.cross_entropy(logits, y)
    mae = F.l1_loss(out.float(), x)
    hits = (logits.argmax(1) == y).float().mean().detach()
    return torch.stack([ce, mae]), hits


@torch.no_grad()
def validate(
    frontend: FrontEnd, guides: Sequence[nn.Module], val: ImageData, batch_size: int, ctx: JobContext
) -> dict[str, float]:
    """Held-out numbers under one draw of the declared noise per image, from a generator restarted on every
    call (validating never shifts training's streams): each guide's accuracy on the denoised images (the
    base classifier the certificate counts votes of) and their MAE to the clean images."""
    training = frontend.training
    frontend.eval()
    gen = ctx.generator(salt=VAL_SALT, device=ctx.device)
    scales = pixel_noise_scales(frontend, val.info.input_shape[0], ctx.device)
    hits = 0
    mae = 0.0
    for x, y in val.batches(batch_size, ctx.device):
        out = frontend(x + scales * torch.randn(x.shape, generator=gen, device=ctx.device))
        mae += float((out - x).abs().sum())
        hits += sum(int((guide(out).argmax(1) == y).sum()) for guide in guides)
    frontend.train(training)
    return {"val_noisy_accuracy": hits / (len(val) * len(guides)), "val_mae": mae / val.images.numel()}
