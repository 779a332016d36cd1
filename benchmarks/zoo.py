"""Classifier zoo benchmark: clean test accuracy against the zoo's targets, and training throughput.

Each entry is trained by the recipe its architecture registers, at the recipe's full default scale unless
``--epochs`` or ``--param`` override it, on the real training split (minus nothing: ``n_val`` defaults to 0),
and evaluated on the real, full test split (or a seeded subset of it, ``--n-test``). For every entry the
script also measures

* training throughput: images trained on per second of wall time, from the start of ``Recipe.fit`` to a
  synchronized end (so on CUDA no queued work is left out);
* the ratio of the recipe's mean step time to the *floor*: the median time of forward + loss + backward of the
  same model (a copy of the freshly initialised one) on one batch of the same size and device, with the same
  autocast, channels-last and ``torch.compile`` setting, measured in the same process right before training,
  after warm-up. What the recipe adds on top (indexing and uint8->float conversion, augmentation, optimizer
  and scheduler steps, the partial last batch) shows up as a ratio above 1.

On a CPU shared with other processes, wall time measures the neighbours too: a short floor measurement can
land in a busy second and a long run averages over them. So on CPU devices the script also records the
process's CPU time (``time.process_time``) for the floor and for training, and reports the ratio of CPU time
per step and the share of wall time the process was actually running (``CPU/wall``, per thread). With one
thread (``--threads 1``), the CPU-time ratio is the one to read on a busy machine.

The CIFAR entries are meant for a GPU; on a CPU they are skipped with a message unless ``--force-cifar``.
Results are printed as a markdown table and merged (by entry label) into the ``--out`` JSON file, so entries
run separately end up in one file; ``--report`` prints the table of an existing file.

    python benchmarks/zoo.py --data-dir "$BENCH_DATA_DIR" --entries mnist-c fashion-cnn --out zoo.json
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import classifiers  # noqa: F401  (registers the built-in architectures and recipes)
from bench.api import (
    CLASSIFIERS,
    DATASETS,
    RECIPES,
    JobContext,
    Recipe,
    RecipeParams,
    build_classifier,
    count_correct,
)
from bench.data.sources import SPLITS  # noqa: F401  (importing it registers the built-in datasets)
from bench.data.splits import eval_subset, train_split
from bench.stats import clopper_pearson


@dataclass(frozen=True)
class ZooEntry:
    label: str
    arch: str
    dataset: str
    #: Minimum clean test accuracy the zoo promises; None: reported, no target.
    target: float | None
    #: Run only on a GPU unless forced (a CPU would take days at full scale).
    gpu_only: bool = False
    note: str = ""
    #: Normalize inputs with the dataset's mean and std; False for a model that standardizes its own inputs
    #: (a matrix's ``normalization: none``).
    normalize: bool = True


ENTRIES: tuple[ZooEntry, ...] = (
    ZooEntry("mnist-a", "mnist-a", "mnist", 0.990),
    ZooEntry("mnist-b", "mnist-b", "mnist", 0.985),
    ZooEntry("mnist-c", "mnist-c", "mnist", 0.975),
    ZooEntry("fashion-cnn", "fashion-cnn", "fashion-mnist", 0.90),
    ZooEntry("cifar10-resnet18", "resnet18", "cifar10", 0.93, gpu_only=True),
    ZooEntry("cifar100-resnet18", "resnet18", "cifar100", None, gpu_only=True,
             note="no fixed target: as high as the available (possibly subset) CIFAR-100 allows"),
    # AAA's CIFAR-10 classifiers D, E, F (Vaishnavi et al.); the paper prints no natural accuracy for them.
    ZooEntry(
        "cifar10-madry-wrn34-10", "madry-wrn34-10", "cifar10", None,
        gpu_only=True, note="AAA's D", normalize=False,
    ),
    ZooEntry("cifar10-vgg19", "vgg19", "cifar10", None, gpu_only=True, note="AAA's E"),
    ZooEntry("cifar10-cifar-f", "cifar-f", "cifar10", None, gpu_only=True, note="AAA's F"),
)
BY_LABEL = {e.label: e for e in ENTRIES}


# ----------------------------------------------------------------------------------------------- timing


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class FloorTiming:
    batch_size: int
    warmup: int
    repeats: int
    median_s: float
    min_s: float
    max_s: float
    #: Median process CPU time per repeat (all threads together): meaningful on CPU devices only.
    median_cpu_s: float


def measure_floor(model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: JobContext, compile_model: bool,
                  warmup: int, repeats: int) -> FloorTiming:
    """Median forward + loss + backward time of a copy of ``model`` on the batch ``(x, y)``, in train mode.

    Timing a copy leaves the model's BatchNorm running statistics untouched for the real training run.
    """
    device = ctx.device
    m = copy.deepcopy(model).to(device)
    if ctx.use_channels_last:
        m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    m.train()
    step = torch.compile(m) if compile_model else m
    times: list[float] = []
    cpu_times: list[float] = []
    for i in range(warmup + repeats):
        _sync(device)
        t0, c0 = time.perf_counter(), time.process_time()
        m.zero_grad(set_to_none=True)
        with ctx.autocast():
            loss = F.cross_entropy(step(x), y)
        torch.autograd.backward(loss)
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
    del m, step
    return FloorTiming(int(x.shape[0]), warmup, repeats, statistics.median(times), min(times), max(times),
                       statistics.median(cpu_times))


@torch.no_grad()
# ------------------------------------------------------------------------------------------- machine info


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "device": str(device),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# -------------------------------------------------------------------------------------------------- runs


def parse_params(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is read as JSON (numbers, true/false) and otherwise kept as a string."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--param expects KEY=VALUE, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def run_entry(entry: ZooEntry, data_dir: Path, ctx: JobContext, overrides: dict[str, Any],
              floor_warmup: int, floor_repeats: int, n_test: int | None = None) -> dict[str, Any]:
    spec = CLASSIFIERS.get(entry.arch)
    if spec.recipe is None:
        raise ValueError(f"architecture {entry.arch!r} registers no training recipe")
    recipe: Recipe = RECIPES.get(spec.recipe)()
    params: RecipeParams = recipe.Params.model_validate(overrides)
    source = DATASETS.get(entry.dataset)
    info = source.info
    full_train = source.load(data_dir, "train", download=False)
    full_test = source.load(data_dir, "test", download=False)
    # The seeded subset a matrix's n_eval takes, so a reduced check scores the images its cells would.
    test = full_test if n_test is None else eval_subset(full_test, n_test, ctx.seed)
    train, _ = train_split(full_train, params.n_train, params.n_val)

    reduced: list[str] = []
    if params.epochs < recipe.full_scale_epochs:
        reduced.append(f"{params.epochs} of {recipe.full_scale_epochs} epochs")
    if len(full_train) < info.train_size:
        reduced.append(f"training split is a subset on disk ({len(full_train)} of {info.train_size})")
    if len(train) + params.n_val < len(full_train):
        reduced.append(f"trained on {len(train)} of {len(full_train) - params.n_val} training images")
    if len(full_test) < info.test_size:
        reduced.append(f"test split is a subset on disk ({len(full_test)} of {info.test_size})")
    if len(test) < len(full_test):
        reduced.append(f"evaluated on {len(test)} of {len(full_test)} test images")

    ctx.seed_everything()
    channels = len(info.mean)
    mean, std = (info.mean, info.std) if entry.normalize else ((0.0,) * channels, (1.0,) * channels)
    model = build_classifier(entry.arch, info.num_classes, mean, std)

    # The floor: one batch of real training images, as the recipe would see them before augmentation.
    bs = min(params.batch_size, len(train))
    x = train.images[:bs].to(ctx.device).float().div_(255.0)
    y = train.labels[:bs].to(ctx.device)
    floor = measure_floor(model, x, y, ctx, params.compile, floor_warmup, floor_repeats)
    del x, y

    load_before = load_average()
    _sync(ctx.device)
    t0, c0 = time.perf_counter(), time.process_time()
    fit_metrics = recipe.fit(model, train, params, ctx)
    _sync(ctx.device)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    load_after = load_average()

    steps = params.epochs * math.ceil(len(train) / params.batch_size)
    images = params.epochs * len(train)
    step_s = wall / steps
    correct = count_correct(model, test, ctx.device)
    acc = correct / len(test)
    lo, hi = clopper_pearson(correct, len(test))
    meets = None if entry.target is None else acc >= entry.target
    result: dict[str, Any] = {
        "status": "ok",
        "label": entry.label,
        "arch": entry.arch,
        "dataset": entry.dataset,
        "recipe": spec.recipe,
        "params": params.model_dump(),
        "seed": ctx.seed,
        "epochs": params.epochs,
        "full_scale_epochs": recipe.full_scale_epochs,
        "n_train": len(train),
        "test_n": len(test),
        "test_correct": correct,
        "test_accuracy": acc,
        "ci95": [lo, hi],
        "target": entry.target,
        "meets_target": meets,
        "full_scale": not reduced,
        "reduced": reduced,
        "note": entry.note,
        "wall_s": wall,
        "train_images_per_s": images / wall,
        "steps": steps,
        "step_s_mean": step_s,
        "floor": asdict(floor),
        "ratio_to_floor": step_s / floor.median_s,
        "cpu_s": cpu,
        "cpu_per_wall_per_thread": cpu / wall / torch.get_num_threads(),
        "step_cpu_s_mean": cpu / steps,
        "ratio_to_floor_cpu": (cpu / steps) / floor.median_cpu_s if ctx.device.type == "cpu" else None,
        "fit_metrics": fit_metrics,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(ctx.device),
    }
    del model
    return result


def skipped(entry: ZooEntry, reason: str, device: torch.device) -> dict[str, Any]:
    return {
        "status": "skipped", "label": entry.label, "arch": entry.arch, "dataset": entry.dataset,
        "target": entry.target, "reason": reason,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(device),
    }


# ------------------------------------------------------------------------------------------------ output


def _pct(v: float) -> str:
    return f"{100 * v:.2f}"


def _opt(r: dict[str, Any], key: str) -> str:
    v = r.get(key)
    return "-" if v is None else f"{float(v):.2f}"


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    head = ("| entry | dataset | device | epochs | n train | test acc % (n) | 95% CI % | target % | met "
            "| wall s | img/s | step ms | floor ms | ratio | CPU/wall | ratio (CPU time) | scale |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        target = "-" if r.get("target") is None else _pct(float(r["target"]))
        if r["status"] != "ok":
            rows.append(f"| {r['label']} | {r['dataset']} | {r['machine']['device']} | - | - | skipped | - | "
                        f"{target} | - | - | - | - | - | - | - | - | {r['reason']} |")
            continue
        lo, hi = r["ci95"]
        met = {True: "yes", False: "**no**", None: "-"}[r["meets_target"]]
        scale = "full" if r["full_scale"] else "reduced: " + "; ".join(r["reduced"])
        rows.append(
            f"| {r['label']} | {r['dataset']} | {r['machine']['device']} | {r['epochs']} | {r['n_train']} | "
            f"{_pct(r['test_accuracy'])} ({r['test_n']}) | {_pct(lo)}-{_pct(hi)} | {target} | {met} | "
            f"{r['wall_s']:.0f} | {r['train_images_per_s']:.0f} | {1000 * r['step_s_mean']:.1f} | "
            f"{1000 * r['floor']['median_s']:.1f} | {r['ratio_to_floor']:.2f} | "
            f"{_opt(r, 'cpu_per_wall_per_thread')} | {_opt(r, 'ratio_to_floor_cpu')} | {scale} |"
        )
    return "\n".join(rows)


def merge_into(path: Path, new: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace the file's results for the entries just run, keep the others, in the zoo's order."""
    merged: dict[str, dict[str, Any]] = {}
    if path.exists():
        merged = {r["label"]: r for r in json.loads(path.read_text())["results"]}
    merged.update({r["label"]: r for r in new})
    order = {e.label: i for i, e in enumerate(ENTRIES)}
    results = sorted(merged.values(), key=lambda r: order.get(r["label"], len(order)))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps({"results": results}, indent=2) + "\n")
    os.replace(tmp, path)
    return results


