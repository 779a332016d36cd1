"""Build a front-end and, for trainable defenses, train it through its frozen guides."""

from __future__ import annotations

import torch

from bench.api import DEFENSES, FrontEnd
from bench.data.splits import train_split
from bench.errors import EvaluationError
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobSpec
from bench.jobs.upstream import Upstream


def run(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
    c = spec.config
    ctx = env.ctx
    defense = DEFENSES.get(str(c["kind"]))()
    params = defense.Params.model_validate(c["params"])
    shape = tuple(int(v) for v in c["input_shape"])
    frontend = defense.build(params, (shape[0], shape[1], shape[2])).to(ctx.device)
    frontend.reseed(int(c["seed"]))
    # Shape first, before any training: a trainable front-end that crops would otherwise fail deep inside
    # its training loop with a torch error instead of this message.
    probe(frontend, shape, env, str(c["kind"]), check_range=False)
    metrics: dict[str, float] = {}
    if defense.trainable or defense.needs_data:
        guides = [upstream.classifier(k) for k in spec.deps]
        train, _ = train_split(env.dataset(str(c["dataset"]), "train"), int(c["n_train"]), 0)
        metrics = defense.fit(frontend, guides, train, params, ctx)
    probe(frontend, shape, env, str(c["kind"]), check_range=True)
    frontend.eval()
    return JobOutput(
        tensors={"frontend": dict(frontend.state_dict())},
        json={"card": {"kind": c["kind"], "params": c["params"], "guides": list(spec.deps), **metrics}},
        metrics=metrics,
    )


def probe(frontend: FrontEnd, shape: tuple[int, ...], env: Env, kind: str, *, check_range: bool) -> None:
    """Refuse a front-end that does not map images to images of the same shape (and, trained, in [0,1])."""
    training = frontend.training
    frontend.eval()
    # A private generator: the probe must not shift the global stream the front-end's training draws from.
    gen = torch.Generator(device=env.ctx.device).manual_seed(0)
    x = torch.rand(2, *shape, generator=gen, device=env.ctx.device)
    with torch.no_grad():
        out = frontend(x)
    frontend.train(training)
    if out.shape != x.shape:
        raise EvaluationError(
            f"defense {kind!r} maps inputs of shape {tuple(x.shape)} to {tuple(out.shape)}; "
            "a front-end must return images of the shape it is given"
        )
    if check_range and (not bool(torch.isfinite(out).all()) or float(out.min()) < 0 or float(out.max()) > 1):
        raise EvaluationError(f"defense {kind!r} returns values outside [0,1] or non-finite values")
