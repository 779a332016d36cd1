"""Cohen et al.'s and Salman et al.'s checkpoints load as they are published: ``checkpoint.pth.tar``, the
weights under ``state_dict`` beside the optimizer, and keys prefixed by their ``Sequential(NormalizeLayer,
net)`` wrapper, whose normalization is mapped onto the classifier wrapper's own and checked against it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import classifiers  # noqa: F401  (registers the built-in architectures)
from bench.api import CLASSIFIERS, build_classifier, load_classifier_weights, load_into, load_state_dict_file
from bench.errors import WeightsError
from classifiers.archs.resnet_cohen import COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD

pytestmark = pytest.mark.usefixtures("one_thread")

DATASET_MEAN = (0.4914, 0.4822, 0.4465)
DATASET_STD = (0.2470, 0.2435, 0.2616)  # the harness's `normalization: dataset` for CIFAR-10


class NormalizeLayer(nn.Module):
    """As in their ``code/datasets.py``: the statistics are plain attributes, not buffers."""

    def __init__(self, means: Sequence[float], sds: Sequence[float]) -> None:
        super().__init__()
        self.means = torch.tensor(list(means))
        self.sds = torch.tensor(list(sds))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.means.view(1, -1, 1, 1).to(x)) / self.sds.view(1, -1, 1, 1).to(x)


class BufferedNormalizeLayer(nn.Module):
    """A variant that registers its statistics, so they do reach the state dict (``0.means``, ``0.sds``)."""

    means: torch.Tensor
    sds: torch.Tensor

    def __init__(self, means: Sequence[float], sds: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("means", torch.tensor(list(means)))
        self.register_buffer("sds", torch.tensor(list(sds)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.means.view(1, -1, 1, 1)) / self.sds.view(1, -1, 1, 1)


def their_model(arch: str, normalize: nn.Module, data_parallel: bool = False) -> nn.Sequential:
    """``get_architecture``'s return value, after one SGD step so BatchNorm statistics are not the init's."""
    torch.manual_seed(1)
    net: nn.Module = CLASSIFIERS.get(arch).factory(10)
    model = nn.Sequential(normalize, nn.DataParallel(net) if data_parallel else net)
    return model


def save_their_checkpoint(model: nn.Sequential, path: Path, legacy: bool = False) -> None:
    """What their ``train.py`` writes every epoch: epoch, arch, state_dict and the SGD optimizer's state."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    torch.autograd.backward(F.cross_entropy(model(torch.rand(2, 3, 32, 32)), torch.arange(2)))
    optimizer.step()
    checkpoint = {
        "epoch": 90,
        "arch": "cifar_resnet110",
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)


@pytest.mark.parametrize(
    ("legacy", "data_parallel"),
    [(False, False), (True, False), (False, True)],
    ids=["zip", "legacy-format", "dataparallel-inside"],
)
def test_their_resnet110_checkpoint_loads_strictly_and_gives_their_logits(
    tmp_path: Path, legacy: bool, data_parallel: bool
) -> None:
    model = their_model(
        "resnet110-cohen", NormalizeLayer(COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD), data_parallel
    )
    path = tmp_path / "checkpoint.pth.tar"
    save_their_checkpoint(model, path, legacy)
    saved = model.state_dict()
    # Their normalize layer contributes no entry: every key is the network's, behind the "1." index.
    assert all(k.startswith("1.module." if data_parallel else "1.") for k in saved)

    classifier = build_classifier("resnet110-cohen", 10, COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD)
    load_classifier_weights(classifier, load_state_dict_file(path), str(path))

    prefix = "1.module." if data_parallel else "1."
    loaded = classifier.net.state_dict()
    assert loaded.keys() == {k[len(prefix) :] for k in saved}
    for key, value in loaded.items():
        assert torch.equal(value, saved[prefix + key]), key
    # Their wrapper and ours compute the same function (in float64: an untrained ResNet-110's logits are in
    # the thousands, where float32 rounding alone differs by more than a tolerance could honestly allow).
    x = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        theirs = model.double().eval()(x)
        ours = classifier.double().eval()(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-9)


