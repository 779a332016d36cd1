"""``benchmarks/denoiser_speed.py`` compares like with like: on tiny denoisers, every trained image goes
through the denoiser once in ``fit`` and in the floor, the guide as often as the objective needs (``stab``
once more in ``fit``, for its label), and CERTIFY makes exactly the floor's n0 + n passes."""

from __future__ import annotations

import argparse
import math
from typing import Any

import pytest
import torch
from torch import nn

from bench.api import DatasetInfo, ImageData, load_plugins
from bench.certify import CertifyParams
from benchmarks import denoiser_speed as speed

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_thread")]

SHAPE = (3, 16, 16)
ARGS = argparse.Namespace(device="cpu", batch_size=4, images=8, repeats=2, warmup=1)
SMALL: dict[str, dict[str, Any]] = {
    "dncnn": {"arch": "dncnn", "width": 4, "depth": 3},
    "memnet": {"arch": "memnet", "width": 4, "memory_blocks": 1, "residual_blocks": 1},
    "irs": {"scale": 1, "depth": 1},
}


def cell(name: str, objective: str | None = None) -> speed.Cell:
    if name == "irs":
        return speed.Cell(name, "irs", SMALL[name])
    return speed.Cell(name, "denoised-smoothing", {**SMALL[name], "objective": objective})


def guide() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(SHAPE), 10))
    return net.eval().requires_grad_(False)


def data() -> ImageData:
    x = torch.rand((ARGS.images, *SHAPE), generator=torch.Generator().manual_seed(0))
    info = DatasetInfo("tiny", 10, SHAPE, (0.5,) * 3, (0.5,) * 3, ARGS.images, 0)
    return ImageData((x * 255).round().to(torch.uint8), torch.arange(ARGS.images) % 10, "tiny", info)


@pytest.fixture(scope="module", autouse=True)
def _plugins() -> None:
    load_plugins()


@pytest.mark.parametrize(
    ("name", "objective", "guide_images"),
    [("dncnn", "mse", "0, 0"), ("dncnn", "stab", "2, 1"), ("memnet", "stab", "2, 1"), ("irs", None, "1, 1")],
)
def test_training_floor_does_the_same_work(name: str, objective: str | None, guide_images: str) -> None:
    c = cell(name, objective)
    row = speed.train_row(c, guide(), data(), ARGS)
    assert row["objective"] == c.objective
    assert row["images/image, denoiser: fit, floor"] == "1, 1"
    assert row["guide: fit, floor"] == guide_images
    assert (row["label pass / floor"] != "-") == (c.objective == "stab")
    assert float(row["ratio to floor"]) > 0


@pytest.mark.parametrize("name", ["dncnn", "irs"])
def test_certify_makes_the_floors_passes(name: str) -> None:
    params = CertifyParams(n0=3, n=10, alpha=0.001, noise_batch=4)
    x = data().float_images()[0]
    row = speed.certify_row(cell(name, "mse"), guide(), x, params, ARGS)
    assert row["passes: ours, floor"] == "13, 13"
    assert float(row["ours/floor"]) > 0
