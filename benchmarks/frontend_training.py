"""Front-end adversarial training throughput against the floor of the training step: Robustifier, RTFE and
AAA on CIFAR-10 through the real pre-trained ResNet-20, and AAA's autoencoder on MNIST through model A.

A training step runs k PGD steps through front-end + guide and then one training pass, so it cannot cost less
than k forward+backward passes to the input (a PGD step needs no weight gradients) plus one to the front-end's
weights, per image: the floor, timed in the same process on the same batch. The issue's rule of thumb,
(k + 1) full passes, is shown beside it; it overstates the floor, since weight gradients are a good part of a
pass. The RTFE step adds the guides' no-grad forward on the clean images, the Robustifier step the guide's
no-grad forward with activation hooks; both are inside the ratio. AAA is timed without its reconstruction
warm-up epoch (``warmup_epochs: 0``), so the timed epoch is an adversarial one, with the paper's attack for
the dataset: on CIFAR-10 its U-Net under 10 steps of 2/255, on MNIST its conv autoencoder (sized by its
width, so ``--scales`` does not apply) under 40 steps of 0.01. The MNIST guide is an untrained model A
(Madry et al.'s CNN): a pass costs what a trained one's does.

Each repeat times ``Defense.fit`` itself (one epoch over ``--images`` real training images, as the
train-defense job runs it, after a warm-up fit of one batch) and then the floor's k + 1 passes on a batch;
interleaving them lets load from other users of a shared machine drift over all alike, and each figure is the
median over repeats. The training attack is each defense's default unless ``--attack-steps`` overrides it.
On CPU the ratio is also given in process CPU time, which other users of a shared machine stretch less than
wall time (with one torch thread every pass runs in the calling thread).

    python benchmarks/frontend_training.py --threads 1 --scales 1 2 4 [--images 256] [--batch-size 128]
    python benchmarks/frontend_training.py --threads 1 --dataset mnist --kinds aaa
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from bench.api import (
    DATASETS,
    DEFENSES,
    ImageData,
    JobContext,
    build_classifier,
    freeze,
    load_classifier_weights,
    load_plugins,
    load_state_dict_file,
)
from bench.config import NamedNormalization

GUIDE = "pretrained/cifar10_resnet_akamaster/resnet20-12fca82f.th"
#: Training images in an epoch (the papers train on all of them).
EPOCH = {"cifar10": 50_000, "mnist": 60_000}
GUIDES = {"cifar10": "resnet20 (akamaster, pre-trained)", "mnist": "mnist-a (untrained)"}
#: AAA's network and training attack for each dataset (Vaishnavi et al.'s PGD).
AAA: dict[str, dict[str, object]] = {
    "cifar10": {"arch": "unet", "eps": 8 / 255, "attack_step": 2 / 255, "attack_steps": 10},
    "mnist": {"arch": "conv"},
}


def guide(data_dir: Path, dataset: str) -> nn.Module:
    if dataset == "mnist":
        return freeze(build_classifier("mnist-a", 10, (0.1307,), (0.3081,)))
    norm = NamedNormalization["imagenet"]
    model = build_classifier("resnet20", 10, norm.mean, norm.std)
    path = data_dir / GUIDE
    load_classifier_weights(model, load_state_dict_file(path), str(path))
    return freeze(model)


def settings(kind: str, scale: int, dataset: str) -> dict[str, object]:
    """The defense's parameters beyond batch size and epochs: its width, and AAA's network and attack."""
    if kind != "aaa":
        return {"scale": scale}
    values = {**AAA[dataset], "warmup_epochs": 0}
    if values["arch"] == "unet":
        values["scale"] = scale
    return values


def pass_s(
    frontend: nn.Module, net: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: JobContext, weights: bool
) -> tuple[float, float]:
    """Wall and process CPU seconds of one forward+backward pass of front-end + guide on a batch, in train
    mode and under the job's autocast as the training step runs them: to the input only (a PGD step) or to
    the front-end's weights as well (the training pass)."""
    frontend.train()
    start, start_cpu = time.perf_counter(), time.process_time()
    xs = x.clone().requires_grad_(True)
    with ctx.autocast():
        loss = F.cross_entropy(net(frontend(xs)).float(), y)
    if weights:
        torch.autograd.backward(loss)
    else:
        torch.autograd.grad(loss, xs)
    if ctx.cuda:
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - start, time.process_time() - start_cpu
    frontend.zero_grad(set_to_none=True)
    return seconds


