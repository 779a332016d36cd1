"""Denoised smoothing (Salman, Sun, Yang, Kapoor & Kolter, "Denoised Smoothing: A Provable Defense for
Pretrained Classifiers", 2020): a denoiser D trained to undo Gaussian noise, prepended to a frozen classifier
f, and the pipeline f∘D certified by randomized smoothing, g(x) = argmax_c P(f(D(x + δ)) = c), δ ~ N(0, σ²I)
in [0,1] pixel space (their Eq. 3).

The front-end is the denoiser alone. It declares pixel-space :class:`~bench.api.GaussianSmoothing` of σ
exactly as ``defenses/smoothing.py`` does, so the certification engine adds the noise and the
smoothed-pipeline attacks treat it as one; its output is not clamped, as Salman et al.'s is not, so it
declares an unbounded ``output_range``. One denoiser is trained per σ, at that σ (their footnote 8), which the
planner guarantees by setting ``sigma`` per ``certify.sigmas``; ``train_sigma`` trains at another σ only with
``sigma_mismatch: allowed``.

**Objectives** (``objective``), each a mean over the batch, on the noisy image x + δ (δ drawn afresh for every
image of every batch, unclamped, as their ``train_denoiser.py``):

- ``mse``: ||D(x + δ) − x||² (their Eq. 4, a per-pixel mean as their ``MSELoss``): unsupervised, the guides
  unused;
- ``stab``: CE(F(D(x + δ)), f(x)), the guide's own label of the clean image (Eq. 5), trained from scratch;
- ``classification``: CE(F(D(x + δ)), y) against the true label (their Appendix E);
- ``stab+mse``: ``stab`` starting from a trained ``mse`` denoiser of the same architecture and σ (their
  STAB+MSE). The matrix expresses it as ``init_from:`` an ``mse`` entry; :meth:`check_init` refuses it without
  one (and refuses an init for any other objective: those train from scratch).

**Access** (``access``) records which of the paper's two settings a denoiser is for. ``white-box``: trained
through the classifier it defends, so it must be evaluated on its own guides. ``black-box``: trained through
surrogates and evaluated on a classifier it never saw, so a target among its guides is refused (that is
white-box); see :meth:`check_targets`. An ``mse`` denoiser never sees a classifier, so it fits both settings.

**Several guides** (the paper's black-box setting trains through 14 surrogates): each batch trains through
one guide, taken in turn, as their ``train_denoiser_multi_classifiers.py`` does (``classifiers[i % len]``),
so an ensemble costs what one guide costs; ours counts batches across epochs rather than restarting the turn
every epoch, so every guide gets an equal share whatever the number of batches per epoch.

**Training** follows their code's settings (the appendix of the paper is not in our copy): Adam with weight
decay 1e-4, batches of 256, the rate multiplied by 0.1 every 30 epochs; from scratch at 1e-3 for 90 epochs
(their released CIFAR-10 ``mse`` denoisers are the ``epochs_90`` ones), a ``stab+mse`` fine-tune at 1e-5 for
20 epochs (their ``finetune_smoothness_obj_adam_1e-5_20epochs`` runs; they also tried 1e-4 and SGD, and the
paper's numbers are the best of those). Their scripts name an "AdamThenSGD" schedule, but its switch compares
against ``'AdamThenSGD '`` (a trailing space) and never fires, so Adam throughout is what ran. Their weights
are the last epoch's (``checkpoint.pth.tar``, which their README certifies), and so are ours; validation
images (``n_val``) only give metrics of the trained denoiser.
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
    GaussianSmoothing,
    ImageData,
    JobContext,
    ShuffledBatches,
    Stateful,
    TrainingState,
    register_defense,
)
from defenses.denoisers import SIZES, Arch, build_denoiser
from defenses.guides import check_guides_fit

#: Salts of the training and validation random streams.
TRAIN_SALT, VAL_SALT = 0xD5, 0xD6
Objective = Literal["mse", "stab", "classification", "stab+mse"]
Access = Literal["white-box", "black-box"]

#: The objectives that train through the guides; ``mse`` never runs a classifier.
GUIDED: frozenset[str] = frozenset({"stab", "classification", "stab+mse"})
#: The objectives that fine-tune a trained denoiser, and the objective that denoiser must have been trained
#: with (what ``init_from:`` must name). Every other objective trains from scratch.
INIT_OBJECTIVES: dict[str, str] = {"stab+mse": "mse"}
#: Learning rate and epochs of each kind of run, when the matrix gives none: from scratch, or fine-tuning.
FROM_SCRATCH, FINE_TUNE = (1e-3, 90), (1e-5, 20)


class DenoisedSmoothingParams(DefenseParams):
    #: The denoiser: ``dncnn`` (17 layers, 64 features), ``dncnn-wide`` (128 features) or ``memnet``.
    arch: Arch = "dncnn"
    #: Features per layer; None: the architecture's (64, 128, 64).
    width: int | None = Field(None, ge=1)
    #: DnCNN's convolutions (first and last included); None: 17. DnCNN only.
    depth: int | None = Field(None, ge=2)
    #: MemNet's memory blocks and residual blocks per memory block; None: 3 and 6. MemNet only.
    memory_blocks: int | None = Field(None, ge=1)
    residual_blocks: int | None = Field(None, ge=1)
    #: Noise standard deviation in [0,1] pixels, of certification (and of training unless ``train_sigma``);
    #: the planner sets it per ``certify.sigmas``. The paper's σ are 0.12, 0.25, 0.5 and 1.0.
    sigma: float = Field(0.25, gt=0, allow_inf_nan=False)
    #: The σ the denoiser is trained at, when not ``sigma``; only with ``sigma_mismatch: allowed``.
    train_sigma: float | None = Field(None, gt=0, allow_inf_nan=False)
    sigma_mismatch: Literal["refused", "allowed"] = "refused"
    objective: Objective = "mse"
    access: Access = "white-box"
    epochs: int | None = Field(None, ge=1)
    batch_size: int = Field(256, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    #: None: 1e-3 from scratch, 1e-5 for the ``stab+mse`` fine-tune.
    lr: float | None = Field(None, gt=0)
    #: SGD's momentum (``optimizer: sgd`` only; 0.9 unless given).
    momentum: float | None = Field(None, ge=0, lt=1)
    weight_decay: float = Field(1e-4, ge=0)
    #: The step schedule: the rate is multiplied by ``lr_gamma`` every ``lr_step`` epochs.
    lr_step: int = Field(30, ge=1)
    lr_gamma: float = Field(0.1, gt=0, le=1)

    @model_validator(mode="after")
    def _settle(self) -> DenoisedSmoothingParams:
        """Fill what depends on the choices (the architecture's sizes, the objective's schedule), refuse a
        setting that belongs to another choice, and refuse training at a σ other than the certified one
        unless the matrix says so."""
        given = self.model_fields_set
        sizes = SIZES[self.arch]
        foreign = sorted(k for k in ("width", "depth", "memory_blocks", "residual_blocks") if k not in sizes)
        wrong = [k for k in foreign if k in given and getattr(self, k) is not None]
        if wrong:
            raise ValueError(
                f"{', '.join(wrong)}: not a size of arch {self.arch!r} (its sizes: {', '.join(sizes)})"
            )
        for name, default in sizes.items():
            if getattr(self, name) is None:
                self._set(name, default)
        if (
            self.train_sigma is not None
            and self.train_sigma != self.sigma
            and self.sigma_mismatch == "refused"
        ):
            raise ValueError(
                f"the denoiser would be trained at sigma {self.train_sigma:g} (train_sigma) and certified at "
                f"sigma {self.sigma:g} (sigma, which certify.sigmas sets): Salman et al. train one denoiser "
                "per sigma and certify it at that sigma; remove train_sigma, or set sigma_mismatch: allowed "
                "to certify a denoiser at a sigma it was not trained at on purpose"
            )
        if self.train_sigma == self.sigma:
            self._set("train_sigma", None)  # the same run as without it, so the same job key
        lr, epochs = FINE_TUNE if self.objective in INIT_OBJECTIVES else FROM_SCRATCH
        self._set("lr", lr if self.lr is None else self.lr)
        self._set("epochs", epochs if self.epochs is None else self.epochs)
        if self.optimizer == "sgd":
            self._set("momentum", 0.9 if self.momentum is None else self.momentum)
        elif self.momentum is not None:
            raise ValueError("momentum is SGD's; optimizer 'adam' has none: remove it, or use optimizer: sgd")
        return self

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # the model is frozen; validators may still settle fields

    @model_serializer(mode="wrap")
    def _absent_when_none(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """What does not apply (another architecture's sizes, SGD's momentum, a train_sigma equal to sigma)
        is left out of the dump, and so of the job key."""
        dumped: dict[str, object] = handler(self)
        return {k: v for k, v in dumped.items() if v is not None}

    @property
    def noise_sigma(self) -> float:
        """The σ of the noise the denoiser is trained on."""
        return self.sigma if self.train_sigma is None else self.train_sigma

    def sizes(self) -> dict[str, int]:
        """The architecture's constructor sizes, as settled."""
        return {name: int(getattr(self, name)) for name in SIZES[self.arch]}


