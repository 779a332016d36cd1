"""AAA: Adversarially-Trained Autoencoder Augmentation (Vaishnavi, Eykholt, Prakash & Rahmati, 2019).

An autoencoder G is prepended to frozen, naturally trained classifiers F (the guides) and trained against PGD
run end to end through G and F, F's weights untouched (their Eq. 2). The loss of a batch is one of three
(their Sec. 5), chosen by ``loss``:

- ``xent``: CE(F(G(x~)), y), the adversarial cross-entropy alone (Sec. 4's AAA);
- ``mse``: MSE(G(x~), x), reconstruction of the clean image alone;
- ``xent+mse``: their Eq. 3, CE + λ·MSE, with λ (``recon_weight``) balancing the two terms.

x~ always comes from PGD that maximizes the cross-entropy through G and the guide (Eq. 2), whatever the
loss. The MSE is a mean over pixels as well as images (Eq. 3 writes a mean over images of a squared norm),
so λ = 1 weighs one pixel's squared error against one image's cross-entropy.

**Ensemble training.** With several guides, one is drawn at random for each batch, and the batch's attack and
update both go through it. The paper "periodically" selects a random native classifier (after Tramèr et
al.); once per batch is our reading of that. An ensemble so costs what one guide costs.

**Training attack.** The defaults are the paper's MNIST setting: Linf PGD of 40 steps of 0.01 in eps = 0.3,
from a uniform random start, the final iterate kept. Fashion-MNIST's is the same in eps = 0.2, CIFAR-10's
10 steps of 2/255 in 8/255. ``attack_rel_step`` gives the step as a multiple of the (ramped) radius instead.

**Optimizer.** Adam at 1e-3. With validation images (``n_val`` in the defense's matrix entry) the learning
rate is multiplied by ``lr_factor`` whenever the validation loss (the training loss, on PGD examples of the
validation images at the full radius, averaged over the guides) has not improved for ``lr_patience`` epochs,
and training stops at the ``max_lr_reductions``-th reduction, or after ``epochs`` epochs (the paper states the
patience of five epochs, neither the factor nor when it stopped). Without validation images the rate stays
at ``lr`` for all ``epochs``.

**Networks** (``arch``). ``conv``, for MNIST and Fashion-MNIST: the paper uses "a simple convolutional AE"
without giving its layers; ours is a small conv encoder-decoder (two stride-2 stages, batch norm, sigmoid
output so images stay in [0,1]) whose ``width`` is a parameter. ``unet``, for CIFAR-10 as in the paper: the
shared U-Net of :mod:`defenses.unet` (bilinear upsampling, sigmoid output), of width scale ``scale`` and
``depth`` levels; S = 8 is the classic 64-to-1024-channel U-Net the paper cites (Ronneberger et al.).

**Our additions**, which the paper does not have, on by default (the reference rows were trained with them):
one epoch of plain reconstruction before adversarial training (``warmup_epochs``; an untrained decoder
outputs grey, which gives the guides no signal), and a linear ramp of the training radius from 0 to eps over
the first ``eps_ramp_epochs`` epochs. Set both to 0 for the paper's schedule as written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator
from torch import nn

from bench.api import (
    ConfigError,
    Defense,
    DefenseParams,
    FrontEnd,
    ImageData,
    JobContext,
    ShuffledBatches,
    Stateful,
    Threat,
    TrainingState,
    max_radius,
    register_defense,
)
from defenses.adversarial import cross_entropy_through, pgd
from defenses.guides import check_guides_fit
from defenses.reconstruction import reconstruction_epoch
from defenses.unet import build_unet, depth_problem

#: Salts of the training and validation random streams.
TRAIN_SALT, VAL_SALT = 0xAA, 0xAB
Loss = Literal["xent", "mse", "xent+mse"]


class ConvAutoencoder(FrontEnd):
    """Conv encoder-decoder with batch norm; without it the plain stack sits at the mean image for hundreds
    of steps (the default initialization shrinks activations layer by layer), which wastes a CPU budget."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            *_conv_bn(channels, w, stride=1),
            *_conv_bn(w, 2 * w, stride=2),
            *_conv_bn(2 * w, 2 * w, stride=2),
        )
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(2 * w, 2 * w, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoder(self.encoder(x))
        return out


def _conv_bn(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class AAAParams(DefenseParams):
    #: Adversarial-training epochs at most (after ``warmup_epochs``); fewer when the plateau rule stops it.
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(1e-3, gt=0)
    loss: Loss = "xent+mse"
    #: λ of Eq. 3, the weight of the reconstruction term; only with ``loss: xent+mse``.
    recon_weight: float | None = Field(1.0, ge=0)
    arch: Literal["conv", "unet"] = "conv"
    #: Channels of the conv autoencoder's first stage (``arch: conv`` only).
    width: int | None = Field(32, ge=1)
    #: U-Net width scale S, level i having 8·S·2^i channels, and its levels below the top one (``arch: unet``
    #: only; 8 and 4 unless given).
    scale: int | None = Field(None, ge=1)
    depth: int | None = Field(None, ge=1)
    #: The training attack (pixel units).
    norm: Literal["linf", "l2"] = "linf"
    eps: float = Field(0.3, gt=0)
    attack_steps: int = Field(40, ge=1)
    #: PGD step in pixel units, or (``attack_rel_step``) as a multiple of the current radius; one of them.
    attack_step: float | None = Field(0.01, gt=0)
    attack_rel_step: float | None = Field(None, gt=0)
    #: Epochs of plain reconstruction before adversarial training (ours, not the paper's).
    warmup_epochs: int = Field(1, ge=0)
    #: Epochs over which the training radius grows linearly from 0 to eps (ours, not the paper's).
    eps_ramp_epochs: float = Field(1.0, ge=0)
    #: The plateau schedule, with validation images only: epochs without a lower validation loss after which
    #: the learning rate is multiplied by ``lr_factor``, and the reduction at which training stops.
    lr_patience: int = Field(5, ge=1)
    lr_factor: float = Field(0.1, gt=0, lt=1)
    max_lr_reductions: int = Field(3, ge=1)

    #: Fields added after the reference rows were stored, left out of the dump at these values (which are
    #: what the code did before they existed), so those rows' job keys stay.
    SINCE_REFERENCE: ClassVar[dict[str, object]] = {
        "loss": "xent+mse",
        "arch": "conv",
        "lr_patience": 5,
        "lr_factor": 0.1,
        "max_lr_reductions": 3,
    }
    #: What the plateau schedule reads; it needs validation images.
    PLATEAU: ClassVar[frozenset[str]] = frozenset({"lr_patience", "lr_factor", "max_lr_reductions"})

    @model_validator(mode="after")
    def _settings_of_the_choices(self) -> AAAParams:
        """A setting that belongs to another loss, network or step rule is an error, not ignored; one that
        does not apply is None (absent from the dump)."""
        given = self.model_fields_set
        if self.loss == "xent+mse":
            if not self.recon_weight:
                raise ValueError(
                    f"loss 'xent+mse' needs a positive recon_weight, the lambda of Eq. 3 (default 1.0); "
                    f"{self.recon_weight} leaves only the cross-entropy, which is loss: xent"
                )
        else:
            if "recon_weight" in given:
                what = "has none" if self.loss == "xent" else "is that term alone"
                raise ValueError(
                    f"recon_weight weighs the reconstruction term of loss 'xent+mse'; loss {self.loss!r} "
                    f"{what}: remove recon_weight, or use loss: xent+mse"
                )
            self._set("recon_weight", None)
        if self.arch == "conv":
            wrong = sorted({"scale", "depth"} & given)
            if wrong:
                raise ValueError(f"{' and '.join(wrong)}: U-Net settings; arch 'conv' is sized by width")
            if self.width is None:
                raise ValueError("arch 'conv' needs width, the channels of its first stage")
        else:
            if "width" in given:
                raise ValueError("width sizes the conv autoencoder; arch 'unet' is sized by scale and depth")
            self._set("width", None)
            self._set("scale", 8 if self.scale is None else self.scale)
            self._set("depth", 4 if self.depth is None else self.depth)
        if self.attack_rel_step is not None:
            if "attack_step" in given and self.attack_step is not None:
                raise ValueError("give attack_step (pixels) or attack_rel_step (a multiple of eps), not both")
            self._set("attack_step", None)
        elif self.attack_step is None:
            raise ValueError("give attack_step (pixel units) or attack_rel_step (a multiple of eps)")
        return self

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # the model is frozen; validators may still settle fields

    @model_serializer(mode="wrap")
    def _absent_when_not_applying(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """The dump is hashed into the front-end's job key: what does not apply is left out, and so are the
        options added since the reference rows while they keep the old behaviour."""
        dumped: dict[str, object] = handler(self)
        return {
            k: v
            for k, v in dumped.items()
            if v is not None and not (k in self.SINCE_REFERENCE and v == self.SINCE_REFERENCE[k])
        }

    def step_size(self, eps: float) -> float:
        """The PGD step at radius ``eps``."""
        return self.attack_step if self.attack_step is not None else float(self.attack_rel_step or 0) * eps


@register_defense("aaa")
class AAA(Defense):
    """Adversarially trained autoencoder (Vaishnavi et al. 2019), PGD-trained through frozen guides."""

    Params = AAAParams
    trainable = True
    needs_data = True

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        if params.arch == "unet":
            return build_unet(input_shape, params.scale, params.depth, "bilinear", sigmoid=True)
        return ConvAutoencoder(input_shape[0], params.width)

    def epochs_at_full_scale(self, params: Any) -> int | None:
        return int(AAAParams.model_fields["epochs"].default)

    def check(self, params: Any, input_shape: tuple[int, int, int], guides: Sequence[nn.Module]) -> None:
        limit = max_radius(params.norm, input_shape)
        if params.eps > limit:
            raise ConfigError(
                f"training eps {params.eps} is above the largest {params.norm} radius of images of shape "
                f"{input_shape} ({limit:g}), where every image is within reach of every other"
            )
        if params.arch == "unet":
            problem = depth_problem(input_shape, params.depth)
            if problem is not None:
                raise ConfigError(problem)
        check_guides_fit(input_shape, guides)

    def fit(
        self,
        frontend: FrontEnd,
        guides: Sequence[nn.Module],
        train: ImageData,
        val: ImageData | None,
        params: Any,
        ctx: JobContext,
    ) -> dict[str, float]:
        plateau_given = sorted(AAAParams.PLATEAU & params.model_fields_set)
        if val is None and plateau_given:
            raise ConfigError(
                f"{', '.join(plateau_given)} set the plateau schedule, which watches the validation loss: "
                "give the defense validation images (n_val in its matrix entry) or remove them"
            )
        ctx.seed_everything()
        device = ctx.device
        frontend.to(device).train()
        opt = torch.optim.Adam(frontend.parameters(), lr=params.lr)
        # PyTorch cuts the rate when the bad epochs EXCEED its patience; ours cuts when they reach it.
        plateau = (
            torch.optim.lr_scheduler.ReduceLROnPlateau(
                opt, mode="min", factor=params.lr_factor, patience=params.lr_patience - 1
            )
            if val is not None
            else None
        )
        gen = ctx.generator(salt=TRAIN_SALT, device=device)
        batches = ShuffledBatches(ctx, gen, params.batch_size, train.images, train.labels)
        totals = torch.zeros(3, device=device)  # ce, mse, adversarial accuracy of the last epoch
        values: dict[str, Any] = dict(totals=totals, epochs_run=0, lr_reductions=0, validation={})
        parts: dict[str, Stateful | None] = {"frontend": frontend, "optimizer": opt, "scheduler": plateau}
        # Warm-up epochs come first in the same loop, so a run killed during them resumes there too.
        state = TrainingState(ctx, parts, {"aaa": gen}, values)
        ramp_steps = max(1.0, params.eps_ramp_epochs * batches.steps)
        for epoch in batches.epochs(state, params.warmup_epochs + params.epochs, "train aaa"):
            if epoch < params.warmup_epochs:
                reconstruction_epoch(frontend, opt, batches, ctx)
                continue
            totals.zero_()
            for s, (x, y) in enumerate(batches):
                guide = guides[int(torch.randint(len(guides), (1,), generator=gen, device=device))]
                step = (epoch - params.warmup_epochs) * batches.steps + s
                eps = params.eps * min(1.0, (step + 1) / ramp_steps)
                objective = cross_entropy_through(frontend, [guide], y)
                threat = Threat(params.norm, eps)
                x_adv = pgd(objective, x, threat, params.step_size(eps), params.attack_steps, gen, ctx)
                with ctx.autocast():
                    recon = frontend(x_adv)
                    logits = guide(recon)
                    ce = F.cross_entropy(logits.float(), y)
                    mse = F.mse_loss(recon.float(), x)
                    loss = training_loss(params, ce, mse)
                opt.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                opt.step()
                totals += torch.stack([ce.detach(), mse.detach(), (logits.argmax(1) == y).float().mean()])
            state.values["epochs_run"] = epoch + 1 - params.warmup_epochs
            if val is not None and plateau is not None:
                ended = self._plateau(frontend, guides, val, params, ctx, state, plateau)
                if ended:
                    break
        frontend.eval()
        last = (totals / batches.steps).tolist()
        metrics = {
            "train_wall_s": state.elapsed_s(),
            "epochs_run": float(state.values["epochs_run"]),
            "final_epoch_ce": last[0],
            "final_epoch_mse": last[1],
            "final_epoch_train_adv_accuracy": last[2],
        }
        if val is not None:
            metrics["lr_reductions"] = float(state.values["lr_reductions"])
            metrics.update(state.values["validation"])
        return metrics

    @staticmethod
    def _plateau(
        frontend: FrontEnd,
        guides: Sequence[nn.Module],
        val: ImageData,
        params: Any,
        ctx: JobContext,
        state: TrainingState,
        plateau: torch.optim.lr_scheduler.ReduceLROnPlateau,
    ) -> bool:
        """Validate the epoch's weights, step the plateau schedule on their loss; True at the reduction that
        ends training. The scores are kept: the last epoch's are the fitted front-end's."""
        scores = validate(frontend, guides, val, params, ctx)
        state.values["validation"] = scores
        opt = plateau.optimizer
        before = opt.param_groups[0]["lr"]
        plateau.step(scores["val_loss"])
        if opt.param_groups[0]["lr"] < before:
            state.values["lr_reductions"] += 1
        return bool(state.values["lr_reductions"] >= params.max_lr_reductions)


def training_loss(params: Any, ce: torch.Tensor, mse: torch.Tensor) -> torch.Tensor:
    """The loss ``params.loss`` names, from the batch's adversarial cross-entropy and reconstruction MSE."""
    if params.loss == "xent":
        return ce
    if params.loss == "mse":
        return mse
    weighted: torch.Tensor = ce + params.recon_weight * mse
    return weighted


def validate(
    frontend: FrontEnd, guides: Sequence[nn.Module], val: ImageData, params: Any, ctx: JobContext
) -> dict[str, float]:
    """Held-out numbers through every guide, with the front-end in eval mode (its mode is put back): clean
    and adversarial accuracy under the training attack at the full radius, the clean reconstruction error,
    and the training loss on the adversarial images (what the plateau schedule watches). Draws come from a
    generator of their own, restarted on every call, so validating never shifts training's random streams
    and every epoch is judged on the same draws."""
    training = frontend.training
    frontend.eval()
    gen = ctx.generator(salt=VAL_SALT, device=ctx.device)
    threat = Threat(params.norm, params.eps)
    clean = adv = 0
    mse = adv_ce = adv_mse = 0.0
    for x, y in val.batches(params.batch_size, ctx.device):
        with torch.no_grad():
            recon = frontend(x)
            mse += float(F.mse_loss(recon, x, reduction="sum"))
        for guide in guides:
            with torch.no_grad():
                clean += int((guide(recon).argmax(1) == y).sum())
            objective = cross_entropy_through(frontend, [guide], y)
            x_adv = pgd(objective, x, threat, params.step_size(params.eps), params.attack_steps, gen, ctx)
            with torch.no_grad():
                out = frontend(x_adv)
                logits = guide(out)
                adv += int((logits.argmax(1) == y).sum())
                adv_ce += float(F.cross_entropy(logits, y, reduction="sum"))
                adv_mse += float(F.mse_loss(out, x, reduction="sum")) / out[0].numel()
    frontend.train(training)
    judged = len(val) * len(guides)
    loss = training_loss(params, torch.tensor(adv_ce / judged), torch.tensor(adv_mse / judged))
    return {
        "val_clean_accuracy": clean / judged,
        "val_adv_accuracy": adv / judged,
        "val_mse": mse / val.images.numel(),
        "val_loss": float(loss),
    }
