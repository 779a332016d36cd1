"""Outside models as targets, offline: source parsing, construction, the weights_only guard, RobustBench."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import classifiers  # noqa: F401  (registers the built-in architectures)
from bench.api import CLASSIFIERS, Classifier, check_external, load_external, parse_source
from bench.errors import ConfigError, UnknownNameError, WeightsError
from classifiers.adapters import (
    FORCE_NO_WEIGHTS_ONLY,
    FORCE_WEIGHTS_ONLY,
    IMAGENET_MEAN,
    IMAGENET_STD,
    import_robustbench,
)


class Offline(ConnectionError):
    """Stands in for every network failure; the tests never touch the network."""


class RunsShell:
    """Unpickling this runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (self.command,)


@pytest.mark.parametrize(
    ("source", "parsed"),
    [
        ("torchvision:resnet18", ("torchvision", ("resnet18",))),
        ("torchvision:resnet18:IMAGENET1K_V1", ("torchvision", ("resnet18", "IMAGENET1K_V1"))),
        ("timm:resnet18.a1_in1k", ("timm", ("resnet18.a1_in1k",))),
        (
            "robustbench:Carmon2019Unlabeled:cifar10:Linf",
            ("robustbench", ("Carmon2019Unlabeled", "cifar10", "Linf")),
        ),
    ],
)
def test_parse_source(source: str, parsed: tuple[str, tuple[str, ...]]) -> None:
    assert parse_source(source) == parsed


@pytest.mark.parametrize("source", ["resnet18", "timm:", ":resnet18", "robustbench:Standard::Linf", ""])
def test_malformed_sources_raise(source: str) -> None:
    with pytest.raises(ConfigError, match="malformed"):
        parse_source(source)


def test_unknown_library_lists_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="model source 'torchvison'; did you mean 'torchvision'"):
        load_external("torchvison:resnet18", 10)


def test_too_many_fields_raise() -> None:
    with pytest.raises(ConfigError, match="too many fields"):
        load_external("timm:resnet18:extra", 10, pretrained=False)


def test_torchvision_model_normalizes_inside() -> None:
    torch.manual_seed(0)
    model, info = load_external("torchvision:resnet18", 10, pretrained=False)
    assert isinstance(model, Classifier) and not model.training
    assert info == {
        "source": "torchvision:resnet18",
        "library": "torchvision",
        "model": "resnet18",
        "weights": None,
        "num_classes": 10,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "input_size": None,
    }
    x = torch.rand(2, 3, 32, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = model(x)
        assert logits.shape == (2, 10)
        assert torch.allclose(logits, model.net((x - mean) / std))


def test_torchvision_weights_are_checked_before_any_download() -> None:
    with pytest.raises(UnknownNameError, match=r"'IMAGENET9K'.*valid: DEFAULT, IMAGENET1K_V1"):
        load_external("torchvision:resnet18:IMAGENET9K", 1000)
    with pytest.raises(ConfigError, match="has 1000 classes but the dataset has 10"):
        load_external("torchvision:resnet18", 10)
    with pytest.raises(ConfigError, match="pretrained=False"):
        load_external("torchvision:resnet18:IMAGENET1K_V1", 1000, pretrained=False)
    with pytest.raises(UnknownNameError, match="did you mean 'resnet18'"):
        load_external("torchvision:resnt18", 10, pretrained=False)


def test_torchvision_download_is_weights_only_and_failures_are_weights_errors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torchvision.models._api as tv_api

    seen: dict[str, str | None] = {}

    def no_network(*args: Any, **kwargs: Any) -> None:
        seen["force"] = os.environ.get(FORCE_WEIGHTS_ONLY)
        seen["force_no"] = os.environ.get(FORCE_NO_WEIGHTS_ONLY)
        raise Offline("no network in tests")

    monkeypatch.setattr(tv_api, "load_state_dict_from_url", no_network)
    monkeypatch.setenv(FORCE_NO_WEIGHTS_ONLY, "1")  # a user's override must not reach third-party loads
    with pytest.raises(WeightsError, match=r"torchvision weights ResNet18_Weights\.IMAGENET1K_V1.*network"):
        load_external("torchvision:resnet18", 1000)
    assert seen == {"force": "1", "force_no": None}
    assert os.environ.get(FORCE_WEIGHTS_ONLY) is None
    assert os.environ[FORCE_NO_WEIGHTS_ONLY] == "1"


def test_timm_model_construction() -> None:
    model, info = load_external("timm:resnet18", 100, pretrained=False)
    assert isinstance(model, Classifier) and not model.training
    assert info["mean"] == IMAGENET_MEAN and info["std"] == IMAGENET_STD and info["weights"] is None
    with torch.no_grad():
        assert model(torch.rand(2, 3, 32, 32)).shape == (2, 100)
    with pytest.raises(ConfigError, match="unknown timm model 'resnt18'; did you mean 'resnet18'"):
        load_external("timm:resnt18", 10, pretrained=False)


def test_timm_download_failure_is_a_weights_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm.models._builder as timm_builder

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise Offline("no network in tests")

    monkeypatch.setattr(timm_builder, "load_pretrained", no_network)
    with pytest.raises(WeightsError, match=r"timm pretrained weights for 'resnet18'.*Offline"):
        load_external("timm:resnet18", 1000)


@pytest.fixture(scope="module")
def robustbench() -> Any:
    return import_robustbench()


def test_robustbench_imports_against_pyautoattack(robustbench: Any) -> None:
    import pyautoattack
    import pyautoattack.state
    import robustbench.eval as rb_eval

    assert sys.modules["autoattack"] is pyautoattack, "only pyautoattack is installed: the alias must be used"

    # One copy of each module: robustbench's AutoAttack and evaluation state are pyautoattack's own classes.
    assert rb_eval.AutoAttack is pyautoattack.AutoAttack
    assert rb_eval.EvaluationState is pyautoattack.state.EvaluationState
    assert sys.modules["autoattack.state"] is pyautoattack.state


def test_robustbench_without_network_is_a_weights_error(
    robustbench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requested: list[str] = []

    def no_network(gdrive_id: str, fname_save: str | Path) -> None:
        requested.append(str(fname_save))
        raise Offline("no network in tests")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", no_network)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        load_external("robustbench:Standard:cifar10:Linf", 10, model_dir=tmp_path)
    message = str(err.value)
    assert "RobustBench model 'Standard' (cifar10, Linf)" in message
    assert "network" in message and str(tmp_path) in message
    assert requested == [str(tmp_path / "cifar10" / "Linf" / "Standard.pt")]


def test_robustbench_loads_offline_from_a_populated_model_dir(
    robustbench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RobustBench's "Standard" entry is a WRN-28-10 with our key names, so our weights fit it exactly."""

    def no_network(*args: Any) -> None:
        raise AssertionError("the checkpoint is on disk; nothing should be downloaded")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", no_network)
    torch.manual_seed(0)
    ours = CLASSIFIERS.get("wrn28_10").factory(10).eval()
    checkpoint = tmp_path / "cifar10" / "Linf" / "Standard.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": {"module." + k: v for k, v in ours.state_dict().items()}}, checkpoint)

    model, info = load_external("robustbench:Standard", 10, model_dir=tmp_path)
    assert info["mean"] is None and info["input_size"] == (3, 32, 32)
    assert not model.training
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ours(x))


