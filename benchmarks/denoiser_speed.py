"""Denoiser training throughput and CERTIFY time per image of the certified denoiser defenses
(``denoised-smoothing``: DnCNN, DnCNN-wide, MemNet under the ``mse`` and ``stab`` objectives; ``irs``: its
U-Net), each against its floor, on CIFAR-10 shapes with the real pre-trained ResNet-20 as guide and target.

**Training.** A training step cannot cost less than one forward+backward pass to the denoiser's weights
through the loss it trains on: the denoiser alone for ``mse``, denoiser then guide for ``stab`` (cross-entropy
against the guide's label) and ``irs`` (λ·CE + MAE). That pass, timed in the same process on the same batch,
in train mode and under the job's autocast, is the floor. ``stab`` also labels the clean batch with a no-grad
pass of the guide, which is part of the objective, not overhead; it shows in the ratio and is timed alone
beside it. Each repeat times a whole call of ``Defense.fit`` (one epoch over ``--images`` real training
images, as the train-defense job runs it, after a warm-up fit of one batch) and then one floor pass;
interleaving them lets other users' load drift over both alike, and each figure is the median over repeats.
The images each network sees per trained image are counted with hooks in both, so the table shows the floor
does the same work.

On a CPU every ratio is also given in process CPU time, which other users of a shared machine do not stretch
(one torch thread runs the whole pass in the calling thread).

**Certification.** CERTIFY of one image cannot cost less than n0 + n forward passes of denoiser + classifier
in the same batches of ``noise_batch`` noisy copies, on inputs made beforehand: the floor. "ours" is
:meth:`bench.certify.SmoothedClassifier.certify` on the same pipeline (eval mode, fp32, as the certify job
runs it). The denoisers are untrained: a pass costs what a trained one's does.

    python benchmarks/denoiser_speed.py --threads 1 [--train dncnn:mse irs ...] [--certify dncnn irs ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import (
    DATASETS,
    DEFENSES,
    FrontEnd,
    ImageData,
    JobContext,
    Pipeline,
    build_classifier,
    freeze,
    load_classifier_weights,
    load_plugins,
)
from bench.api import load_state_dict_file as load_weights
from bench.certify import CertifyParams, smoothed_pipeline
from bench.config import NamedNormalization

GUIDE = "pretrained/cifar10_resnet_akamaster/resnet20-12fca82f.th"
#: CIFAR-10 training images in an epoch.
EPOCH = 50_000
#: Salman et al.'s CERTIFY budget (their Table 2), which the time per image is extrapolated to.
PAPER_N0, PAPER_N = 100, 10_000


@dataclass(frozen=True)
class Cell:
    """A defense entry: its name in the tables, its kind and the parameters it is built and trained with."""

    name: str
    kind: str
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def objective(self) -> str:
        """The floor's loss: ``mse``, ``stab`` or ``irs``."""
        return "irs" if self.kind == "irs" else str(self.values.get("objective", "mse"))


def denoised(arch: str, objective: str = "mse") -> Cell:
    return Cell(arch, "denoised-smoothing", {"arch": arch, "objective": objective})


ARCHS = ("dncnn", "dncnn-wide", "memnet")
TRAIN_CELLS: dict[str, Cell] = {
    **{f"{a}:{o}": denoised(a, o) for a in ARCHS for o in ("mse", "stab")},
    "irs": Cell("irs (U-Net S=8)", "irs"),
}
CERTIFY_CELLS: dict[str, Cell] = {**{a: denoised(a) for a in ARCHS}, "irs": TRAIN_CELLS["irs"]}


def guide(data_dir: Path, device: torch.device) -> nn.Module:
    norm = NamedNormalization["imagenet"]
    model = build_classifier("resnet20", 10, norm.mean, norm.std)
    path = data_dir / GUIDE
    load_classifier_weights(model, load_weights(path), str(path))
    return freeze(model).to(device)


def build(cell: Cell, shape: tuple[int, int, int], extra: dict[str, Any]) -> tuple[Any, Any, FrontEnd]:
    """The defense, its settled parameters and a freshly built front-end (seeded, so every run builds the
    same one)."""
    cls = DEFENSES.get(cell.kind)
    params = cls.Params.model_validate({**cell.values, **extra})
    defense = cls()
    torch.manual_seed(0)
    return defense, params, defense.build(params, shape)


