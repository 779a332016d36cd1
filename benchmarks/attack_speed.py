"""Attack speed: our PGD against its gradient floor, torchattacks and ART, in one process on the same model.

The floor is k forward+backward passes (input gradient only) of the same pipeline on the same batch: no PGD
can take k steps in less. Every method gets the same frozen model wrapped in the same :class:`Pipeline`, the
same batch, radius, step size (Madry's 2.5 * eps / k) and random start, so the ratios isolate what each
implementation does around the passes. Labels are the model's own predictions (every example starts correctly
classified, as the harness only attacks those). Our PGD drops an example from the batch once it is fooled
(checked every few steps), so it is timed twice: with that switched off ("ours, all k steps", the per-step
overhead against the floor) and as the harness runs it ("ours"). Methods are interleaved within each repeat,
so load from other users of a shared machine drifts over all of them alike, and each is reported as the median
over repeats after warm-up runs.

    python benchmarks/attack_speed.py [--threads 1] [--steps 10 40] [--repeats 5] [--warmup 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from unittest.mock import patch

import numpy as np
import torch
import torch.nn.functional as F
import torchattacks
from art.attacks.evasion import ProjectedGradientDescentPyTorch
from art.estimators.classification import PyTorchClassifier

from bench.api import Identity, JobContext, Pipeline, Threat, build_classifier, freeze
from bench.attacks import pgd as pgd_module
from bench.attacks.pgd import PGD, PGDParams

METHODS = ("floor", "ours, all k steps", "ours", "torchattacks", "ART")


@dataclass(frozen=True)
class Case:
    name: str
    arch: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    shape: tuple[int, int, int]
    batch: int
    eps: float


CASES = (
    Case("MNIST mnist-a", "mnist-a", (0.1307,), (0.3081,), (1, 28, 28), 128, 0.3),
    Case("CIFAR-10 resnet20", "resnet20", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), (3, 32, 32), 32,
         8 / 255),
)


def runners(case: Case, steps: int) -> dict[str, Callable[[], object]]:
    """One zero-argument call per method, all on the same pipeline, batch and attack settings."""
    model = freeze(build_classifier(case.arch, 10, case.mean, case.std))
    pipeline = Pipeline(model, Identity())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(case.batch, *case.shape, generator=g)
    y = pipeline.predict(x)
    alpha = 2.5 * case.eps / steps

    def floor() -> None:
        for _ in range(steps):
            xg = x.detach().requires_grad_(True)
            loss = F.cross_entropy(pipeline(xg), y, reduction="none").sum()
            torch.autograd.grad(loss, xg)

    ours = PGD(PGDParams(steps=steps))
    threat, ctx = Threat("linf", case.eps), JobContext()

    def ours_all_steps() -> object:
        with patch.object(pgd_module, "COMPACT_EVERY", steps + 1):
            return ours.perturb(pipeline, x, y, threat, ctx)

    theirs = torchattacks.PGD(pipeline, eps=case.eps, alpha=alpha, steps=steps, random_start=True)
    art_model = PyTorchClassifier(model=pipeline, loss=torch.nn.CrossEntropyLoss(), input_shape=case.shape,
                                  nb_classes=10, clip_values=(0.0, 1.0), device_type="cpu")
    art = ProjectedGradientDescentPyTorch(art_model, norm=np.inf, eps=case.eps, eps_step=alpha,
                                          max_iter=steps, num_random_init=1, batch_size=case.batch,
                                          verbose=False)
    x_np, y_np = x.numpy(), y.numpy()
    return {
        "floor": floor,
        "ours, all k steps": ours_all_steps,
        "ours": lambda: ours.perturb(pipeline, x, y, threat, ctx),
        "torchattacks": lambda: theirs(x, y),
        "ART": lambda: art.generate(x_np, y_np),
    }


def measure(case: Case, steps: int, repeats: int, warmup: int) -> dict[str, float]:
    """Median wall time per method, in seconds."""
    run = runners(case, steps)
    for _ in range(warmup):
        for fn in run.values():
            fn()
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(repeats):
        for method in METHODS:
            start = time.perf_counter()
            run[method]()
            times[method].append(time.perf_counter() - start)
    return {m: statistics.median(t) for m, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # One thread by default: two OpenMP threads on two cores shared with other work thrash.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 40])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, torchattacks {torchattacks.__version__}, {platform.machine()} "
          f"({os.cpu_count()} cores), torch.get_num_threads()={torch.get_num_threads()}, Linf PGD, "
          f"median of {args.repeats} after {args.warmup} warm-up runs\n")
    print("| model | batch | k | floor (s) | ours, all k steps (s) | ours (s) | torchattacks (s) | ART (s) "
          "| all k steps/floor | ours/torchattacks | ours/ART |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for steps in args.steps:
        for case in CASES:
            t = measure(case, steps, args.repeats, args.warmup)
            full = t["ours, all k steps"]
            print(f"| {case.name} | {case.batch} | {steps} | {t['floor']:.3f} | {full:.3f} | {t['ours']:.3f} "
                  f"| {t['torchattacks']:.3f} | {t['ART']:.3f} | {full / t['floor']:.3f} "
                  f"| {t['ours'] / t['torchattacks']:.3f} | {t['ours'] / t['ART']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