def test_robustbench_checkpoint_on_disk_is_loaded_weights_only(
    robustbench: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """robustbench calls torch.load itself; a hostile file in model_dir must still not run."""
    monkeypatch.setenv(FORCE_NO_WEIGHTS_ONLY, "1")
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / "cifar10" / "Linf" / "Standard.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"state_dict": {}, "hook": RunsShell(f"touch {marker}")}, checkpoint)
    with pytest.raises(WeightsError, match=r"'Standard' \(cifar10, Linf\): the checkpoint was refused"):
        load_external("robustbench:Standard", 10, model_dir=tmp_path)
    assert not marker.exists()

    checkpoint.write_bytes(b"truncated")
    with pytest.raises(WeightsError, match="is there but unusable; delete it"):
        load_external("robustbench:Standard", 10, model_dir=tmp_path)


def test_robustbench_names_are_checked_before_any_download(robustbench: Any) -> None:
    with pytest.raises(UnknownNameError, match="did you mean 'Standard'"):
        load_external("robustbench:Standrd", 10)
    with pytest.raises(UnknownNameError, match="RobustBench dataset 'cifar1000'"):
        load_external("robustbench:Standard:cifar1000", 10)
    with pytest.raises(UnknownNameError, match="threat model for cifar10 'Linfinity'"):
        load_external("robustbench:Standard:cifar10:Linfinity", 10)
    with pytest.raises(ConfigError, match="has 10 classes but the dataset has 100"):
        load_external("robustbench:Standard", 100)
    with pytest.raises(ConfigError, match="only available with their weights"):
        load_external("robustbench:Standard", 10, pretrained=False)


# ----------------------------------------------------------------------- checks before any download


def test_check_refuses_imagenet_weights_for_a_ten_class_dataset() -> None:
    with pytest.raises(ConfigError, match="has 1000 classes but the dataset has 10"):
        check_external("torchvision:resnet18", 10)
    with pytest.raises(UnknownNameError, match="weights for torchvision resnet18"):
        check_external("torchvision:resnet18:NO_SUCH_WEIGHTS", 1000)
    check_external("torchvision:resnet18:IMAGENET1K_V1", 1000)


def test_check_reads_timm_class_counts_from_its_config_not_a_download() -> None:
    with pytest.raises(ConfigError, match="timm resnet18.a1_in1k has 1000 classes"):
        check_external("timm:resnet18.a1_in1k", 10)
    with pytest.raises(ConfigError, match="unknown timm model 'resnet18x'"):
        check_external("timm:resnet18x", 1000)


def test_check_knows_robustbench_entries_without_their_checkpoints(
    robustbench: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: Any) -> None:
        raise AssertionError("a check must not download anything")

    monkeypatch.setattr(robustbench.utils, "download_gdrive_new", no_network)
    check_external("robustbench:Standard", 10)
    with pytest.raises(ConfigError, match="has 10 classes but the dataset has 100"):
        check_external("robustbench:Standard", 100)


def test_a_library_without_a_check_is_only_looked_up() -> None:
    with pytest.raises(UnknownNameError, match="model source"):
        check_external("nosuchlib:model", 10)
