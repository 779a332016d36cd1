"""Train a classifier with its recipe, or bring in weights from a file, a model zoo or the front-end job that
trained it jointly with its front-end; write its card."""

from __future__ import annotations

from pathlib import Path

import torch

from bench.api import (
    RECIPES,
    ImageData,
    JobContext,
    count_correct,
    load_classifier_weights,
    load_state_dict_file,
    saved_normalization,
    sha256_file,
)
from bench.data.splits import train_split
from bench.errors import WeightsError
from bench.jobs.configs import (
    ClassifierFromSource,
    ClassifierFromWeights,
    ClassifierJobConfig,
    JointClassifier,
    TrainedClassifier,
)
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobSpec
from bench.jobs.upstream import Upstream, joint_artifact, new_classifier, source_classifier


def run(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
    c = spec.settings_as(ClassifierJobConfig)
    ctx = env.ctx
    source_meta: dict[str, object] | None = None
    if isinstance(c, ClassifierFromSource):
        model, source_meta = source_classifier(c)
    else:
        model = new_classifier(c)
    card: dict[str, object] = {
        "arch": c.arch,
        "dataset": c.dataset,
        "seed": c.seed,
        "origin": c.origin,
        "normalization": c.normalization.model_dump(),
        "device": str(ctx.device),
    }
    metrics: dict[str, float] = {}
    # Where the normalization in front of the network came from, for the card and the report: a trained
    # classifier's is the matrix's (by default the dataset's statistics) unless it starts from a file that
    # records one, a zoo model brings its own.
    normalization_from = "model source" if c.origin == "source" else "matrix"
    if isinstance(c, TrainedClassifier):
        recipe = RECIPES.get(c.recipe)()
        params = c.train
        if c.init_sha256 is not None:
            # A resumed run then loads its checkpoint over these weights.
            name, recorded = load_checked(model, spec, "init_weights", c.init_sha256)
            card.update(init_weights=name, init_sha256=c.init_sha256)
            normalization_from = "weights file" if recorded else normalization_from
        train, val = train_split(env.dataset(c.dataset, "train"), params.n_train, params.n_val)
        metrics.update(recipe.fit(model, train, params, ctx))
        if ctx.checkpoints is not None and ctx.checkpoints.resumed_from is not None:
            metrics["resumed_from_epoch"] = ctx.checkpoints.resumed_from
        card.update(recipe=c.recipe, train_params=params.model_dump(mode="json"), n_train=len(train))
        if val is not None:
            metrics["val_accuracy"] = accuracy(model, val, ctx)
    elif isinstance(c, ClassifierFromWeights):
        name, recorded = load_checked(model, spec, "weights", c.weights_sha256)
        card.update(weights=name, weights_sha256=c.weights_sha256)
        normalization_from = "weights file" if recorded else normalization_from
    elif isinstance(c, ClassifierFromSource):
        card.update(source=c.source, source_meta=source_meta)
    elif isinstance(c, JointClassifier):
        # Trained inside its front-end's job (the one dep), which kept the weights beside the front-end.
        model.load_state_dict(upstream.tensors(spec.deps[0], joint_artifact(c.index)))
        card.update(trained_with=upstream.graph[spec.deps[0]].label)
    test = env.dataset(c.dataset, "test")
    metrics["test_accuracy"] = accuracy(model, test, ctx)
    metrics["test_n"] = len(test)
    card.update(metrics, normalization_from=normalization_from)
    return JobOutput(
        tensors={"model": {k: v for k, v in model.state_dict().items()}},
        json={"card": card},
        metrics={**metrics, "normalization_from": normalization_from},
    )


def load_checked(model: torch.nn.Module, spec: JobSpec, location: str, sha256: str) -> tuple[str, bool]:
    """Load the weights file at the job's ``location`` into ``model`` after checking it is the content the
    run was planned with; returns the file's name and whether it records its normalization (then the
    matrix's, if it gave one, equals it)."""
    path = Path(spec.locations[location])
    if sha256_file(path) != sha256:
        raise WeightsError(f"weights file {path} changed since the run was planned; run again")
    state = load_state_dict_file(path)
    load_classifier_weights(model, state, str(path))
    return path.name, saved_normalization(state) is not None


def accuracy(model: torch.nn.Module, data: ImageData, ctx: JobContext) -> float:
    return count_correct(model, data, ctx.device) / max(1, len(data))
