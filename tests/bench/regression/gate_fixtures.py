"""Regenerate the CI gate's reference rows and the two broken runs its tests check against them.

    BENCH_DATA_DIR=../shared/data .venv/bin/python -m tests.bench.regression.gate_fixtures

from the repository root, on a committed, clean tree, whenever the gate's job keys change (the matrix, or a
change to how jobs are keyed): ``test_gate`` then reports drift instead of a regression. It runs
``examples/ci-gate.yaml`` three times, each into a fresh temporary store, through the real ``bench run`` and
``bench export`` commands:

- as it is: the committed reference, ``examples/ci-gate.results.json`` (the file ``.ci/run`` checks against);
- with every PGD cut to one step, as a bug that weakens the attack would
  (``tests/data/ci-gate/weak-pgd.json``);
- with AAA trained at learning rate 1e-9, as a bug that breaks the front-end's training would
  (``tests/data/ci-gate/broken-aaa.json``).

The broken runs keep the reference's job keys, since keys hash configs and the breakage is in the code: so
``bench check`` compares them row by row, as it would a real regression. It takes a few minutes on 2 CPU
cores.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from click.testing import CliRunner

from bench.attacks.pgd import PGD
from bench.cli import main as bench
from defenses.aaa import AAA

REPO = Path(__file__).resolve().parents[3]
MATRIX = REPO / "examples" / "ci-gate.yaml"
REFERENCE = REPO / "examples" / "ci-gate.results.json"
WEAK_PGD = REPO / "tests" / "data" / "ci-gate" / "weak-pgd.json"
BROKEN_AAA = REPO / "tests" / "data" / "ci-gate" / "broken-aaa.json"


@contextmanager
def unchanged() -> Iterator[None]:
    yield


@contextmanager
def one_step_pgd() -> Iterator[None]:
    """Every PGD runs one step, its config (and so its job key) unchanged."""
    perturb = PGD.perturb

    def weakened(self: PGD, *args: Any, **kwargs: Any) -> Any:
        self.params = self.params.model_copy(update={"steps": 1})
        return perturb(self, *args, **kwargs)

    with mock.patch.object(PGD, "perturb", weakened):
        yield


@contextmanager
def untrained_aaa() -> Iterator[None]:
    """AAA trains with a learning rate of 1e-9: it runs every step and learns nothing."""
    fit = AAA.fit

    def broken(self: AAA, frontend: Any, guides: Any, train: Any, val: Any, params: Any, ctx: Any) -> Any:
        return fit(self, frontend, guides, train, val, params.model_copy(update={"lr": 1e-9}), ctx)

    with mock.patch.object(AAA, "fit", broken):
        yield


def run_and_export(variant: Any, out: Path, work: Path) -> None:
    runner = CliRunner()
    db, artifacts = work / f"{out.stem}.db", work / f"{out.stem}-artifacts"
    with variant():
        args = ["run", "--matrix", str(MATRIX), "--db", str(db), "--artifacts", str(artifacts), "--quiet"]
        ran = runner.invoke(bench, [*args, "--threads", "2"], catch_exceptions=False)
    print(ran.output)
    if ran.exit_code != 0:
        sys.exit(f"bench run of {out.name} failed")
    exported = runner.invoke(bench, ["export", "--db", str(db), "--format", "json", "--out", str(out)])
    print(exported.output)
    if exported.exit_code != 0:
        sys.exit(f"bench export of {out.name} failed")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for variant, out in ((unchanged, REFERENCE), (one_step_pgd, WEAK_PGD), (untrained_aaa, BROKEN_AAA)):
            run_and_export(variant, out, Path(tmp))


if __name__ == "__main__":
    main()