def cell(
    kind: str, scale: int, net: nn.Module, data: ImageData, args: argparse.Namespace
) -> dict[str, float | int | str]:
    cls = DEFENSES.get(kind)
    values = {**settings(kind, scale, args.dataset), "batch_size": args.batch_size, "epochs": 1}
    if args.attack_steps is not None:
        values["attack_steps"] = args.attack_steps
    params = cls.Params.model_validate(values)
    defense = cls()
    steps = int(params.model_dump()["attack_steps"])
    torch.manual_seed(0)
    frontend = defense.build(params, data.info.input_shape)
    count = sum(p.numel() for p in frontend.parameters())
    ctx = JobContext(device=torch.device(args.device), seed=0)
    defense.fit(frontend, [net], data.subset(torch.arange(args.batch_size), "warm-up"), None, params, ctx)
    timed = data.subset(torch.arange(args.images), "timed")
    x, y = timed.float_images(ctx.device)[: args.batch_size], timed.labels[: args.batch_size].to(ctx.device)
    pass_s(frontend, net, x, y, ctx, weights=True)  # warm-up
    # Per image, wall (index 0) and CPU time (index 1) of each repeat.
    fit: list[tuple[float, float]] = []
    pgd_pass: list[tuple[float, float]] = []
    train_pass: list[tuple[float, float]] = []
    for _ in range(args.repeats):
        start_cpu = time.process_time()
        wall = defense.fit(frontend, [net], timed, None, params, ctx)["train_wall_s"]
        fit.append((wall / args.images, (time.process_time() - start_cpu) / args.images))
        # The floor's passes as a step makes them, back to back: k to the input, then one to the weights.
        for timings, weights, passes in ((pgd_pass, False, steps), (train_pass, True, 1)):
            runs = [pass_s(frontend, net, x, y, ctx, weights=weights) for _ in range(passes)]
            pass_wall, pass_cpu = (sum(r[i] for r in runs) / (passes * len(x)) for i in (0, 1))
            timings.append((pass_wall, pass_cpu))
    timed_sets = (fit, pgd_pass, train_pass)
    per_image, pgd, train = (statistics.median(t[0] for t in ts) for ts in timed_sets)
    cpu_image, cpu_pgd, cpu_train = (statistics.median(t[1] for t in ts) for ts in timed_sets)
    floor = steps * pgd + train
    cpu_ratio = cpu_image / (steps * cpu_pgd + cpu_train) if ctx.device.type == "cpu" else None
    return {
        "defense": kind,
        "S": params.model_dump().get("scale") or "-",
        "params (M)": f"{count / 1e6:.2f}",
        "PGD steps": steps,
        "img/s": f"{1 / per_image:.1f}",
        "floor img/s": f"{1 / floor:.1f}",
        "(k+1) passes img/s": f"{1 / ((steps + 1) * train):.1f}",
        "ratio to floor": f"{per_image / floor:.2f}",
        "ratio (CPU time)": "-" if cpu_ratio is None else f"{cpu_ratio:.2f}",
        "epoch (h)": f"{per_image * EPOCH[args.dataset] / 3600:.2f}",
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("BENCH_DATA_DIR", "data")))
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--kinds", nargs="+", default=["robustifier", "rtfe"])
    p.add_argument("--dataset", choices=sorted(EPOCH), default="cifar10")
    p.add_argument("--scales", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--images", type=int, default=256, help="images in the timed epoch")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--attack-steps", type=int, default=None, help="default: each defense's own")
    p.add_argument("--repeats", type=int, default=3, help="timed fits and passes (median)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (bf16 autocast there, as jobs train)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    load_plugins()
    data = DATASETS.get(args.dataset).load(args.data_dir, "train", download=False)
    net = guide(args.data_dir, args.dataset).to(args.device)
    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else platform.machine()
    print(
        f"{where}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch thread(s), torch "
        f"{torch.__version__}; guide {GUIDES[args.dataset]}; {args.images} timed {args.dataset} images in "
        f"batches of {args.batch_size}"
    )
    # A network sized by width alone (AAA's MNIST autoencoder) is timed once, whatever the scales.
    scales = {kind: args.scales if "scale" in settings(kind, 1, args.dataset) else [0] for kind in args.kinds}
    rows = [cell(kind, s, net, data, args) for kind in args.kinds for s in scales[kind]]
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[h]) for h in header) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
