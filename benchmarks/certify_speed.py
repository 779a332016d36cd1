"""Certification speed: our CERTIFY against its forward-pass floor and ART's randomized smoothing, in one
process on the same model.

The floor is n0 + n forward passes of the same pipeline, in the same batches of ``noise_batch`` noisy copies,
on inputs made beforehand: no CERTIFY of one input can cost less. "ours" is
:meth:`bench.certify.SmoothedClassifier.certify` (noise drawn from a seeded generator on the device, classes
counted on the device, one read-back per sample); "ART" is ``PyTorchRandomizedSmoothing.certify`` with
``sample_size = n0`` on the same pipeline, n and batch size (skipped if ``art`` is not importable: it is in
the ``compare`` extra). Methods are interleaved within each repeat; each time is the median over repeats after
warm-up runs. The CIFAR-10 ResNet-20 is the pre-trained akamaster checkpoint when it is under the data
directory (its passes cost what an untrained one's do; the weights only make the certificate meaningful).

    python benchmarks/certify_speed.py [--threads 1] [--n 2000] [--n0 100] [--noise-batch 500] [--repeats 3]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench.api import (
    GaussianSmoothing,
    Identity,
    Pipeline,
    build_classifier,
    freeze,
    load_classifier_weights,
    load_state_dict_file,
)
from bench.certify import CertifyParams, smoothed_pipeline

try:
    from art.estimators.certification.randomized_smoothing import PyTorchRandomizedSmoothing
except ImportError:  # the ``compare`` extra is optional
    PyTorchRandomizedSmoothing = None


@dataclass(frozen=True)
class Case:
    name: str
    arch: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    shape: tuple[int, int, int]
    weights: str | None  # relative to the data directory


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CASES = (
    Case("MNIST mnist-a", "mnist-a", (0.1307,), (0.3081,), (1, 28, 28), None),
    Case("CIFAR-10 resnet20", "resnet20", *IMAGENET, (3, 32, 32),
         "pretrained/cifar10_resnet_akamaster/resnet20-12fca82f.th"),
)


def runners(case: Case, params: CertifyParams, sigma: float, data_dir: Path,
            device: torch.device) -> tuple[dict[str, Callable[[], object]], Pipeline, str]:
    """One zero-argument call per method, all on the same pipeline, input and settings."""
    model = build_classifier(case.arch, 10, case.mean, case.std)
    weights = "untrained"
    if case.weights and (data_dir / case.weights).is_file():
        load_classifier_weights(model, load_state_dict_file(data_dir / case.weights), case.weights)
        weights = "pre-trained"
    model = freeze(model).to(device)
    frontend = Identity()
    frontend.smoothing = GaussianSmoothing(sigma, "pixel")
    pipeline = Pipeline(model, frontend)
    smoothed = smoothed_pipeline(pipeline, 10, case.shape[0])
    x = torch.rand(case.shape, generator=torch.Generator().manual_seed(0)).to(device)
    sizes = _split(params.n0, params.noise_batch) + _split(params.n, params.noise_batch)
    inputs = {s: (x + sigma * torch.randn(s, *case.shape, device=device)) for s in set(sizes)}

    @torch.no_grad()
    def floor() -> None:
        for s in sizes:
            pipeline(inputs[s])
        _sync(device)

    def ours() -> object:
        cert = smoothed.certify(x, params, torch.Generator(device=device).manual_seed(0))
        _sync(device)
        return cert

    run: dict[str, Callable[[], object]] = {"floor": floor, "ours": ours}
    if PyTorchRandomizedSmoothing is not None:
        art = PyTorchRandomizedSmoothing(
            model=pipeline, loss=torch.nn.CrossEntropyLoss(), input_shape=case.shape, nb_classes=10,
            device_type="gpu" if device.type == "cuda" else "cpu", sample_size=params.n0, scale=sigma,
            alpha=params.alpha,
        )
        x_np = x.cpu().numpy()[None]
        run["ART"] = lambda: art.certify(x_np, n=params.n, batch_size=params.noise_batch)
    return run, pipeline, weights


def _split(total: int, batch: int) -> list[int]:
    return [min(batch, total - start) for start in range(0, total, batch)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(case: Case, params: CertifyParams, sigma: float, data_dir: Path, device: torch.device,
            repeats: int, warmup: int) -> tuple[dict[str, float], dict[str, float], dict[str, int], str]:
    """Median wall time and median process CPU time per method in seconds, and the pipeline's forward passes
    per call of each. CPU time is what other users of a shared machine stretch least: with one torch thread
    every pass runs in the calling thread, so it counts the method's own work."""
    run, pipeline, weights = runners(case, params, sigma, data_dir, device)
    for _ in range(warmup):
        for fn in run.values():
            fn()
    wall: dict[str, list[float]] = {m: [] for m in run}
    cpu: dict[str, list[float]] = {m: [] for m in run}
    passes: dict[str, int] = {}
    for _ in range(repeats):
        for method, fn in run.items():
            pipeline.reset_counters()
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[method].append(time.perf_counter() - start)
            cpu[method].append(time.process_time() - start_cpu)
            passes[method] = pipeline.n_forward

    def median(times: dict[str, list[float]]) -> dict[str, float]:
        return {m: statistics.median(t) for m, t in times.items()}

    return median(wall), median(cpu), passes, weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # One thread by default: two OpenMP threads on two cores shared with other work thrash.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--n", type=int, default=2_000)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--noise-batch", type=int, default=500)
    parser.add_argument("--sigma", type=float, default=0.25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("BENCH_DATA_DIR", "data")))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.getLogger("art").setLevel(logging.ERROR)
    device = torch.device(args.device)
    params = CertifyParams(n0=args.n0, n=args.n, alpha=args.alpha, noise_batch=args.noise_batch)
    art_version = "not installed"
    if PyTorchRandomizedSmoothing is not None:
        import art

        art_version = art.__version__
    print(f"torch {torch.__version__}, ART {art_version}, {platform.machine()} ({os.cpu_count()} cores), "
          f"device {device}, torch.get_num_threads()={torch.get_num_threads()}, sigma={args.sigma}, "
          f"n0={params.n0}, n={params.n}, noise batch {params.noise_batch}, "
          f"median of {args.repeats} after {args.warmup} warm-up runs\n")
    print("| model | weights | floor (s) | ours (s) | ART (s) | ours/floor | ours/ART "
          "| ours/floor (CPU time) | ours/ART (CPU time) | passes: ours, ART |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case in CASES:
        t, c, passes, weights = measure(case, params, args.sigma, args.data_dir, device, args.repeats,
                                        args.warmup)
        art_time = f"{t['ART']:.3f}" if "ART" in t else "-"
        vs_art = f"{t['ours'] / t['ART']:.3f}" if "ART" in t else "-"
        vs_art_cpu = f"{c['ours'] / c['ART']:.3f}" if "ART" in c and device.type == "cpu" else "-"
        floor_cpu = f"{c['ours'] / c['floor']:.3f}" if device.type == "cpu" else "-"
        print(f"| {case.name} | {weights} | {t['floor']:.3f} | {t['ours']:.3f} | {art_time} "
              f"| {t['ours'] / t['floor']:.3f} | {vs_art} | {floor_cpu} | {vs_art_cpu} "
              f"| {passes['ours']}, {passes.get('ART', '-')} |", flush=True)


if __name__ == "__main__":
    main()
