"""Models from torchvision, timm and RobustBench as attack targets.

A source string names the library and the model: ``torchvision:<name>[:<weights enum name>]``,
``timm:<name>`` (a ``name.tag`` picks timm pretrained weights) or
``robustbench:<model_name>[:<dataset>[:<threat_model>]]`` (default ``cifar10`` and ``Linf``). Libraries are
looked up in :data:`SOURCES`; packages add their own through the ``frontline.sources`` entry-point group.

Every model Frontline attacks takes unnormalized [0,1] images, so attacks and defenses work in pixel space
whatever the model was trained with. Each adapter therefore returns a module that normalizes its own input:
torchvision and timm networks are wrapped in :class:`classifiers.base.Classifier` with the statistics their
weights were trained with, and RobustBench models are returned as they are, since RobustBench's convention is
already [0,1] inputs with any normalization inside the model.

Downloads run with ``torch.load`` forced to ``weights_only`` (torchvision's own loader would unpickle in
full), and any failure to fetch or read third-party weights becomes a :class:`~bench.errors.WeightsError`.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

import torchvision.models as tvm
from torch import nn

from bench.api import (
    SOURCE_CHECKS,
    SOURCES,
    BenchError,
    Classifier,
    ConfigError,
    LoadOptions,
    UnknownNameError,
    WeightsError,
    refusal_reason,
)

#: The statistics torchvision's (and most timm) ImageNet weights were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: torch.load's environment switches: the first overrides even an explicit ``weights_only=False``.
FORCE_WEIGHTS_ONLY = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
FORCE_NO_WEIGHTS_ONLY = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def _fields(fields: tuple[str, ...], library: str, usage: str, defaults: tuple[str, ...]) -> tuple[str, ...]:
    """Pad the optional fields with ``defaults``; too many fields is an error naming the usage."""
    if len(fields) > 1 + len(defaults):
        raise ConfigError(f"{library} source {':'.join((library, *fields))!r} has too many fields: {usage}")
    return fields + defaults[len(fields) - 1 :]


def _check_classes(what: str, has: int, wanted: int) -> None:
    if has != wanted:
        raise ConfigError(f"{what} has {has} classes but the dataset has {wanted}")


@contextmanager
def _third_party_weights(what: str, offline_hint: str) -> Iterator[None]:
    """Force ``weights_only`` on every ``torch.load`` inside, and report failures as WeightsError.

    The environment variable is the only switch that reaches ``torch.load`` calls inside other libraries;
    it is process-wide while set, which can only make concurrent loads safer.
    """
    saved = {k: os.environ.get(k) for k in (FORCE_WEIGHTS_ONLY, FORCE_NO_WEIGHTS_ONLY)}
    os.environ[FORCE_WEIGHTS_ONLY] = "1"
    os.environ.pop(FORCE_NO_WEIGHTS_ONLY, None)
    try:
        yield
    except BenchError:
        raise
    except pickle.UnpicklingError as e:
        raise WeightsError(f"{what}: the checkpoint was refused: {refusal_reason(str(e))}") from e
    except Exception as e:  # downloaders and loaders fail in library-specific ways; none is Frontline's bug
        raise WeightsError(f"{what} could not be loaded ({type(e).__name__}: {e}). {offline_hint}") from e
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _torchvision_name(fields: tuple[str, ...]) -> tuple[str, str]:
    name, weights_name = _fields(fields, "torchvision", "torchvision:<model>[:<weights>]", ("DEFAULT",))
    available = tvm.list_models(module=tvm)
    if name not in available:
        raise UnknownNameError("torchvision classification model", name, available)
    return name, weights_name


def _torchvision_weights(fields: tuple[str, ...], num_classes: int) -> Any:
    """The weights enum member the source names, refused when its class count is not the dataset's."""
    name, weights_name = _torchvision_name(fields)
    enum = tvm.get_model_weights(name)
    try:
        weights = enum[weights_name]
    except KeyError:
        raise UnknownNameError(
            f"weights for torchvision {name}", weights_name, ["DEFAULT", *(w.name for w in enum)]
        ) from None
    _check_classes(f"torchvision {name} with {weights}", len(weights.meta["categories"]), num_classes)
    return weights


