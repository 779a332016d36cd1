"""Certify one smoothed pipeline (front-end + target) at one σ: Cohen et al. (2019)'s CERTIFY on every
selected test image, each example's certificate, and certified accuracy per pixel-space l2 radius.

The engine is :mod:`bench.certify`; this job picks the images, builds the pipeline from its upstream jobs and
turns the certificates into rows. Every image's noise is seeded by (seed, its test-split position) alone, so a
certificate is the same whichever images are certified with it, and a killed job resumes from its checkpoint
(the certificates so far) with the same results it would have had.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import torch

from bench.api import ConfigError, EvaluationError, GaussianSmoothing, ImageData, JobContext, Pipeline
from bench.certify import Certificate, CertifyParams, SmoothedClassifier, certify_each, smoothed_pipeline
from bench.data.splits import eval_indices, eval_subset
from bench.evaluation.rows import CertificateRow, Metric, ResultRow, accuracy_row
from bench.jobs.attack import derived_seed
from bench.jobs.configs import CertifyImages, CertifyJobConfig, ClassifierFromSource, ClassifierJobConfig
from bench.jobs.env import Env
from bench.jobs.output import JobOutput
from bench.jobs.spec import JobSpec
from bench.jobs.upstream import Upstream

#: Bump when this job's code changes what it computes for the same config (it is in the job's key).
CERTIFY_VERSION = 1
#: Seconds of certification between checkpoints of the certificates so far.
CHECKPOINT_EVERY_S = 60.0


def select_images(test: ImageData, images: CertifyImages) -> tuple[ImageData, list[int]]:
    """The images a certify job certifies and their positions in the test split, in its evaluation order.

    A seeded selection is exactly :func:`~bench.data.splits.eval_subset`'s (the same identity), so with the
    attack jobs' count and seed its outcomes pair with theirs example by example.
    """
    if images.every is not None:
        positions = torch.arange(0, len(test), images.every)[: images.count]
        return test.subset(positions, f"every:{images.every}:{len(positions)}"), positions.tolist()
    assert images.seed is not None  # the config holds one of the two rules
    chosen = eval_subset(test, images.count, images.seed)
    return chosen, eval_indices(test, images.count, images.seed).tolist()


def selection_notes(test: ImageData, images: CertifyImages, chosen: ImageData) -> list[str]:
    """Reduced-scale notes for a selection that is not the whole test split, or smaller than asked for."""
    name = test.info.name
    notes = []
    if len(chosen) < len(test):
        how = (
            f"every {images.every}th from the first"
            if images.every is not None
            else f"the start of the evaluation's permutation, seed {images.seed}"
        )
        notes.append(f"certified {len(chosen)} of {len(test)} {name} test images ({how})")
    if images.count is not None and len(chosen) < images.count:
        notes.append(f"certify asked for {images.count} images, the {name} test split gives {len(chosen)}")
    return notes


def check_noise_space(smoothing: GaussianSmoothing, target: ClassifierJobConfig) -> None:
    """Normalized-space noise is σ·std in pixels, so it needs the classifier's normalization unless the
    front-end declares the std it normalizes with itself; a zoo model normalizes inside itself, and the
    harness's wrapper (mean 0, std 1) does not know it."""
    if smoothing.space == "normalized" and smoothing.std is None and isinstance(target, ClassifierFromSource):
        raise ConfigError(
            f"normalized-space smoothing on {target.source!r}, a model-zoo classifier whose normalization "
            "the harness does not know (it normalizes inside itself); declare pixel-space noise for it"
        )


def certify_all(
    smoothed: SmoothedClassifier,
    images: torch.Tensor,
    positions: Sequence[int],
    params: CertifyParams,
    seed: int,
    ctx: JobContext,
) -> tuple[list[Certificate], int]:
    """CERTIFY every image, resuming from and saving to the job's checkpoint; returns the certificates and
    how many of them an earlier, killed run of the job had made."""
    done: list[Certificate] = []
    saved = ctx.checkpoints.load() if ctx.checkpoints is not None else None
    if saved is not None:
        done = [Certificate(*fields) for fields in saved.state["certificates"]]
    resumed = len(done)
    bar = ctx.progress(len(positions), "certify", unit="img")
    bar.update(resumed)
    last_save = time.perf_counter()
    try:
        for i in range(resumed, len(positions)):
            done += certify_each(smoothed, images[i : i + 1], positions[i : i + 1], params, seed)
            bar.update(1)
            if ctx.checkpoints is not None and time.perf_counter() - last_save > CHECKPOINT_EVERY_S:
                state = {"certificates": [dataclasses.astuple(c) for c in done]}
                ctx.checkpoints.save(state, len(done))
                last_save = time.perf_counter()
    finally:
        bar.close()
    return done, resumed


