"""Model sources: classifiers that come from a library's zoo rather than from the matrix's own training.

A source string names the library and the model (``torchvision:resnet18``, ``robustbench:Standard:cifar10``).
Libraries are looked up in :data:`SOURCES`; packages add their own loader through the ``frontline.sources``
entry-point group, and a check that refuses a bad name without downloading anything through
``frontline.source_checks``. Every loader returns a module taking unnormalized [0,1] images.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from bench.api.registry import Registry
from bench.errors import ConfigError


@dataclass(frozen=True)
class LoadOptions:
    #: False builds the architecture with random weights (offline; for tests and for training here).
    pretrained: bool = True
    #: RobustBench's checkpoint folder, laid out as ``<model_dir>/<dataset>/<threat_model>/<name>.pt``;
    #: pre-populate it to work offline. torchvision and timm keep their own caches (TORCH_HOME, HF_HOME).
    model_dir: Path = Path("models")


#: ``loader(args, num_classes, options)`` where ``args`` are the source string's fields after the library.
SourceLoader = Callable[[tuple[str, ...], int, LoadOptions], tuple[nn.Module, dict[str, Any]]]

SOURCES: Registry[SourceLoader] = Registry("model source")

#: ``check(args, num_classes)``: everything a loader would refuse that can be known without downloading
#: (model and weights names, class count), so a matrix naming a wrong zoo model stops before any work.
SourceCheck = Callable[[tuple[str, ...], int], None]

SOURCE_CHECKS: Registry[SourceCheck] = Registry("model source check")


def parse_source(source: str) -> tuple[str, tuple[str, ...]]:
    """``"robustbench:Standard:cifar10"`` -> ``("robustbench", ("Standard", "cifar10"))``."""
    library, _, rest = source.partition(":")
    fields = tuple(rest.split(":")) if rest else ()
    if not library or not fields or not all(fields):
        raise ConfigError(
            f"model source {source!r} is malformed: expected <library>:<model>[:<option>...], e.g. "
            "torchvision:resnet18, timm:resnet18.a1_in1k or robustbench:Standard:cifar10:Linf"
        )
    return library, fields


def load_external(
    source: str, num_classes: int, *, pretrained: bool = True, model_dir: str | os.PathLike[str] = "models"
) -> tuple[nn.Module, dict[str, Any]]:
    """Build the model ``source`` names, in eval mode, taking [0,1] inputs; also return what describes it.

    The description holds ``source``, ``library``, ``model``, ``weights``, ``num_classes``, ``mean`` and
    ``std`` (the normalization applied inside; None when the model does its own) and ``input_size``
    (the resolution the weights were evaluated at, when known).
    """
    library, fields = parse_source(source)
    loader = SOURCES.get(library)
    model, info = loader(fields, num_classes, LoadOptions(pretrained, Path(model_dir)))
    return model.eval(), {"source": source, "library": library, **info}


def check_external(source: str, num_classes: int) -> None:
    """Refuse, without downloading anything, a source its loader would refuse with its published weights.

    Libraries that register no check (third-party ones may not) are only checked for being registered.
    """
    library, fields = parse_source(source)
    SOURCES.get(library)
    if library in SOURCE_CHECKS:
        SOURCE_CHECKS.get(library)(fields, num_classes)