class Images:
    """Images each hooked module is run on: the work a loop does, counted without touching it."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
        self.count = dict.fromkeys(modules, 0)

    @contextmanager
    def counting(self) -> Iterator[None]:
        def hook(name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...]], None]:
            def add(_: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
                self.count[name] += inputs[0].shape[0]

            return add

        handles = [m.register_forward_pre_hook(hook(name)) for name, m in self.modules.items()]
        try:
            yield
        finally:
            for h in handles:
                h.remove()


def floor_s(
    frontend: FrontEnd,
    net: nn.Module,
    x: torch.Tensor,
    noisy: torch.Tensor,
    target: torch.Tensor,
    objective: str,
    ctx: JobContext,
) -> tuple[float, float]:
    """Seconds of one forward+backward pass to the denoiser's weights through the objective's loss: wall
    time and process CPU time."""
    frontend.train()
    clock = Clock()
    with ctx.autocast():
        out = frontend(noisy)
        if objective == "mse":
            loss = F.mse_loss(out.float(), x)
        else:
            loss = F.cross_entropy(net(out).float(), target)
            if objective == "irs":
                # IRS's λ, the weight of its cross-entropy term: the defense's own default.
                loss = DEFENSES.get("irs").Params().ce_weight * loss + F.l1_loss(out.float(), x)
    torch.autograd.backward(loss)
    _sync(ctx.device)
    seconds = clock.read()
    frontend.zero_grad(set_to_none=True)
    return seconds


@torch.no_grad()
def label_s(net: nn.Module, x: torch.Tensor, ctx: JobContext) -> float:
    """Seconds of ``stab``'s no-grad labelling pass of the guide on the clean batch."""
    start = time.perf_counter()
    with ctx.autocast():
        net(x).argmax(1)
    _sync(ctx.device)
    return time.perf_counter() - start


def train_row(cell: Cell, net: nn.Module, data: ImageData, args: argparse.Namespace) -> dict[str, str]:
    shape = data.info.input_shape
    defense, params, frontend = build(cell, shape, {"batch_size": args.batch_size, "epochs": 1})
    ctx = JobContext(device=torch.device(args.device), seed=0)
    defense.fit(frontend, [net], data.subset(torch.arange(args.batch_size), "warm-up"), None, params, ctx)
    timed = data.subset(torch.arange(args.images), "timed")
    x = timed.float_images(ctx.device)[: args.batch_size]
    assert frontend.smoothing is not None  # both defenses declare the noise their denoiser is trained on
    scale = torch.tensor(frontend.smoothing.pixel_sigmas(None, shape[0]), device=ctx.device).view(1, -1, 1, 1)
    noisy = x + scale * torch.randn(x.shape, generator=torch.Generator().manual_seed(0)).to(ctx.device)
    target = timed.labels[: args.batch_size].to(ctx.device)
    floor_s(frontend, net, x, noisy, target, cell.objective, ctx)  # warm-up
    fit_images, floor_images = (Images({"denoiser": frontend, "guide": net}) for _ in range(2))
    fit, floor, label = [], [], []
    for _ in range(args.repeats):
        with fit_images.counting():
            clock = Clock()
            defense.fit(frontend, [net], timed, None, params, ctx)
            fit.append(per(clock.read(), args.images))
        with floor_images.counting():
            floor.append(per(floor_s(frontend, net, x, noisy, target, cell.objective, ctx), len(x)))
        if cell.objective == "stab":
            label.append(label_s(net, x, ctx) / len(x))
    (per_image, per_image_cpu), (floor_image, floor_image_cpu) = medians(fit), medians(floor)
    done = args.repeats * args.images, args.repeats * len(x)

    def seen(name: str) -> str:
        return f"{fit_images.count[name] / done[0]:g}, {floor_images.count[name] / done[1]:g}"

    return {
        "denoiser": cell.name,
        "objective": cell.objective,
        "params (M)": f"{sum(p.numel() for p in frontend.parameters()) / 1e6:.2f}",
        "img/s": f"{1 / per_image:.2f}",
        "floor img/s": f"{1 / floor_image:.2f}",
        "ratio to floor": f"{per_image / floor_image:.2f}",
        "ratio (CPU time)": f"{per_image_cpu / floor_image_cpu:.2f}" if ctx.device.type == "cpu" else "-",
        "label pass / floor": f"{statistics.median(label) / floor_image:.3f}" if label else "-",
        "images/image, denoiser: fit, floor": seen("denoiser"),
        "guide: fit, floor": seen("guide"),
        "CIFAR-10 epoch (h)": f"{per_image * EPOCH / 3600:.1f}",
    }