def run(spec: JobSpec, upstream: Upstream, env: Env) -> JobOutput:
    c = spec.settings_as(CertifyJobConfig)
    start = time.perf_counter()
    target = upstream.graph[spec.deps[1]].settings_as(ClassifierJobConfig)
    data, positions = select_images(env.dataset(target.dataset, "test"), c.images)
    if data.identity != spec.data:
        raise RuntimeError(f"certified images of {spec.label!r} changed since planning")
    frontend = upstream.frontend(spec.deps[0])
    frontend.reseed(derived_seed("certify", spec.key))
    declared = GaussianSmoothing(c.sigma, c.noise_space, None if c.noise_std is None else tuple(c.noise_std))
    if frontend.smoothing != declared:
        raise EvaluationError(
            f"the trained front-end declares smoothing {frontend.smoothing}, but the job was planned for "
            f"{declared} from a freshly built one; a front-end must declare the same smoothing either way"
        )
    check_noise_space(declared, target)
    pipeline = Pipeline(upstream.classifier(spec.deps[1]), frontend)
    smoothed = smoothed_pipeline(pipeline, target.num_classes, data.info.input_shape[0])
    params = CertifyParams(c.n0, c.n, c.alpha, c.noise_batch)
    images = data.float_images(env.ctx.device)
    certificates, resumed = certify_all(smoothed, images, positions, params, c.seed, env.ctx)
    wall = time.perf_counter() - start

    labels = data.labels.tolist()
    right = torch.tensor([cert.prediction == y for cert, y in zip(certificates, labels, strict=True)])
    abstained = torch.tensor([cert.abstained for cert in certificates])
    radius_pixel = torch.tensor([cert.radius_pixel for cert in certificates], dtype=torch.float64)
    use = upstream.graph.evaluation_use(spec.key)
    # A declared-space radius R is R·k in pixels (k = min std for normalized noise, 1 for pixel noise).
    per_unit = smoothed.noise.pixel_radius(1.0)
    details: dict[str, object] = {
        "sigma": c.sigma,
        "noise_space": c.noise_space,
        # Only where the front-end declares its own normalization, so other rows read as before.
        **({} if c.noise_std is None else {"noise_std": list(c.noise_std)}),
        "n0": c.n0,
        "n": c.n,
        "alpha": c.alpha,
        "noise_batch": c.noise_batch,
    }
    if use.certify_preset is not None:
        details["preset"] = use.certify_preset

    def row(metric: Metric, correct: torch.Tensor, radius: float, more: dict[str, object]) -> ResultRow:
        return accuracy_row(
            use,
            attack="certify",
            metric=metric,
            correct=correct,
            examples=data.identity,
            wall_s=wall,
            n_forward=pipeline.n_forward,
            n_backward=0,
            scale_notes=spec.scale_notes,
            epsilon=radius,
            cost_per_prediction=params.forward_passes,
            details={**details, **more},
        )

    # The rule of bench.certify.certified_accuracy: right, and certified at least r in pixel space.
    results = [
        row("certified_accuracy", right & (radius_pixel >= r), r, {"radius_declared": r / per_unit})
        for r in c.radii
    ]
    results += [row("abstain_rate", abstained, 0.0, {}), row("smoothed_clean_accuracy", right, 0.0, {})]
    rows = [
        CertificateRow(
            position=i,
            test_index=index,
            label=y,
            prediction=None if cert.abstained else cert.prediction,
            count=cert.count,
            p_lower=cert.p_lower,
            radius=cert.radius,
            radius_pixel=cert.radius_pixel,
        )
        for i, (cert, index, y) in enumerate(zip(certificates, positions, labels, strict=True))
    ]
    fresh = len(certificates) - resumed
    return JobOutput(
        tensors={
            "certificates": {
                "test_index": torch.tensor(positions, dtype=torch.int64),
                "label": data.labels.to(torch.int64),
                "prediction": torch.tensor([cert.prediction for cert in certificates], dtype=torch.int64),
                "count": torch.tensor([cert.count for cert in certificates], dtype=torch.int64),
                "p_lower": torch.tensor([cert.p_lower for cert in certificates], dtype=torch.float64),
                "radius": torch.tensor([cert.radius for cert in certificates], dtype=torch.float64),
                "radius_pixel": radius_pixel,
            }
        },
        metrics={
            "wall_s": wall,
            "n_forward": pipeline.n_forward,
            "images": len(certificates),
            "resumed_images": resumed,
            # CERTIFY's floor is n0 + n passes per image; the engine should spend nothing beyond it.
            "forward_passes_per_image": pipeline.n_forward / fresh if fresh else None,
            "forward_pass_floor": params.forward_passes,
            "pixel_sigmas": list(smoothed.noise.pixel_sigmas),
            "abstained": int(abstained.sum()),
        },
        results=results,
        certificates=rows,
    )