@SOURCE_CHECKS.register("torchvision")
def _check_torchvision(fields: tuple[str, ...], num_classes: int) -> None:
    _torchvision_weights(fields, num_classes)


@SOURCES.register("torchvision", "torchvision classifiers, wrapped with their weights' normalization")
def torchvision_model(
    fields: tuple[str, ...], num_classes: int, options: LoadOptions
) -> tuple[nn.Module, dict[str, Any]]:
    name, weights_name = _torchvision_name(fields)
    if not options.pretrained:
        if len(fields) > 1:
            raise ConfigError(f"torchvision weights {weights_name!r} named, but pretrained=False")
        net = tvm.get_model(name, weights=None, num_classes=num_classes)
        return Classifier(net, IMAGENET_MEAN, IMAGENET_STD), {
            "model": name,
            "weights": None,
            "num_classes": num_classes,
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "input_size": None,
        }
    weights = _torchvision_weights(fields, num_classes)
    with _third_party_weights(
        f"torchvision weights {weights}",
        "Downloading them needs network access; offline, pre-populate $TORCH_HOME.",
    ):
        net = tvm.get_model(name, weights=weights)
    preset = weights.transforms()
    mean, std = tuple(preset.mean), tuple(preset.std)
    return Classifier(net, mean, std), {
        "model": name,
        "weights": weights.name,
        "num_classes": num_classes,
        "mean": mean,
        "std": std,
        "input_size": (3, preset.crop_size[0], preset.crop_size[0]),
    }


def _timm_name(fields: tuple[str, ...]) -> str:
    try:
        import timm
    except ModuleNotFoundError as exc:
        raise ConfigError(f"timm sources need timm (pip install 'frontline-bench[zoo]'): {exc}") from exc

    (name,) = _fields(fields, "timm", "timm:<model>[.<tag>]", ())
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else " (see timm.list_models())"
        raise ConfigError(f"unknown timm model {name!r}{hint}")
    return name


@SOURCE_CHECKS.register("timm")
def _check_timm(fields: tuple[str, ...], num_classes: int) -> None:
    import timm.models

    name = _timm_name(fields)
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as exc:  # timm's answer to an unknown pretrained tag
        raise ConfigError(f"timm model {name!r}: {exc}") from exc
    if cfg is None:
        raise ConfigError(f"timm model {name!r} has no pretrained weights to load")
    if cfg.num_classes is not None:
        _check_classes(f"timm {name}", int(cfg.num_classes), num_classes)


@SOURCES.register("timm", "timm models (name or name.tag), wrapped with their pretrained normalization")
def timm_model(
    fields: tuple[str, ...], num_classes: int, options: LoadOptions
) -> tuple[nn.Module, dict[str, Any]]:
    import timm
    import timm.data

    name = _timm_name(fields)
    if options.pretrained:
        with _third_party_weights(
            f"timm pretrained weights for {name!r}",
            "Downloading them needs network access; offline, pre-populate $HF_HOME.",
        ):
            # Without num_classes: timm would otherwise swap in a random head for a different class count.
            net = timm.create_model(name, pretrained=True)
        _check_classes(f"timm {name}", net.num_classes, num_classes)
    else:
        net = timm.create_model(name, pretrained=False, num_classes=num_classes)
    config = timm.data.resolve_model_data_config(net)
    mean, std = tuple(config["mean"]), tuple(config["std"])
    return Classifier(net, mean, std), {
        "model": name,
        "weights": net.pretrained_cfg.get("tag") if options.pretrained else None,
        "num_classes": num_classes,
        "mean": mean,
        "std": std,
        "input_size": tuple(config["input_size"]) if options.pretrained else None,
    }