def certify_row(
    cell: Cell, net: nn.Module, x: torch.Tensor, params: CertifyParams, args: argparse.Namespace
) -> dict[str, str]:
    device = torch.device(args.device)
    _, _, frontend = build(cell, (x.shape[0], x.shape[1], x.shape[2]), {})
    pipeline = Pipeline(net, frontend.to(device))  # in eval mode, as the certify job runs it
    smoothed = smoothed_pipeline(pipeline, 10, x.shape[0])
    sizes = _split(params.n0, params.noise_batch) + _split(params.n, params.noise_batch)
    inputs = {s: smoothed.noise.sample(x, s, torch.Generator(device=device).manual_seed(s)) for s in sizes}

    @torch.no_grad()
    def floor() -> None:
        for s in sizes:
            pipeline(inputs[s])
        _sync(device)

    def ours() -> None:
        smoothed.certify(x, params, torch.Generator(device=device).manual_seed(0))
        _sync(device)

    run = {"floor": floor, "ours": ours}
    for _ in range(args.warmup):
        for fn in run.values():
            fn()
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in run}
    passes: dict[str, int] = {}
    for _ in range(args.repeats):
        for method, fn in run.items():
            pipeline.reset_counters()
            clock = Clock()
            fn()
            times[method].append(clock.read())
            passes[method] = pipeline.n_forward
    t, cpu = ({m: medians(v)[k] for m, v in times.items()} for k in range(2))
    paper_draws = PAPER_N0 + PAPER_N
    return {
        "denoiser": cell.name,
        "params (M)": f"{sum(p.numel() for p in frontend.parameters()) / 1e6:.2f}",
        "floor (s)": f"{t['floor']:.2f}",
        "ours (s)": f"{t['ours']:.2f}",
        "ours/floor": f"{t['ours'] / t['floor']:.3f}",
        "ours/floor (CPU time)": f"{cpu['ours'] / cpu['floor']:.3f}" if device.type == "cpu" else "-",
        "passes: ours, floor": f"{passes['ours']}, {passes['floor']}",
        f"s/image at n0={PAPER_N0}, n={PAPER_N:,}": f"{t['ours'] * paper_draws / (params.n0 + params.n):.0f}",
    }


class Clock:
    """Wall and process CPU time since it was made. Other users of a shared CPU stretch the wall time of
    whatever they overlap with; the CPU time the process spends is what they leave alone."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, time.process_time() - self.cpu


def per(seconds: tuple[float, float], count: int) -> tuple[float, float]:
    return seconds[0] / count, seconds[1] / count


def medians(samples: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The median wall time and the median CPU time."""
    return statistics.median(s[0] for s in samples), statistics.median(s[1] for s in samples)


def _split(total: int, batch: int) -> list[int]:
    return [min(batch, total - start) for start in range(0, total, batch)]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def print_table(rows: Iterator[dict[str, str]]) -> None:
    """Each row as soon as it is measured, so a run cut short keeps what it finished."""
    for i, row in enumerate(rows):
        if i == 0:
            print("| " + " | ".join(row) + " |\n" + "|" + "---|" * len(row))
        print("| " + " | ".join(row.values()) + " |", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("BENCH_DATA_DIR", "data")))
    # One thread by default: two OpenMP threads on two cores shared with other work thrash.
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu or cuda (training under bf16 autocast there)")
    p.add_argument("--train", nargs="*", choices=list(TRAIN_CELLS), default=list(TRAIN_CELLS))
    p.add_argument("--certify", nargs="*", choices=list(CERTIFY_CELLS), default=list(CERTIFY_CELLS))
    p.add_argument("--images", type=int, default=32, help="images in the timed training epoch")
    p.add_argument("--batch-size", type=int, default=16, help="training batch (Salman: 256, IRS: 128)")
    p.add_argument("--n0", type=int, default=10)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--noise-batch", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3, help="timed runs of each kind (median)")
    p.add_argument("--warmup", type=int, default=1, help="untimed certify runs of each kind first")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_plugins()
    device = torch.device(args.device)
    data = DATASETS.get("cifar10").load(args.data_dir, "train", download=False)
    net = guide(args.data_dir, device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(
        f"{where}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch thread(s), torch "
        f"{torch.__version__}; guide and target resnet20 (akamaster); load average {os.getloadavg()[0]:.1f}"
    )
    if args.train:
        print(
            f"\ntraining: {args.images} timed CIFAR-10 images in batches of {args.batch_size}, median of "
            f"{args.repeats}\n",
            flush=True,
        )
        print_table(train_row(TRAIN_CELLS[c], net, data, args) for c in args.train)
    if args.certify:
        params = CertifyParams(n0=args.n0, n=args.n, alpha=0.001, noise_batch=args.noise_batch)
        x = data.subset(torch.arange(1), "certified").float_images(device)[0]
        print(
            f"\ncertify: one CIFAR-10 image, n0={params.n0}, n={params.n}, noise batch "
            f"{params.noise_batch}, median of {args.repeats} after {args.warmup} warm-up run(s)\n",
            flush=True,
        )
        print_table(certify_row(CERTIFY_CELLS[c], net, x, params, args) for c in args.certify)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
