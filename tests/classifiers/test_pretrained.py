"""End to end on real data: akamaster's CIFAR-10 ResNets, loaded into our He ResNets, score as recorded.

This checks in one go that the architectures match the checkpoints layer for layer (names, option-A shortcut,
pooling), that the loader strips DataParallel's prefix and reads the legacy format safely, and that the
normalization wrapper applies the statistics the checkpoints were trained with.
"""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest
import torch
from PIL import Image
from statsmodels.stats.proportion import proportion_confint

import classifiers  # noqa: F401  (registers the built-in architectures)
from bench.api import CLASSIFIERS, Classifier, load_into, load_state_dict_file, sha256_file
from tests.conftest import data_root

pytestmark = pytest.mark.e2e

N_IMAGES = 500
#: The statistics akamaster trained with (ImageNet's, not CIFAR-10's).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: Labels of the official test batch's first 16 images.
OFFICIAL_FIRST_LABELS = [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8]


CHECKPOINTS = data_root() / "pretrained" / "cifar10_resnet_akamaster"


@pytest.fixture(scope="module")
def cifar10_first_test_images() -> tuple[torch.Tensor, torch.Tensor]:
    """The first N_IMAGES of the official CIFAR-10 test batch, as [0,1] floats, pixels checked by hash."""
    root = data_root() / "cifar10-png"
    index = root / "test_index.csv"
    assert index.is_file(), f"CIFAR-10 PNGs not found under {root} (set BENCH_DATA_DIR)"
    with index.open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["original_index"]]
    rows.sort(key=lambda r: int(r["original_index"]))
    rows = rows[:N_IMAGES]
    assert [int(r["original_index"]) for r in rows] == list(range(N_IMAGES))
    images = []
    for r in rows:
        with Image.open(root / r["file"]) as im:
            pixels = np.asarray(im.convert("RGB"))
        assert hashlib.sha256(pixels.tobytes()).hexdigest() == r["rgb_sha256"], r["file"]
        images.append(pixels)
    labels = torch.tensor([int(r["label"]) for r in rows])
    assert labels[:16].tolist() == OFFICIAL_FIRST_LABELS
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255
    return x, labels


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_akamaster_checkpoint_matches_its_recorded_accuracy(
    depth: int, cifar10_first_test_images: tuple[torch.Tensor, torch.Tensor]
) -> None:
    found = sorted(CHECKPOINTS.glob(f"resnet{depth}-*.th"))
    assert found, f"no resnet{depth} checkpoint in {CHECKPOINTS}"
    path = found[0]
    assert sha256_file(path).startswith(path.stem.split("-")[1])
    best_prec1 = float(torch.load(path, map_location="cpu", weights_only=True)["best_prec1"])

    net = CLASSIFIERS.get(f"resnet{depth}").factory(10)
    load_into(net, load_state_dict_file(path), str(path))
    model = Classifier(net, MEAN, STD).eval()
    x, y = cifar10_first_test_images
    with torch.inference_mode():
        correct = int((model(x).argmax(1) == y).sum())

    low, high = proportion_confint(correct, len(y), alpha=0.05, method="beta")
    summary = (
        f"resnet{depth}: {correct}/{len(y)} correct (95% CI {low:.3f}-{high:.3f}), "
        f"recorded best_prec1 {best_prec1:.2f}%"
    )
    print(summary)
    assert low <= best_prec1 / 100 <= high, summary