def import_robustbench() -> ModuleType:
    """Import robustbench, first making the AutoAttack it expects importable.

    robustbench does ``from autoattack import AutoAttack`` (and ``autoattack.state``), the module name of
    AutoAttack's GitHub repository, which is not on PyPI; the PyPI release installs the same code as
    ``pyautoattack``. Aliasing the package alone is not enough: ``import autoattack.state`` would then run
    a second copy of the submodule, whose classes differ from those AutoAttack itself uses, so the submodules
    already loaded are aliased too.
    """
    if importlib.util.find_spec("autoattack") is None:
        try:
            package = importlib.import_module("pyautoattack")
        except ModuleNotFoundError as e:
            raise ConfigError("robustbench needs AutoAttack: pip install pyautoattack") from e
        sys.modules.setdefault("autoattack", package)
        for module_name, module in list(sys.modules.items()):
            if module_name.startswith("pyautoattack."):
                sys.modules.setdefault("autoattack" + module_name[len("pyautoattack") :], module)
    try:
        return importlib.import_module("robustbench")
    except ModuleNotFoundError as e:
        raise ConfigError(
            f"robustbench sources need the zoo extra (pip install 'frontline-bench[zoo]'): {e}"
        ) from e


#: Image size RobustBench evaluates each dataset at (ImageNet after its default resize-256 / crop-224).
ROBUSTBENCH_INPUT = {"cifar10": (3, 32, 32), "cifar100": (3, 32, 32), "imagenet": (3, 224, 224)}


def _robustbench_entry(fields: tuple[str, ...], num_classes: int) -> tuple[str, str, str]:
    """(model, dataset, threat model) of a zoo entry that exists and has the dataset's class count."""
    name, dataset, threat_model = _fields(
        fields, "robustbench", "robustbench:<model_name>[:<dataset>[:<threat_model>]]", ("cifar10", "Linf")
    )
    robustbench = import_robustbench()
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    datasets = {d.value: d for d in BenchmarkDataset}
    if dataset not in datasets:
        raise UnknownNameError("RobustBench dataset", dataset, datasets)
    zoo_of_dataset = model_dicts[datasets[dataset]]
    threats = {t.value: t for t in ThreatModel if t in zoo_of_dataset}
    if threat_model not in threats:
        raise UnknownNameError(f"RobustBench threat model for {dataset}", threat_model, threats)
    zoo = zoo_of_dataset[threats[threat_model]]
    if name not in zoo:
        raise UnknownNameError(f"RobustBench {dataset}/{threat_model} model", name, zoo)
    zoo_classes = robustbench.utils.DATASET_CLASSES[datasets[dataset]]
    _check_classes(f"RobustBench {dataset} model {name}", zoo_classes, num_classes)
    return name, dataset, threat_model


@SOURCE_CHECKS.register("robustbench")
def _check_robustbench(fields: tuple[str, ...], num_classes: int) -> None:
    _robustbench_entry(fields, num_classes)


@SOURCES.register("robustbench", "RobustBench model zoo entries (they take [0,1] inputs already)")
def robustbench_model(
    fields: tuple[str, ...], num_classes: int, options: LoadOptions
) -> tuple[nn.Module, dict[str, Any]]:
    if not options.pretrained:
        raise ConfigError("robustbench sources are only available with their weights (pretrained=True)")
    name, dataset, threat_model = _robustbench_entry(fields, num_classes)
    robustbench = import_robustbench()
    checkpoint = options.model_dir / dataset / threat_model / f"{name}.pt"
    hint = (
        f"The checkpoint {checkpoint} is there but unusable; delete it to fetch it again."
        if checkpoint.is_file()
        else f"Fetching it needs network access; offline, pre-populate the model_dir {options.model_dir} "
        f"(RobustBench layout: {checkpoint}) or, for timm-hosted entries, $HF_HOME."
    )
    with _third_party_weights(f"RobustBench model {name!r} ({dataset}, {threat_model})", hint):
        net = robustbench.utils.load_model(
            model_name=name, dataset=dataset, threat_model=threat_model, model_dir=str(options.model_dir)
        )
    return net, {
        "model": name,
        "weights": f"{dataset}/{threat_model}",
        "num_classes": num_classes,
        "mean": None,
        "std": None,
        "input_size": ROBUSTBENCH_INPUT.get(dataset),
    }