# --------------------------------------------------------------------------------------------------- cli


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("BENCH_DATA_DIR", "data")),
                   help="data root (default: $BENCH_DATA_DIR, else ./data)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--entries", nargs="+", default=[e.label for e in ENTRIES],
                   help=f"entries to run (default: all): {', '.join(e.label for e in ENTRIES)}")
    p.add_argument("--epochs", type=int, default=None,
                   help="override the recipe's epochs (reduced scale if fewer)")
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe parameter for every selected entry (repeatable), e.g. lr=0.002")
    p.add_argument("--n-test", type=int, default=None,
                   help="score a seeded subset of this many test images, as a matrix's n_eval takes "
                        "(default: all; reduced scale if fewer)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--force-cifar", action="store_true", help="run the GPU-only CIFAR entries on a CPU too")
    p.add_argument("--floor-warmup", type=int, default=5)
    p.add_argument("--floor-repeats", type=int, default=20)
    p.add_argument("--out", type=Path, default=Path("zoo-results.json"),
                   help="JSON file the results are merged into (by entry label)")
    p.add_argument("--report", action="store_true", help="only print the table of the --out file")
    p.add_argument("--progress", action="store_true", help="show a progress bar while training")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        print(markdown_table(json.loads(args.out.read_text())["results"]))
        return 0
    labels = [name for item in args.entries for name in item.split(",") if name]
    unknown = [n for n in labels if n not in BY_LABEL]
    if unknown:
        print(f"unknown entries {unknown}; valid: {', '.join(BY_LABEL)}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ctx = JobContext(device=device, seed=args.seed, show_progress=args.progress)
    overrides = parse_params(args.param)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs

    results: list[dict[str, Any]] = []
    for label in labels:
        entry = BY_LABEL[label]
        if entry.gpu_only and device.type != "cuda" and not args.force_cifar:
            reason = (f"needs a GPU (device is {device}; full-scale CIFAR training would take days on a "
                      "CPU); pass --force-cifar to run it anyway")
            print(f"[zoo] skipping {label}: {reason}", flush=True)
            results.append(skipped(entry, reason, device))
            continue
        print(f"[zoo] {label}: training {entry.arch} on {entry.dataset} ({device}, "
              f"{torch.get_num_threads()} threads)...", flush=True)
        r = run_entry(
            entry, args.data_dir, ctx, overrides, args.floor_warmup, args.floor_repeats, args.n_test
        )
        print(f"[zoo] {label}: test accuracy {_pct(r['test_accuracy'])}% of {r['test_n']}, "
              f"{r['epochs']} epochs in {r['wall_s']:.0f} s, {r['train_images_per_s']:.0f} img/s, "
              f"{r['ratio_to_floor']:.2f}x the forward+backward floor (CPU time: "
              f"{_opt(r, 'ratio_to_floor_cpu')}x)", flush=True)
        results.append(r)
        merge_into(args.out, [r])
    all_results = merge_into(args.out, results)
    print()
    print(markdown_table([r for r in all_results if r["label"] in labels]))
    print(f"\n[zoo] results merged into {args.out}")
    missed = [r["label"] for r in results if r.get("meets_target") is False]
    if missed:
        print(f"[zoo] below target: {', '.join(missed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
