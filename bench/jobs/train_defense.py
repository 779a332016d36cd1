"""Build a front-end and, for trainable defenses, train it through its frozen guides, or, for a defense that
trains its own classifiers, together with new ones, which the job keeps beside the front-end. A front-end may
start its training from another front-end job's artifact (``init_from``), or be loaded from a weights file
instead of trained."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

import torch
from torch import nn

from bench.api import DEFENSES, FrontEnd, freeze, load_into, load_state_dict_file, sha256_file
from bench.data.splits import train_split
from bench.errors import ConfigError, EvaluationError, WeightsError
from bench.jobs.configs import FrontEndJobConfig
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobSpec
from bench.jobs.upstream import (
    Upstream,
    guide_deps,
    init_dep,
    joint_artifact,
    load_frontend_weights,
    new_frontend,
    new_joint_classifier,
)


def run(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
    c = spec.settings_as(FrontEndJobConfig)
    ctx = env.ctx
    defense = DEFENSES.get(c.kind)()
    params = c.params
    shape = c.input_shape
    frontend = new_frontend(c).to(ctx.device)
    frontend.reseed(c.seed)
    # Shape first, before any training: a trainable front-end that crops would otherwise fail deep inside
    # its training loop with a torch error instead of this message.
    probe(frontend, shape, env, c.kind, check_range=False)
    metrics: dict[str, float] = {}
    guides: list[nn.Module] = []
    guide_keys = guide_deps(upstream.graph, spec)
    card: dict[str, object] = {"kind": c.kind, "params": params.model_dump(mode="json")}
    card["guides"] = list(guide_keys)
    init = init_dep(upstream.graph, spec)
    if init is not None:
        # Planning and validation checked the architectures match; loading strictly still names a mismatch.
        start = upstream.tensors(init, "frontend")
        load_into(frontend, start, f"front-end job {upstream.graph[init].label!r}")
        card["init_from"] = init
    if c.weights_sha256 is not None:
        path = Path(spec.locations["weights"])
        if sha256_file(path) != c.weights_sha256:
            raise WeightsError(f"weights file {path} changed since the run was planned; run again")
        load_frontend_weights(frontend, load_state_dict_file(path), str(path))
        card.update(weights=path.name, weights_sha256=c.weights_sha256)
    elif defense.trainable or defense.needs_data:
        assert c.dataset is not None, "the planner records the training data of a front-end that trains"
        train, val = train_split(env.dataset(c.dataset, "train"), c.n_train, c.n_val or 0)
        kept: AbstractContextManager[None]
        if defense.trains_classifier:
            # Its guides are its own: built here from scratch, trained with the front-end and kept.
            assert c.classifiers, "the planner lists the classifiers a defense trains with its front-end"
            guides = [new_joint_classifier(j).to(ctx.device) for j in c.classifiers]
            labels = [f"new {j.arch} (seed {j.seed})" for j in c.classifiers]
            kept = nullcontext()
        else:
            guides = [upstream.classifier(k) for k in guide_keys]
            labels = [upstream.graph[k].label for k in guide_keys]
            kept = guides_kept(guides, labels, c.kind)
        with kept:
            # What only the defense can judge (layers it names, guides that do not fit together) stops the job
            # here, with the guides named in order, rather than deep in its training loop.
            try:
                defense.check(params, shape, guides)
            except ConfigError as exc:
                raise ConfigError(f"defense {c.kind!r} with guides {', '.join(labels)}: {exc}") from exc
            metrics = defense.fit(frontend, guides, train, val, params, ctx)
        if ctx.checkpoints is not None and ctx.checkpoints.resumed_from is not None:
            metrics["resumed_from_epoch"] = ctx.checkpoints.resumed_from
    probe(frontend, shape, env, c.kind, check_range=True)
    frontend.eval()
    card.update(metrics)
    tensors = {"frontend": dict(frontend.state_dict())}
    if defense.trains_classifier:
        tensors.update({joint_artifact(i): dict(g.eval().state_dict()) for i, g in enumerate(guides)})
    return JobOutput(
        tensors=tensors,
        json={"card": card},
        metrics=metrics,
    )


@contextmanager
def guides_kept(guides: Sequence[nn.Module], labels: Sequence[str], kind: str) -> Iterator[None]:
    """Fail a fit that changes a guide's weights or buffers (BatchNorm statistics, say).

    Guides are shared by every job of a run and by every front-end trained through them, so a changed guide
    is put back as it was, and frozen again, before the job fails: the jobs that still run see it unchanged.
    """
    before = [{k: v.detach().to("cpu", copy=True) for k, v in g.state_dict().items()} for g in guides]
    try:
        yield
    finally:
        changed = []
        for guide, saved, label in zip(guides, before, labels, strict=True):
            now = guide.state_dict()
            diff = [k for k, v in saved.items() if k not in now or not torch.equal(now[k].detach().cpu(), v)]
            if diff:
                guide.load_state_dict(saved, strict=False)
                changed.append(f"{label} [{', '.join(diff[:3])}{', ...' if len(diff) > 3 else ''}]")
            freeze(guide)
    if changed:
        raise EvaluationError(
            f"defense {kind!r} changed its guide {'; '.join(changed)} while training; guides are frozen and "
            "shared with other jobs, so a front-end's training may update only the front-end"
        )


def probe(frontend: FrontEnd, shape: tuple[int, ...], env: Env, kind: str, *, check_range: bool) -> None:
    """Refuse a front-end that does not map images to images of the same shape (and, once trained, inside the
    range it declares: [0,1] unless it says otherwise)."""
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
    low, high = frontend.output_range
    inside = bool(torch.isfinite(out).all()) and low <= float(out.min()) and float(out.max()) <= high
    if check_range and not inside:
        raise EvaluationError(
            f"defense {kind!r} returns values outside its declared output range [{low:g}, {high:g}] or "
            "non-finite values"
        )
