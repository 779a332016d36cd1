"""Deterministic subsets by count.

Validation images come out of the training split (never the test split), and every consumer of a split sees
the same seeded permutation, so "the first 500 test images" means the same 500 in every job and every run.

A count larger than the split holds is reduced to what there is rather than refused (a matrix written for the
full dataset still runs on a PNG subset); :func:`train_shortfall` and :func:`eval_shortfall` say when that
happened, so a run that used fewer images than its matrix asked for is reported as reduced.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.api import ImageData
from bench.errors import ConfigError

#: One permutation of each training split, shared by every classifier and front-end: a classifier's
#: validation images are the first ``n_val`` of it and never among its own training images. A front-end
#: trains from the start of the same permutation, so it may see images a guide held out; validation accuracy
#: is only reported on the guide's card, never used to choose anything the front-end is judged by.
TRAIN_SPLIT_SEED = 0


@dataclass(frozen=True)
class Shortfall:
    """A count the matrix asked for that the split could not supply in full."""

    setting: str
    requested: int
    used: int
    #: What limited the count, e.g. "the mnist test split holds 10000 images".
    limit: str

    def note(self) -> str:
        """One line for the report's reduced-scale notes."""
        return f"{self.setting}={self.requested} is more than there are: used {self.used} ({self.limit})"


def _perm(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)


def _train_take(data: ImageData, n_train: int | None, n_val: int) -> int:
    n = len(data)
    if n_val >= n:
        wanted = "all the rest" if n_train is None else n_train
        raise ConfigError(
            f"n_val={n_val} (with n_train={wanted}) leaves no training images: the {data.info.name} training "
            f"split holds {n} images and the validation images come out of it; set n_val below {n} (in a "
            "classifier's train parameters or a defense's entry), leaving room for n_train"
        )
    available = n - n_val
    return available if n_train is None else min(n_train, available)


def _eval_take(data: ImageData, n_eval: int | None) -> int:
    return len(data) if n_eval is None else min(n_eval, len(data))


def train_split(data: ImageData, n_train: int | None, n_val: int) -> tuple[ImageData, ImageData | None]:
    take = _train_take(data, n_train, n_val)
    perm = _perm(len(data), TRAIN_SPLIT_SEED)
    train = data.subset(perm[n_val : n_val + take], f"train:{TRAIN_SPLIT_SEED}:{n_val}:{take}")
    val = data.subset(perm[:n_val], f"val:{TRAIN_SPLIT_SEED}:{n_val}") if n_val else None
    return train, val


def train_shortfall(data: ImageData, n_train: int | None, n_val: int) -> Shortfall | None:
    """Whether :func:`train_split` with these counts trains on fewer than ``n_train`` images."""
    take = _train_take(data, n_train, n_val)
    if n_train is None or take == n_train:
        return None
    held_out = f", {n_val} of them held out for validation (n_val)" if n_val else ""
    limit = f"the {data.info.name} training split holds {len(data)}{held_out}"
    return Shortfall("n_train", n_train, take, limit)


def eval_subset(data: ImageData, n_eval: int | None, seed: int) -> ImageData:
    take = _eval_take(data, n_eval)
    return data.subset(_perm(len(data), seed)[:take], f"eval:{seed}:{take}")


def eval_indices(data: ImageData, n_eval: int | None, seed: int) -> torch.Tensor:
    """The positions in ``data`` that :func:`eval_subset` takes, in its order (a certificate's noise is
    seeded by the image's position, so the same image draws the same noise in any selection)."""
    return _perm(len(data), seed)[: _eval_take(data, n_eval)]


def eval_shortfall(data: ImageData, n_eval: int | None) -> Shortfall | None:
    """Whether :func:`eval_subset` with this count evaluates on fewer than ``n_eval`` images."""
    take = _eval_take(data, n_eval)
    if n_eval is None or take == n_eval:
        return None
    return Shortfall("n_eval", n_eval, take, f"the {data.info.name} test split holds {len(data)}")
