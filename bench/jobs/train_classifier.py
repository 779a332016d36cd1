"""Train a classifier with its recipe, or bring in weights from a file or a model zoo; write its card."""

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
    sha256_file,
)
from bench.data.splits import train_split
from bench.errors import WeightsError
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobSpec
from bench.jobs.upstream import Upstream, new_classifier, source_classifier


def run(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
    c = spec.config
    ctx = env.ctx
    source_meta: dict[str, object] | None = None
    if c["origin"] == "source":
        model, source_meta = source_classifier(c)
    else:
        model = new_classifier(c)
    card: dict[str, object] = {
        "arch": c["arch"],
        "dataset": c["dataset"],
        "seed": c["seed"],
        "origin": c["origin"],
        "normalization": c["normalization"],
        "device": str(ctx.device),
    }
    metrics: dict[str, float] = {}
    if c["origin"] == "train":
        recipe = RECIPES.get(str(c["recipe"]))()
        params = recipe.Params.model_validate(c["train"])
        train, val = train_split(env.dataset(str(c["dataset"]), "train"), params.n_train, params.n_val)
        metrics.update(recipe.fit(model, train, params, ctx))
        card.update(recipe=c["recipe"], train_params=c["train"], n_train=len(train))
        if val is not None:
            metrics["val_accuracy"] = accuracy(model, val, ctx)
    elif c["origin"] == "weights":
        path = Path(spec.locations["weights"])
        if sha256_file(path) != c["weights_sha256"]:
            raise WeightsError(f"weights file {path} changed since the run was planned; run again")
        load_classifier_weights(model, load_state_dict_file(path), str(path))
        card.update(weights=path.name, weights_sha256=c["weights_sha256"])
    else:
        card.update(source=c["source"], source_meta=source_meta)
    test = env.dataset(str(c["dataset"]), "test")
    metrics["test_accuracy"] = accuracy(model, test, ctx)
    metrics["test_n"] = len(test)
    card.update(metrics)
    return JobOutput(
        tensors={"model": {k: v for k, v in model.state_dict().items()}},
        json={"card": card},
        metrics=metrics,
    )


def accuracy(model: torch.nn.Module, data: ImageData, ctx: JobContext) -> float:
    return count_correct(model, data, ctx.device) / max(1, len(data))
