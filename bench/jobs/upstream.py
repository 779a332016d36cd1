"""Rebuilding upstream models from their artifacts, memoized for the duration of a run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from bench.api import DEFENSES, Classifier, FrontEnd, build_classifier, freeze, load_external, load_into
from bench.artifacts import StoredArtifact
from bench.data.sources import cache_dir
from bench.errors import EvaluationError, WeightsError
from bench.jobs.configs import ClassifierFromSource, ClassifierJobConfig, FrontEndJobConfig, JointClassifier
from bench.jobs.env import Env
from bench.jobs.spec import JobGraph, JobSpec

ArtifactLookup = Callable[[str], dict[str, StoredArtifact]]


def models_dir() -> Path:
    """Where zoo checkpoints (RobustBench's model_dir) are cached; pre-populate it to work offline."""
    return cache_dir() / "models"


def source_classifier(config: ClassifierFromSource) -> tuple[Classifier, dict[str, Any]]:
    """A model-zoo classifier with its published weights (the library caches them after the first load).

    There is no weights-free skeleton to rebuild it from: RobustBench only hands out its models with their
    checkpoints, and a torchvision or timm model's wrapper takes its normalization from the named weights.
    """
    norm = config.normalization
    net, meta = load_external(config.source, config.num_classes, pretrained=True, model_dir=models_dir())
    return Classifier(net, norm.mean, norm.std), meta


def new_classifier(config: ClassifierJobConfig) -> Classifier:
    """The module a classifier job's config describes, before its artifact's weights are loaded into it."""
    if isinstance(config, ClassifierFromSource):
        return source_classifier(config)[0]
    norm = config.normalization
    return build_classifier(config.arch, config.num_classes, norm.mean, norm.std)


def new_joint_classifier(config: JointClassifier) -> Classifier:
    """A classifier a front-end job trains with its front-end, initialized as an independently trained one of
    the same architecture and seed starts (its job seeds the global stream with that seed before building
    it), without shifting the front-end job's own stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return new_classifier(config)


def joint_artifact(index: int) -> str:
    """The front-end job's artifact holding the weights of its ``index``-th jointly trained classifier."""
    return f"classifier-{index}"


def new_frontend(config: FrontEndJobConfig) -> FrontEnd:
    """The module a front-end job's config describes, before it is trained or its artifact's weights loaded.

    Checked here because a plain module would otherwise fail far from its cause, deep inside an attack.
    """
    built = DEFENSES.get(config.kind)().build(config.params, config.input_shape)
    if not isinstance(built, FrontEnd):
        raise EvaluationError(
            f"defense {config.kind!r}: build() returned a {type(built).__name__}, not a front-end; return an "
            "instance of a subclass of bench.api.FrontEnd (it carries the private random stream the harness "
            "reseeds for every job)"
        )
    return built


def load_frontend_weights(frontend: FrontEnd, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load a matrix's weights file into a built front-end.

    The file holds the front-end's own state (a Frontline front-end artifact) or, for a front-end whose
    weights all live in one wrapped network, that network's state as its authors saved it: Salman et al.'s
    checkpoints hold a bare DnCNN, which a denoiser front-end wraps. Each module that holds all of the
    front-end's state is tried, from the front-end inward, and the first the file fits takes it; a failed
    try copies nothing. When none fits, the error gives each one's mismatch.
    """
    total = len(frontend.state_dict())
    candidates = [(name, m) for name, m in frontend.named_modules() if len(m.state_dict()) == total]
    if total == 0:
        candidates = candidates[:1]
    failed: list[tuple[str, WeightsError]] = []
    for name, module in candidates:
        try:
            load_into(module, state, source)
            return
        except WeightsError as exc:
            failed.append((name, exc))
    if len(failed) == 1:
        raise failed[0][1]
    tries = "; ".join(f"as {f'its network {n!r}' if n else 'the front-end'}: {e}" for n, e in failed)
    raise WeightsError(f"weights from {source} fit none of the front-end's networks. {tries}")


def guide_deps(graph: JobGraph, spec: JobSpec) -> tuple[str, ...]:
    """The guide classifiers' jobs among a front-end job's deps (its init front-end's job is not one)."""
    return tuple(k for k in spec.deps if graph[k].kind == "train-classifier")


def init_dep(graph: JobGraph, spec: JobSpec) -> str | None:
    """The job of the front-end a front-end job starts its training from (``init_from``), or None."""
    return next((k for k in spec.deps if graph[k].kind == "train-defense"), None)


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
            model = new_classifier(self.graph[key].settings_as(ClassifierJobConfig))
            model.load_state_dict(self.tensors(key, "model"))
            self._classifiers[key] = freeze(model.to(self.env.ctx.device))
        return self._classifiers[key]

    def guide(self, fe_key: str) -> Classifier | None:
        """The first guide of front-end job ``fe_key``, frozen: its first guide classifier, or the first
        classifier it trained with its front-end; None for a front-end trained without guides."""
        fe = self.graph[fe_key]
        joint = fe.settings_as(FrontEndJobConfig).classifiers
        if joint:
            model = new_classifier(joint[0])
            model.load_state_dict(self.tensors(fe_key, joint_artifact(0)))
            return freeze(model.to(self.env.ctx.device))
        guides = guide_deps(self.graph, fe)
        return self.classifier(guides[0]) if guides else None

    def frontend(self, key: str) -> FrontEnd:
        """A fresh front-end each time: a randomized one's generator state must not leak across jobs."""
        fe = new_frontend(self.graph[key].settings_as(FrontEndJobConfig))
        fe.load_state_dict(self.tensors(key, "frontend"))
        fe.to(self.env.ctx.device).eval()
        for p in fe.parameters():
            p.requires_grad_(False)
        return fe
