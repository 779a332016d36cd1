"""Dead gradients: how small the margin gradient is where an attack gave up, on healthy and masking pipelines.

``run_attack`` probes every example a gradient attack leaves robust: the input gradient of the margin loss at
the attack's final point, read as ``gain / |margin|`` with ``gain = eps * ||grad||_*`` (the first-order change
of the margin across the threat ball; :mod:`bench.evaluation.gradient_probe`). This script measures that ratio
so the threshold ``DEAD_GAIN`` is set from evidence:

- healthy pipelines: MNIST classifiers trained here (mnist-c, mnist-b) bare and behind an AAA front-end
  trained here through mnist-c, and akamaster's pre-trained CIFAR-10 ResNet-20 bare, each at several radii
  (an undefended model keeps few robust examples at the largest one);
- masking pipelines, all on the trained mnist-c (and bit-depth / JPEG also on the ResNet-20): bit-depth and
  JPEG attacked without BPDA, a front-end that ``.detach()``-es a near-identity, a steep sigmoid
  ``sigmoid(1000 (x - 0.5))``, and deep iterative front-ends repeating a contraction towards 8 grey levels
  50 times (by 0.5 per step: the gradient shrinks by 2^-50 but keeps its sign; by 0.1: it underflows).

Each pipeline is attacked with the harness's PGD (20 steps, cross-entropy, random start) through
``run_attack``; the ratio is then taken at every robust example's final point. Rows give the robust count,
the share of exactly-zero gradients, quantiles of the ratio and the share below ``DEAD_GAIN``.

    python benchmarks/dead_gradients.py --data-dir "$BENCH_DATA_DIR" [--threads 2] [--n-mnist 200] \
        [--n-cifar 100]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench.api import (
    ATTACKS,
    DATASETS,
    DEFENSES,
    RECIPES,
    FrontEnd,
    Identity,
    ImageData,
    JobContext,
    Pipeline,
    Threat,
    build_classifier,
    freeze,
    load_classifier_weights,
    load_plugins,
    load_state_dict_file,
)
from bench.data.sources import SPLITS  # noqa: F401  (importing it registers the built-in datasets)
from bench.data.splits import eval_subset, train_split
from bench.evaluation.gradient_probe import DEAD_GAIN, margin_gain
from bench.evaluation.run_attack import run_attack

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
RESNET20 = "pretrained/cifar10_resnet_akamaster/resnet20-12fca82f.th"


class Detach(FrontEnd):
    """A near-identity (8-bit rounding) computed on a detached input: no graph back to the image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.detach() * 255).round() / 255


class SteepSigmoid(FrontEnd):
    """``sigmoid(1000 (x - 0.5))``: binarization written as a differentiable, saturated function."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(1000 * (x - 0.5))


class Contraction(FrontEnd):
    """50 steps of ``z <- z - rate sin(2 pi 7 z) / (2 pi 7)``: each contracts towards the nearest of 8 grey
    levels (derivative 1 - rate there), so the output is nearly the image rounded to 8 levels and the
    Jacobian a product of 50 factors near 1 - rate."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = 2 * torch.pi * 7
        z = x
        for _ in range(50):
            z = z - self.rate * torch.sin(w * z) / w
        return z


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # healthy | masking
    classifier: nn.Module
    frontend: Callable[[], FrontEnd]
    bpda: bool
    data: ImageData
    epsilons: tuple[float, ...]