@register_defense("denoised-smoothing")
class DenoisedSmoothing(Defense):
    """A DnCNN or MemNet denoiser before the frozen classifier, certified by Gaussian smoothing (Salman et
    al. 2020)."""

    Params = DenoisedSmoothingParams
    trainable = True
    needs_data = True
    #: See the module's :data:`INIT_OBJECTIVES`: objective -> the objective of the denoiser it starts from.
    init_objectives: ClassVar[dict[str, str]] = INIT_OBJECTIVES

    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd:
        denoiser = build_denoiser(params.arch, input_shape[0], **params.sizes())
        denoiser.smoothing = GaussianSmoothing(params.sigma, "pixel")
        return denoiser

    def epochs_at_full_scale(self, params: Any) -> int | None:
        return (FINE_TUNE if params.objective in INIT_OBJECTIVES else FROM_SCRATCH)[1]

    def check(self, params: Any, input_shape: tuple[int, int, int], guides: Sequence[nn.Module]) -> None:
        if params.objective in GUIDED:
            check_guides_fit(input_shape, guides)

    def check_init(self, params: Any, init_kind: str | None, init_params: Any | None) -> None:
        """``stab+mse`` fine-tunes an ``mse`` denoiser of this defense trained at the same σ; every other
        objective trains from scratch, so an init would make the objective's name a lie."""
        needed = INIT_OBJECTIVES.get(params.objective)
        if needed is None:
            if init_kind is not None:
                tuned = next((o for o, base in INIT_OBJECTIVES.items() if base == params.objective), None)
                hint = f"; fine-tuning an {params.objective} denoiser is objective {tuned!r}" if tuned else ""
                raise ConfigError(
                    f"objective {params.objective!r} trains the denoiser from scratch, so it starts from no "
                    f"other front-end (init_from){hint}"
                )
            return
        if init_kind is None:
            raise ConfigError(
                f"objective {params.objective!r} fine-tunes a denoiser trained with objective {needed!r}: "
                f"give init_from: the label of a denoised-smoothing entry with objective: {needed} (and the "
                "same arch and sizes)"
            )
        if init_kind != "denoised-smoothing" or not isinstance(init_params, DenoisedSmoothingParams):
            raise ConfigError(
                f"objective {params.objective!r} fine-tunes a denoiser trained with objective {needed!r}, "
                f"but init_from names a {init_kind} front-end"
            )
        if init_params.objective != needed:
            raise ConfigError(
                f"objective {params.objective!r} fine-tunes a denoiser trained with objective {needed!r}, "
                f"but init_from names one trained with objective {init_params.objective!r}"
            )
        if init_params.noise_sigma != params.noise_sigma and "allowed" not in (
            params.sigma_mismatch,
            init_params.sigma_mismatch,
        ):
            raise ConfigError(
                f"the {needed} denoiser it starts from is trained at sigma {init_params.noise_sigma:g}, "
                f"this one at sigma {params.noise_sigma:g}; a denoiser is trained for one sigma: give both "
                "the same sigma, or set sigma_mismatch: allowed"
            )

    def check_targets(self, params: Any, guides: Sequence[str], targets: Sequence[str]) -> None:
        if params.objective not in GUIDED:
            return  # an mse denoiser never ran a classifier: every target is one it never saw
        seen = [t for t in targets if t in guides]
        unseen = [t for t in targets if t not in guides]
        if params.access == "black-box" and seen:
            raise ConfigError(
                "access 'black-box' trains through surrogates and is evaluated on a classifier it never "
                f"saw, but {', '.join(seen)} {'is' if len(seen) == 1 else 'are'} among its surrogates "
                f"({', '.join(guides)}), which is white-box: evaluate it on a classifier outside its guides "
                "(kind: cross-model), or set access: white-box"
            )
        if params.access == "white-box" and unseen:
            raise ConfigError(
                f"access 'white-box' trains through the classifier it defends, but {', '.join(unseen)} "
                f"{'is' if len(unseen) == 1 else 'are'} not among its guides ({', '.join(guides)}), which is "
                "black-box: set access: black-box"
            )

    def fit(
        self,
        frontend: FrontEnd,
        guides: Sequence[nn.Module],
        train: ImageData,
        val: ImageData | None,
        params: Any,
        ctx: JobContext,
    ) -> dict[str, float]:
        if params.objective in GUIDED and not guides:
            raise ConfigError(f"objective {params.objective!r} trains through guide classifiers; none given")
        ctx.seed_everything()
        device = ctx.device
        frontend.to(device).train()
        opt: torch.optim.Optimizer
        if params.optimizer == "adam":
            opt = torch.optim.Adam(frontend.parameters(), lr=params.lr, weight_decay=params.weight_decay)
        else:
            opt = torch.optim.SGD(
                frontend.parameters(),
                lr=params.lr,
                momentum=params.momentum,
                weight_decay=params.weight_decay,
            )
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=params.lr_step, gamma=params.lr_gamma)
        gen = ctx.generator(salt=TRAIN_SALT, device=device)
        batches = ShuffledBatches(ctx, gen, params.batch_size, train.images, train.labels)
        totals = torch.zeros(2, device=device)  # loss, and (guided objectives) agreement with the target
        parts: dict[str, Stateful | None] = {"frontend": frontend, "optimizer": opt, "scheduler": sched}
        state = TrainingState(ctx, parts, {"denoised-smoothing": gen}, {"totals": totals})
        for epoch in batches.epochs(state, params.epochs, "train denoiser"):
            totals.zero_()
            for s, (x, y) in enumerate(batches):
                noisy = x + params.noise_sigma * torch.randn(x.shape, generator=gen, device=device)
                turn = (epoch * batches.steps + s) % len(guides) if guides else 0
                guide = guides[turn] if params.objective in GUIDED else None
                loss, agree = self.loss(frontend, guide, x, noisy, y, params.objective, ctx)
                opt.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                opt.step()
                totals += torch.stack([loss.detach(), agree])
            sched.step()
        frontend.eval()
        last = (totals / batches.steps).tolist()
        metrics = {"train_wall_s": state.elapsed_s(), "final_epoch_loss": last[0]}
        if params.objective in GUIDED:
            metrics["final_epoch_train_agreement"] = last[1]
        if val is not None:
            metrics.update(self.validate(frontend, guides, val, params, ctx))
        return metrics

    @staticmethod
    def loss(
        frontend: FrontEnd,
        guide: nn.Module | None,
        x: torch.Tensor,
        noisy: torch.Tensor,
        y: torch.Tensor,
        objective: str,
        ctx: JobContext,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's loss under ``objective``, and for the guided objectives the fraction of the batch on
        which the guide, after the denoiser, gives the objective's target (0 for ``mse``)."""
        with ctx.autocast():
            denoised = frontend(noisy)
            if objective == "mse":
                return F.mse_loss(denoised.float(), x), torch.zeros((), device=x.device)
            assert guide is not None
            if objective == "classification":
                target = y
            else:
                with torch.no_grad():
                    target = guide(x).argmax(1)
            logits = guide(denoised).float()
        agree = (logits.argmax(1) == target).float().mean()
        return F.cross_entropy(logits, target), agree

    @staticmethod
    def validate(
        frontend: FrontEnd, guides: Sequence[nn.Module], val: ImageData, params: Any, ctx: JobContext
    ) -> dict[str, float]:
        """On the held-out images under fresh training noise, with the denoiser in eval mode as it is
        certified: the denoising MSE, and through each guide (averaged) the accuracy against the true labels
        and the agreement with the guide's own label of the clean image. The noise comes from a generator
        restarted on every call, so validating never shifts training's streams."""
        training = frontend.training
        frontend.eval()
        gen = ctx.generator(salt=VAL_SALT, device=ctx.device)
        sq = accurate = stable = 0.0
        with torch.no_grad():
            for x, y in val.batches(params.batch_size, ctx.device):
                noisy = x + params.noise_sigma * torch.randn(x.shape, generator=gen, device=ctx.device)
                denoised = frontend(noisy)
                sq += float(F.mse_loss(denoised, x, reduction="sum"))
                for guide in guides:
                    predicted = guide(denoised).argmax(1)
                    accurate += float((predicted == y).sum())
                    stable += float((predicted == guide(x).argmax(1)).sum())
        frontend.train(training)
        metrics = {"val_mse": sq / (len(val) * val.images[0].numel())}
        if guides:
            metrics["val_noisy_accuracy"] = accurate / (len(val) * len(guides))
            metrics["val_stability"] = stable / (len(val) * len(guides))
        return metrics
