"""Pre-trained weights from elsewhere, loaded the way a matrix loads them, scored on the full real test split.

The zoo promises that a ``weights:`` file lands in our own architecture definition exactly as its authors
trained it. The test suite checks this on 500 images per checkpoint (fast, but with a confidence interval of
about ±2.5 points); this script scores every checkpoint on the whole test split through the same loader
(``classifiers.api.load_classifier_weights``) and dataset registry ``bench run`` uses, and compares with the
accuracy each checkpoint records about itself.

    python benchmarks/pretrained.py --data-dir "$BENCH_DATA_DIR"
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from bench.api import (
    CLASSIFIERS,
    DATASETS,
    build_classifier,
    count_correct,
    load_classifier_weights,
    load_state_dict_file,
)
from bench.config import NamedNormalization
from bench.data.sources import SPLITS  # noqa: F401  (importing it registers the built-in datasets)
from bench.stats import clopper_pearson

#: Folder under the data root, and the architecture each checkpoint file name maps to.
AKAMASTER = "pretrained/cifar10_resnet_akamaster"
FILE_NAME = re.compile(r"(resnet\d+)-[0-9a-f]+\.th")


def recorded_accuracy(path: Path) -> float | None:
    """The checkpoint's own ``best_prec1`` (percent), read as plain data like everything else."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    value = obj.get("best_prec1") if isinstance(obj, dict) else None
    return float(value) if value is not None else None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("BENCH_DATA_DIR", "data")))
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    test = DATASETS.get("cifar10").load(args.data_dir, "test", download=False)
    info = test.info
    norm = NamedNormalization["imagenet"]
    print(f"CIFAR-10 test split: {len(test)} images from {args.data_dir}")
    header = ["checkpoint", "architecture", "params", "correct / n", "accuracy %", "95% CI %", "recorded %",
              "in CI", "s"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    checkpoints = sorted((args.data_dir / AKAMASTER).glob("resnet*.th"))
    if not checkpoints:
        raise SystemExit(f"no checkpoints under {args.data_dir / AKAMASTER}")
    for path in checkpoints:
        match = FILE_NAME.fullmatch(path.name)
        if match is None or match.group(1) not in CLASSIFIERS:
            print(f"skipped {path.name}: no architecture of that name")
            continue
        arch = match.group(1)
        model = build_classifier(arch, info.num_classes, norm.mean, norm.std)
        load_classifier_weights(model, load_state_dict_file(path), str(path))
        start = time.perf_counter()
        correct = count_correct(model, test, torch.device("cpu"))
        seconds = time.perf_counter() - start
        low, high = clopper_pearson(correct, len(test))
        recorded = recorded_accuracy(path)
        inside = "-" if recorded is None else ("yes" if low <= recorded / 100 <= high else "**no**")
        params = sum(t.numel() for t in model.net.parameters()) / 1e6
        shown = "-" if recorded is None else f"{recorded:.2f}"
        accuracy = f"{100 * correct / len(test):.2f}"
        cells = [path.name, arch, f"{params:.3f}M", f"{correct} / {len(test)}", accuracy,
                 f"{100 * low:.2f}-{100 * high:.2f}", shown, inside, f"{seconds:.0f}"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
