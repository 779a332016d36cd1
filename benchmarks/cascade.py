"""The standard protocol's cascade against running each of its attacks on every example.

Two matrices per case, run by ``bench run`` into one store, so their classifier and front-end jobs are shared:

- **cascade**: no ``attacks:`` block, so the standard protocol (:mod:`bench.evaluation.standard`); each attack
  runs only on the examples every earlier one failed to break;
- **every attack on every example**: the same attacks with the same parameters, listed as a custom attack set
  without a cascade, so each runs side by side on every clean-correct example, as before the protocol.

Cost is what the harness counts: the forward and backward passes (in images) of every attack job through the
pipeline (clean predictions, the attack, the harness's verification and gradient probe) plus the transfer
attack's passes through its surrogate. Soundness checks are off in both, as they cost the same either way.
Both cells are the per-example worst case over the same attacks; the script prints both robust accuracies
and how many examples they disagree on (attacks draw random starts per job, so a few may).

Cases: AAA (Vaishnavi et al.) trained here through one small MNIST classifier at the main example's reduced
scale, at Linf 0.3; and akamaster's pre-trained CIFAR-10 ResNet-20 behind 4-bit bit-depth reduction (Xu et
al.'s setting for colour images, declared non-differentiable, so BPDA applies) at Linf 8/255. The default
evaluates 50 test images per case (about 6 minutes on a quiet 2-core CPU); ``--work DIR`` keeps the store,
so a second run reuses the trained models.

    python benchmarks/cascade.py [--data-dir DIR] [--n 50] [--threads 2] [--cases mnist-aaa ...]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from bench.cli import main as bench
from bench.evaluation.standard import standard_attacks
from bench.storage import Store

EVERY = "every attack on every example"
AKAMASTER_R20 = "{data_dir}/pretrained/cifar10_resnet_akamaster/resnet20-12fca82f.th"

CASES: dict[str, dict[str, Any]] = {
    "mnist-aaa": {
        # The main example's AAA settings (examples/quick.yaml), guided by the fastest MNIST classifier.
        "classifiers": {
            "C": {"arch": "mnist-c", "dataset": "mnist", "train": {"epochs": 2, "n_train": 20000}}
        },
        "defenses": {
            "aaa": {
                "kind": "aaa",
                "n_train": 8000,
                "params": {"epochs": 2, "batch_size": 64, "width": 8, "eps": 0.3, "attack_steps": 5,
                           "attack_rel_step": 0.3},
            }
        },
        "threats": {"linf": {"norm": "linf", "epsilons": [0.3]}},
        "experiments": [{"kind": "native", "defenses": ["aaa"], "guides": ["C"]}],
    },
    "cifar10-bit-depth": {
        "classifiers": {"R20": {"arch": "resnet20", "dataset": "cifar10", "normalization": "imagenet",
                                "weights": AKAMASTER_R20}},
        "defenses": {"bit-depth": {"kind": "bit-depth", "params": {"bits": 4}}},
        "threats": {"linf": {"norm": "linf", "epsilons": ["8/255"]}},
        "experiments": [{"kind": "native", "defenses": ["bit-depth"], "guides": ["R20"]}],
    },
}


def matrices(case: str, n: int) -> dict[str, dict[str, Any]]:
    """The case as a standard-protocol matrix and as the same attacks run side by side."""
    evaluation = {"n_eval": n, "batch_size": n, "checks": False}
    base = {**CASES[case], "name": f"cascade-{case}", "evaluation": evaluation}
    every = {
        a.label: {"kind": a.kind, "params": a.params, "bpda": a.bpda}
        for a in standard_attacks(randomized=False)  # both pipelines are deterministic
    }
    return {"cascade": base, EVERY: {**base, "name": f"every-{case}", "attacks": every}}


def run(raw: dict[str, Any], work: Path, data_dir: Path, threads: int | None) -> int:
    path = work / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    args = ["run", "--matrix", str(path), "--db", str(work / "r.db"), "--artifacts", str(work / "artifacts"),
            "--data-dir", str(data_dir), "--quiet"]
    if threads:
        args += ["--threads", str(threads)]
    bench.main(args, standalone_mode=False)
    return max(r.id for r in Store(work / "r.db").runs())


def measured(store: Store, run_id: int) -> dict[str, Any]:
    keys = [link.job_key for link in store.run_jobs(run_id)]
    jobs = [j for j in store.jobs(keys) if j.kind == "attack"]
    attacks = []
    order = [a.label for a in standard_attacks(randomized=False)]
    for j in sorted(jobs, key=lambda j: order.index(j.label.split(" ")[0])):
        m = j.metrics
        surrogate = int(m.get("surrogate_n_forward", 0)) + int(m.get("surrogate_n_backward", 0))
        passes = int(m["n_forward"]) + int(m["n_backward"]) + surrogate
        attacks.append({"label": j.label.split(" ")[0], "run_on": m["run_on"], "broke": m["broke"],
                        "passes": passes, "wall_s": float(m["wall_s"])})
    rows = store.results_for(keys)
    (cell,) = [r for r in rows if r.attack == "worst-case" and r.metric == "robust_accuracy"]
    return {"attacks": attacks, "passes": sum(a["passes"] for a in attacks),
            "wall_s": sum(a["wall_s"] for a in attacks), "robust": cell}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=Path(os.environ.get("BENCH_DATA_DIR", "data")))
    p.add_argument("--n", type=int, default=50, help="evaluation images per case (default 50)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--work", type=Path, default=None, help="store and artifacts folder (default: a temp dir)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        summary = ["| case | n | cascade passes | every-attack passes | ratio | cascade robust % | "
                   "every-attack robust % | examples that differ | cascade wall s | every-attack wall s |",
                   "|---|---|---|---|---|---|---|---|---|---|"]
        for case in args.cases:
            found = {}
            for strategy, raw in matrices(case, args.n).items():
                found[strategy] = measured(Store(work / "r.db"), run(raw, work, args.data_dir, args.threads))
                print(f"\n{case}, {strategy}:")
                print("| attack | run on | broke | passes | wall s |\n|---|---|---|---|---|")
                for a in found[strategy]["attacks"]:
                    cols = (a["label"], a["run_on"], a["broke"], a["passes"], f"{a['wall_s']:.1f}")
                    print("| " + " | ".join(str(c) for c in cols) + " |")
            cascade, every = found["cascade"], found[EVERY]
            pairs = zip(cascade["robust"].outcomes, every["robust"].outcomes, strict=True)
            differ = sum(x != y for x, y in pairs)
            summary.append(
                f"| {case} | {cascade['robust'].n} | {cascade['passes']} | {every['passes']} | "
                f"{cascade['passes'] / every['passes']:.2f} | {100 * cascade['robust'].value:.1f} | "
                f"{100 * every['robust'].value:.1f} | {differ} | {cascade['wall_s']:.0f} | "
                f"{every['wall_s']:.0f} |"
            )
        print("\n" + "\n".join(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
