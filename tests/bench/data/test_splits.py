"""Tests for bench.data.splits on a tiny synthetic dataset: refused and reduced counts."""

from __future__ import annotations

import pytest
import torch

from bench.api import DatasetInfo, ImageData
from bench.data.splits import Shortfall, eval_shortfall, eval_subset, train_shortfall, train_split
from bench.errors import ConfigError

INFO = DatasetInfo("toy", 2, (1, 2, 2), (0.5,), (0.5,), 20, 20)


def toy(n: int = 20) -> ImageData:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    return ImageData(images, torch.arange(n) % 2, f"toy{n}", INFO)


@pytest.mark.parametrize("n_val", [20, 25])
def test_n_val_leaving_no_training_images_is_a_config_error(n_val: int) -> None:
    with pytest.raises(ConfigError) as err:
        train_split(toy(), n_train=5, n_val=n_val)
    msg = str(err.value)
    for part in (f"n_val={n_val}", "n_train=5", "toy training split holds 20 images", "set n_val below 20"):
        assert part in msg, msg


def test_n_val_check_also_guards_the_shortfall_query() -> None:
    with pytest.raises(ConfigError, match=r"n_val=20 \(with n_train=all the rest\)"):
        train_shortfall(toy(), n_train=None, n_val=20)


def test_largest_n_val_leaves_one_training_image() -> None:
    train, val = train_split(toy(), n_train=None, n_val=19)
    assert len(train) == 1 and val is not None and len(val) == 19


def test_train_counts_that_fit_are_no_shortfall() -> None:
    assert train_shortfall(toy(), n_train=None, n_val=5) is None
    assert train_shortfall(toy(), n_train=15, n_val=5) is None
    assert train_shortfall(toy(), n_train=3, n_val=5) is None


def test_n_train_beyond_the_split_is_reduced_and_reported() -> None:
    data = toy()
    train, _ = train_split(data, n_train=50, n_val=5)
    short = train_shortfall(data, n_train=50, n_val=5)
    assert len(train) == 15
    assert short == Shortfall(
        "n_train", 50, 15, "the toy training split holds 20, 5 of them held out for validation (n_val)"
    )
    assert short.note() == (
        "n_train=50 is more than there are: used 15 "
        "(the toy training split holds 20, 5 of them held out for validation (n_val))"
    )
    # Asking for more is the same data as asking for all of it.
    assert train.identity == train_split(data, n_train=None, n_val=5)[0].identity


def test_n_eval_beyond_the_split_is_reduced_and_reported() -> None:
    data = toy()
    sub = eval_subset(data, n_eval=100, seed=0)
    short = eval_shortfall(data, n_eval=100)
    assert len(sub) == 20
    assert short is not None and short.used == len(sub)
    assert short.note() == "n_eval=100 is more than there are: used 20 (the toy test split holds 20)"
    assert sub.identity == eval_subset(data, n_eval=None, seed=0).identity


@pytest.mark.parametrize("n_eval", [None, 1, 20])
def test_n_eval_that_fits_is_no_shortfall(n_eval: int | None) -> None:
    assert eval_shortfall(toy(), n_eval) is None