def test_their_checkpoint_under_another_normalization_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pth.tar"
    save_their_checkpoint(
        their_model("resnet110-cohen", NormalizeLayer(COHEN_CIFAR10_MEAN, COHEN_CIFAR10_STD)), path
    )
    classifier = build_classifier("resnet110-cohen", 10, DATASET_MEAN, DATASET_STD)
    before = {k: v.clone() for k, v in classifier.state_dict().items()}
    with pytest.raises(WeightsError) as err:
        load_classifier_weights(classifier, load_state_dict_file(path), str(path))
    message = str(err.value)
    assert "checkpoint.pth.tar comes from the Sequential(normalize, net) code CohenResNet" in message
    assert "std=[0.2023, 0.1994, 0.201], but the matrix gives [0.247, 0.2435, 0.2616]" in message
    assert "normalization: {mean: [0.4914, 0.4822, 0.4465], std: [0.2023, 0.1994, 0.201]}" in message
    for key, value in classifier.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("matching", [True, False])
def test_a_normalize_layer_that_records_its_statistics_is_checked(tmp_path: Path, matching: bool) -> None:
    """Where the statistics do reach the file they are what is checked, for any architecture."""
    model = their_model("resnet20", BufferedNormalizeLayer(DATASET_MEAN, DATASET_STD))
    path = tmp_path / "checkpoint.pth.tar"
    save_their_checkpoint(model, path)
    assert {"0.means", "0.sds"} <= model.state_dict().keys()
    std = DATASET_STD if matching else COHEN_CIFAR10_STD
    classifier = build_classifier("resnet20", 10, DATASET_MEAN, std)
    state = load_state_dict_file(path)
    if matching:
        load_classifier_weights(classifier, state, str(path))
        assert torch.equal(
            classifier.net.state_dict()["linear.weight"], model.state_dict()["1.linear.weight"]
        )
    else:
        with pytest.raises(WeightsError, match=r"saved behind a normalize layer with std=\[0\.247, 0\.2435"):
            load_classifier_weights(classifier, state, str(path))


def test_a_plain_network_takes_no_normalize_layer(tmp_path: Path) -> None:
    """Outside a classifier, recorded normalization has nowhere to go: it is refused, not dropped."""
    model = their_model("resnet20", BufferedNormalizeLayer(DATASET_MEAN, DATASET_STD))
    with pytest.raises(WeightsError, match=r"unexpected 0\.means, 0\.sds"):
        load_into(CLASSIFIERS.get("resnet20").factory(10), model.state_dict(), "wrapped")


class TinyDnCNN(nn.Module):
    """Module names as Salman et al.'s DnCNN (``dncnn.<i>``), small enough for a unit test."""

    def __init__(self) -> None:
        super().__init__()
        self.dncnn = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8, eps=1e-4, momentum=0.95),
            nn.ReLU(),
            nn.Conv2d(8, 3, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = x - self.dncnn(x)
        return out


@pytest.mark.parametrize("data_parallel", [False, True], ids=["cifar", "imagenet-dataparallel"])
def test_their_denoiser_checkpoint_loads_into_a_front_end(tmp_path: Path, data_parallel: bool) -> None:
    """``train_denoiser.py`` saves the denoiser bare (DataParallel for ImageNet), in the same dict."""
    torch.manual_seed(1)
    denoiser = TinyDnCNN()
    saved_module: nn.Module = nn.DataParallel(denoiser) if data_parallel else denoiser
    optimizer = torch.optim.Adam(saved_module.parameters(), lr=1e-3)
    path = tmp_path / "checkpoint.pth.tar"
    state = saved_module.state_dict()
    torch.save(
        {"epoch": 90, "arch": "cifar_dncnn", "state_dict": state, "optimizer": optimizer.state_dict()}, path
    )
    torch.manual_seed(2)
    fresh = TinyDnCNN()
    load_into(fresh, load_state_dict_file(path), str(path))
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, denoiser.state_dict()[key]), key