def train_mnist(arch: str, train: ImageData, n_train: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = build_classifier(arch, 10, MNIST_MEAN, MNIST_STD)
    recipe = RECIPES.get("mnist")()
    part, _ = train_split(train, n_train=n_train, n_val=0)
    recipe.fit(model, part, recipe.Params.model_validate({"epochs": 1}), JobContext(seed=seed))
    return freeze(model)


def train_aaa(guide: nn.Module, train: ImageData) -> FrontEnd:
    defense = DEFENSES.get("aaa")()
    params = defense.Params.model_validate({"epochs": 2, "width": 16, "attack_steps": 5})
    frontend = defense.build(params, (1, 28, 28))
    part, _ = train_split(train, n_train=10000, n_val=0)
    defense.fit(frontend, [guide], part, None, params, JobContext(seed=0))
    return freeze(frontend)


def declared(kind: str, params: dict[str, object], shape: tuple[int, int, int]) -> Callable[[], FrontEnd]:
    defense = DEFENSES.get(kind)()
    return lambda: defense.build(defense.Params.model_validate(params), shape)


def cases(data_dir: Path, n_mnist: int, n_cifar: int) -> list[Case]:
    mnist = DATASETS.get("mnist")
    train, test = mnist.load(data_dir, "train", download=False), mnist.load(data_dir, "test", download=False)
    m_eval = eval_subset(test, n_mnist, 0)
    c = train_mnist("mnist-c", train, 60000, 0)
    b = train_mnist("mnist-b", train, 20000, 1)
    aaa = train_aaa(c, train)
    cifar = DATASETS.get("cifar10").load(data_dir, "test", download=False)
    c_eval = eval_subset(cifar, n_cifar, 0)
    r20 = build_classifier("resnet20", 10, IMAGENET_MEAN, IMAGENET_STD)
    load_classifier_weights(r20, load_state_dict_file(data_dir / RESNET20), "resnet20")
    r20 = freeze(r20)
    mnist_eps, cifar_eps = (0.1, 0.2, 0.3), (2 / 255, 8 / 255)
    return [
        Case("MNIST mnist-c, none", "healthy", c, Identity, True, m_eval, mnist_eps),
        Case("MNIST mnist-b, none", "healthy", b, Identity, True, m_eval, mnist_eps),
        Case("MNIST mnist-c, AAA (native)", "healthy", c, lambda: aaa, True, m_eval, mnist_eps),
        Case("MNIST mnist-b, AAA (cross-model)", "healthy", b, lambda: aaa, True, m_eval, mnist_eps),
        Case("CIFAR-10 resnet20, none", "healthy", r20, Identity, True, c_eval, cifar_eps),
        Case("MNIST mnist-c, bit-depth 2 bits, BPDA off", "masking", c,
             declared("bit-depth", {"bits": 2}, (1, 28, 28)), False, m_eval, (0.3,)),
        Case("MNIST mnist-c, JPEG, BPDA off", "masking", c, declared("jpeg", {}, (1, 28, 28)), False, m_eval,
             (0.3,)),
        Case("MNIST mnist-c, .detach() inside", "masking", c, Detach, True, m_eval, (0.3,)),
        Case("MNIST mnist-c, sigmoid(1000(x-0.5))", "masking", c, SteepSigmoid, True, m_eval, (0.3,)),
        Case("MNIST mnist-c, contraction x50 by 0.5", "masking", c, lambda: Contraction(0.5), True, m_eval,
             (0.3,)),
        Case("MNIST mnist-c, contraction x50 by 0.1", "masking", c, lambda: Contraction(0.9), True, m_eval,
             (0.3,)),
        Case("CIFAR-10 resnet20, bit-depth 3 bits, BPDA off", "masking", r20,
             declared("bit-depth", {"bits": 3}, (3, 32, 32)), False, c_eval, (8 / 255,)),
        Case("CIFAR-10 resnet20, JPEG, BPDA off", "masking", r20, declared("jpeg", {}, (3, 32, 32)), False,
             c_eval, (8 / 255,)),
    ]


def ratios(case: Case, eps: float, batch: int) -> tuple[int, int, torch.Tensor]:
    """(clean-correct, robust, ratio gain/|margin| at every robust example's final point)."""
    threat = Threat("linf", eps)
    pgd = ATTACKS.get("pgd")
    attack = pgd(pgd.Params.model_validate({"steps": 20}))
    out = run_attack(Pipeline(case.classifier, case.frontend(), bpda=case.bpda), attack, case.data, threat,
                     JobContext(), batch)
    robust = out.robust
    if not bool(robust.any()):
        return int(out.clean.sum()), 0, torch.empty(0)
    probe = Pipeline(case.classifier, case.frontend(), bpda=case.bpda)
    found = []
    for start in range(0, int(robust.sum()), batch):
        idx = robust.nonzero().flatten()[start : start + batch]
        losses, gain = margin_gain(probe, out.x_adv[idx], case.data.labels[idx], threat)
        found.append(gain / losses.abs().clamp_min(torch.finfo(torch.float32).tiny))
    return int(out.clean.sum()), int(robust.sum()), torch.cat(found)


def quantile(r: torch.Tensor, q: float) -> str:
    return f"{float(torch.quantile(r.double(), q)):.2g}" if r.numel() else "-"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("BENCH_DATA_DIR", "data")))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--n-mnist", type=int, default=200)
    p.add_argument("--n-cifar", type=int, default=100)
    p.add_argument("--batch", type=int, default=100)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_plugins()
    start = time.perf_counter()
    found = cases(args.data_dir, args.n_mnist, args.n_cifar)
    print(f"models trained in {time.perf_counter() - start:.0f} s; DEAD_GAIN = {DEAD_GAIN:g}")
    header = ["pipeline", "kind", "eps", "clean", "robust", "exactly 0", "min", "1%", "median", "max",
              f"< {DEAD_GAIN:g}"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    pooled: dict[str, list[torch.Tensor]] = {"healthy": [], "masking": []}
    for case in found:
        for eps in case.epsilons:
            clean, robust, r = ratios(case, eps, args.batch)
            pooled[case.kind].append(r)
            zero = int((r == 0).sum())
            below = int((r < DEAD_GAIN).sum())
            row = [case.name, case.kind, f"{eps:.3g}", str(clean), str(robust), f"{zero}/{robust}",
                   quantile(r, 0.0), quantile(r, 0.01), quantile(r, 0.5), quantile(r, 1.0)]
            print("| " + " | ".join([*row, f"{below}/{robust}"]) + " |", flush=True)
    edges = [0.0, 1e-12, 1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, float("inf")]
    bins = list(zip(edges[:-1], edges[1:], strict=True))
    print("\nratio gain/|margin| of every robust example, pooled:")
    print("| kind | n | = 0 | " + " | ".join(f"({lo:g}, {hi:g}]" for lo, hi in bins) + " |")
    print("|" + "---|" * (len(bins) + 3))
    for kind, rs in pooled.items():
        r = torch.cat(rs)
        counts = [int(((r > lo) & (r <= hi)).sum()) for lo, hi in bins]
        print(f"| {kind} | {r.numel()} | {int((r == 0).sum())} | " + " | ".join(map(str, counts)) + " |")
    print(f"total {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
