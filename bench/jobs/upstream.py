"""Rebuilding upstream models from their artifacts, memoized for the duration of a run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.api import DEFENSES, Classifier, FrontEnd, build_classifier, freeze, load_external
from bench.artifacts import StoredArtifact
from bench.data.sources import cache_dir
from bench.jobs.env import Env
from bench.jobs.spec import JobGraph

ArtifactLookup = Callable[[str], dict[str, StoredArtifact]]


def models_dir() -> Path:
    """Where zoo checkpoints (RobustBench's model_dir) are cached; pre-populate it to work offline."""
    return cache_dir() / "models"


def source_classifier(config: dict[str, object]) -> tuple[Classifier, dict[str, Any]]:
    """A model-zoo classifier with its published weights (the library caches them after the first load).

    There is no weights-free skeleton to rebuild it from: RobustBench only hands out its models with their
    checkpoints, and a torchvision or timm model's wrapper takes its normalization from the named weights.
    """
    norm = config["normalization"]
    assert isinstance(norm, dict)
    num_classes = int(str(config["num_classes"]))
    net, meta = load_external(str(config["source"]), num_classes, pretrained=True, model_dir=models_dir())
    return Classifier(net, norm["mean"], norm["std"]), meta


def new_classifier(config: dict[str, object]) -> Classifier:
    """The module a classifier job's config describes, before its artifact's weights are loaded into it."""
    if config.get("origin") == "source":
        return source_classifier(config)[0]
    norm = config["normalization"]
    assert isinstance(norm, dict)
    return build_classifier(str(config["arch"]), int(str(config["num_classes"])), norm["mean"], norm["std"])


class Upstream:
    def __init__(self, graph: JobGraph, env: Env, artifacts: ArtifactLookup) -> None:
        self.graph = graph
        self.env = env
        self.artifacts = artifacts
        self._classifiers: dict[str, Classifier] = {}

    def tensors(self, key: str, name: str) -> dict[str, torch.Tensor]:
        found = self.artifacts(key)
        if name not in found:
            raise KeyError(f"job {self.graph[key].label!r} has no artifact {name!r}")
        return self.env.artifacts.read_tensors(found[name])

    def json(self, key: str, name: str) -> Any:
        found = self.artifacts(key)
        if name not in found:
            raise KeyError(f"job {self.graph[key].label!r} has no artifact {name!r}")
        return self.env.artifacts.read_json(found[name])

    def classifier(self, key: str) -> Classifier:
        """A frozen classifier on the job device; shared, since nothing may change a frozen model."""
        if key not in self._classifiers:
            model = new_classifier(self.graph[key].config)
            model.load_state_dict(self.tensors(key, "model"))
            self._classifiers[key] = freeze(model.to(self.env.ctx.device))
        return self._classifiers[key]

    def frontend(self, key: str) -> FrontEnd:
        """A fresh front-end each time: a randomized one's generator state must not leak across jobs."""
        config = self.graph[key].config
        defense = DEFENSES.get(str(config["kind"]))()
        params = defense.Params.model_validate(config["params"])
        shape = tuple(int(v) for v in config["input_shape"])
        fe = defense.build(params, (shape[0], shape[1], shape[2]))
        fe.load_state_dict(self.tensors(key, "frontend"))
        fe.to(self.env.ctx.device).eval()
        for p in fe.parameters():
            p.requires_grad_(False)
        return fe
