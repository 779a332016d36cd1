"""The training-recipe contract and its registry.

Recipes are seedable and deterministic on CPU for a fixed seed. The data lives in memory as uint8 tensors (see
:class:`bench.api.data.ImageData`); on CUDA the whole training set is moved to the device once and augmented
there, so the loader never dominates a step. CUDA runs use bf16 autocast and channels-last (a
:class:`~bench.api.context.JobContext` can switch either on or off anywhere), and
``compile: true`` wraps the model in ``torch.compile``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from torch import nn

from bench.api.batches import ShuffledBatches
from bench.api.context import JobContext
from bench.api.data import ImageData
from bench.api.registry import Registry
from bench.api.resume import Stateful, TrainingState


class RecipeParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(gt=0)
    weight_decay: float = Field(0.0, ge=0)
    #: Training images (a seeded subset of the training split); None = all of it minus validation.
    n_train: int | None = Field(None, ge=1)
    #: Images held out of the training split for validation (never the test split).
    n_val: int = Field(0, ge=0)
    compile: bool = False
    #: Standard deviation of Gaussian noise added in [0,1] pixel space to every training batch, after
    #: augmentation and without clamping (Cohen et al. 2019's classifier for randomized smoothing); 0 = none.
    noise_sigma: float = Field(0.0, ge=0, allow_inf_nan=False)

    @model_serializer(mode="wrap")
    def _noise_absent_when_off(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """Leave ``noise_sigma`` out of the dump when it is 0: the dump is hashed into the classifier's job
        key, which must stay what it was for every recipe trained before the option existed."""
        dumped: dict[str, object] = handler(self)
        if self.noise_sigma == 0:
            dumped.pop("noise_sigma", None)
        return dumped


class Recipe(ABC):
    Params: ClassVar[type[RecipeParams]]
    #: Epochs of the full-scale recipe; fewer are reported as reduced scale.
    full_scale_epochs: ClassVar[int]
    #: True when the recipe itself trains the classifier for robustness (adversarial training): a defense
    #: evaluated on such a classifier is not model-agnostic. :meth:`robust_training` also counts noise.
    retrains_for_robustness: ClassVar[bool] = False

    @classmethod
    def robust_training(cls, params: RecipeParams) -> bool:
        """Whether ``params`` train for robustness: the recipe does by itself, or Gaussian noise is added
        (``noise_sigma``). A defense on such a classifier leans on its retraining, so the report marks the
        target not model-agnostic."""
        return cls.retrains_for_robustness or params.noise_sigma > 0

    @abstractmethod
    def make_optimizer(
        self, model: nn.Module, params: Any, steps_per_epoch: int
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]: ...

    def augment(self, x: torch.Tensor, params: Any, gen: torch.Generator) -> torch.Tensor:
        return x

    def train_inputs(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, params: Any, gen: torch.Generator
    ) -> torch.Tensor:
        """The images a step trains on, given its augmented batch: the batch itself, or, for adversarial
        training, adversarial examples of it against the current ``model`` (drawing from ``gen``, the
        loop's checkpointed stream). Called in train mode and outside autocast; must leave ``model`` in
        train mode."""
        return x

    def fit(self, model: nn.Module, train: ImageData, params: Any, ctx: JobContext) -> dict[str, float]:
        """Train in place, resuming from the job's last checkpoint; returns throughput and the last epoch's
        loss for the job's card."""
        ctx.seed_everything()
        device = ctx.device
        model.to(device)
        if ctx.use_channels_last:
            model.to(memory_format=torch.channels_last)
        step_model: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if params.compile else model
        gen = ctx.generator(salt=0x7A, device=device)
        batches = ShuffledBatches(ctx, gen, params.batch_size, train.images, train.labels)
        opt, sched = self.make_optimizer(model, params, batches.steps)
        loss_sum = torch.zeros((), device=device)
        parts: dict[str, Stateful | None] = {"model": model, "optimizer": opt, "scheduler": sched}
        state = TrainingState(ctx, parts, {"shuffle": gen}, {"loss_sum": loss_sum})
        model.train()
        for _ in batches.epochs(state, params.epochs, "train classifier"):
            loss_sum.zero_()
            for x, y in batches:
                x = self.augment(x, params, gen)
                if ctx.use_channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                x = self.train_inputs(model, x, y, params, gen)
                if params.noise_sigma > 0:
                    # From the checkpointed stream, so a resumed run draws the noise it would have drawn.
                    noise = torch.randn(x.shape, generator=gen, device=device, dtype=x.dtype)
                    x = x + params.noise_sigma * noise
                with ctx.autocast():
                    loss = F.cross_entropy(step_model(x), y)
                opt.zero_grad(set_to_none=True)
                torch.autograd.backward(loss)
                opt.step()
                if sched is not None:
                    sched.step()
                loss_sum += loss.detach()
        if ctx.cuda:
            torch.cuda.synchronize(device)  # queued kernels belong to the training time
        wall = state.elapsed_s()
        model.eval()
        return {
            "train_wall_s": wall,
            # Every epoch sees each training image once, in batches that cover the permutation.
            "train_images_per_s": params.epochs * len(train) / wall if wall > 0 else math.inf,
            "final_epoch_loss": float(loss_sum) / batches.steps,
        }


RECIPES: Registry[type[Recipe]] = Registry("training recipe")


def register_recipe(name: str, description: str | None = None) -> Callable[[type[Recipe]], type[Recipe]]:
    return RECIPES.register(name, description)
