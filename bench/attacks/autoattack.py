"""AutoAttack (Croce & Hein 2020), run through the ``pyautoattack`` reference implementation on the pipeline.

The point of this attack in a benchmark is that it is *someone else's code*: a defense that only beats our own
PGD proves little, so AutoAttack is driven as published (its ``AutoAttack`` class, its version presets) and
never re-implemented here. What this module adds is plumbing the harness needs:

* the pipeline itself is the model, so every forward pass pyautoattack makes is counted by
  ``Pipeline.forward`` and every backward pass by the pipeline's autograd hook, as for our own attacks;
* pyautoattack reseeds the *global* torch RNG (``torch.random.manual_seed(seed)``) inside each sub-attack;
  the call runs under :func:`torch.random.fork_rng`, so the harness's global RNG state is the same afterwards
  and the seed is explicit and recorded (defenses draw from their private generator and are unaffected);
* its printing and logging are captured, and its own soundness-check messages (``checks.py``: randomized
  defense, zero gradients, softmax outputs, dynamic defense, too few classes, Square beating the white-box
  attacks) are kept on the instance as ``last_warnings`` / ``all_warnings`` and in :meth:`describe`, so they
  are stored with the result instead of scrolling past.

EOT: the ``rand`` version is the one meant for randomized pipelines; it averages gradients over its *own*
``eot_iter`` (20) sequential draws. The harness's ``eot_samples`` and its batched EOT in
``Pipeline.loss_and_grad`` do not apply inside pyautoattack. Left alone, pyautoattack would judge success on a
single draw and stop attacking an example after one lucky draw, which the harness's majority vote may then
count as robust; so in the ``rand`` version on a randomized pipeline it sees the harness's vote wherever it
only judges (no gradient taken) and single draws where it takes gradients (:class:`VoteJudged`).
"""

from __future__ import annotations

import io
import logging
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from bench.api import Attack, AttackParams, JobContext, Norm, Pipeline, Threat, register_attack
from bench.errors import ConfigError

#: The published budgets, pyautoattack's own: ``AutoAttack.__init__`` builds APGD and FAB with n_iter=100 and
#: Square with n_queries=5000, ``_set_version`` keeps them for every version and gives ``rand`` eot_iter=20.
#: Restarts are always the version's (no parameter here changes them).
REFERENCE_N_ITER = 100
REFERENCE_N_QUERIES = 5000
REFERENCE_RAND_EOT = 20

SubAttack = Literal["apgd-ce", "apgd-t", "fab-t", "square", "apgd-dlr"]
#: Each version's sub-attacks in the order pyautoattack runs them (its ``_set_version``).
VERSION_ATTACKS: dict[str, tuple[SubAttack, ...]] = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "rand": ("apgd-ce", "apgd-dlr"),
}

#: pyautoattack's spelling of our norms.
AA_NORM: dict[Norm, str] = {"linf": "Linf", "l2": "L2", "l1": "L1"}

_AA_LOGGER = "auto-attack"


class VoteJudged(torch.nn.Module):
    """A randomized pipeline as pyautoattack's ``rand`` version should see it: one draw where a gradient is
    taken (its EOT averages those), the harness's vote wherever it only decides which examples are already
    fooled. The vote comes back as log vote counts, so its argmax is the plurality class and the output is
    not mistaken for probabilities by pyautoattack's softmax check."""

    def __init__(self, pipeline: Pipeline) -> None:
        super().__init__()
        self.pipeline = pipeline

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            out: torch.Tensor = self.pipeline(x)
            return out
        return self.pipeline.votes(x).float().add(0.5).log()


@dataclass
class Captured:
    """What a pyautoattack call said: its soundness warnings apart from the rest of its chatter."""

    warnings: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


class _ListHandler(logging.Handler):
    def __init__(self, out: Captured) -> None:
        super().__init__(level=logging.DEBUG)
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        (self.out.warnings if record.levelno >= logging.WARNING else self.out.log).append(msg)


def _package_dir() -> str:
    import pyautoattack

    return str(Path(pyautoattack.__file__).resolve().parent)


@contextmanager
def captured_pyautoattack(devices: list[torch.device]) -> Iterator[Captured]:
    """Run pyautoattack code quietly and without side effects on the harness's process state.

    Captures its logger, stdout and ``warnings.warn`` calls (the checks use the latter when given no logger);
    warnings raised by other code in the meantime are re-emitted untouched. Restores the global torch RNG
    (pyautoattack reseeds it), the tracing function (its dynamic-defense check calls ``sys.settrace(None)``,
    which would silently switch off coverage or a debugger), and zeroes the check's module-global call
    counters first: pyautoattack never resets them, so one dynamic pipeline would flag every later one.
    """
    from pyautoattack import checks

    out = Captured()
    logger = logging.getLogger(_AA_LOGGER)
    handler = _ListHandler(out)
    old_level, old_propagate = logger.level, logger.propagate
    old_trace = sys.gettrace()
    for name in checks.funcs:
        checks.funcs[name] = 0
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    stdout = io.StringIO()
    package = _package_dir()
    cuda = [d for d in devices if d.type == "cuda"]
    try:
        with (
            warnings.catch_warnings(record=True) as caught,
            redirect_stdout(stdout),
            torch.random.fork_rng(devices=cuda),
        ):
            warnings.simplefilter("always")
            yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
        sys.settrace(old_trace)
        out.log.extend(line for line in stdout.getvalue().splitlines() if line.strip())
    for w in caught:
        if str(Path(w.filename).resolve()).startswith(package):
            out.warnings.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def image_side_check(attack: str, norm: Norm, x: torch.Tensor) -> None:
    """pyautoattack's L2 Square tiles the image with squares of side h//5: smaller images divide by zero."""
    if norm == "l2" and x.dim() == 4 and min(x.shape[2], x.shape[3]) < 5:
        raise ConfigError(
            f"{attack}: pyautoattack's L2 Square attack needs images of at least 5x5 pixels, got "
            f"{x.shape[2]}x{x.shape[3]}"
        )


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


class AutoAttackParams(AttackParams):
    #: pyautoattack's presets: ``standard`` (APGD-CE, APGD-T, FAB-T, Square) or ``rand`` (APGD-CE, APGD-DLR,
    #: EOT over 20 draws) for randomized pipelines.
    version: Literal["standard", "rand"] = "standard"
    #: Passed to pyautoattack, which reseeds every sub-attack with it; explicit so it is recorded.
    seed: int = 0
    #: APGD and FAB iterations; 100 is the published protocol, fewer is a reduced-scale run.
    n_iter: int = Field(REFERENCE_N_ITER, ge=1)
    #: Square's query budget in the standard version (5000 in the published protocol).
    n_queries: int = Field(REFERENCE_N_QUERIES, ge=1)
    #: EOT draws per APGD gradient; None keeps the version's own (1 for standard, 20 for rand).
    eot_iter: int | None = Field(None, ge=1)
    #: Examples pyautoattack pushes through the pipeline at once.
    batch_size: int = Field(250, ge=1)
    #: A subset of the version's sub-attacks to run (pyautoattack's ``attacks_to_run``, kept in the version's
    #: order); None runs all of them, as published. A subset is a reduced budget and says so.
    attacks: list[SubAttack] | None = Field(None, min_length=1)

    @field_validator("attacks")
    @classmethod
    def _no_repeats(cls, value: list[SubAttack] | None) -> list[SubAttack] | None:
        if value is not None and len(set(value)) < len(value):
            raise ValueError(f"each sub-attack runs once, got {value}")
        return value

    @model_validator(mode="after")
    def _of_the_version(self) -> AutoAttackParams:
        order = VERSION_ATTACKS[self.version]
        foreign = [a for a in self.attacks or [] if a not in order]
        if foreign:
            raise ValueError(f"the {self.version} version runs {', '.join(order)}, not {', '.join(foreign)}")
        if self.attacks is not None:  # pyautoattack's order, whatever order they were listed in: one key
            object.__setattr__(self, "attacks", sorted(self.attacks, key=order.index))
        return self

    @model_serializer(mode="wrap")
    def _absent_when_all(self, handler: SerializerFunctionWrapHandler) -> dict[str, object]:
        """Unset, ``attacks`` is left out of the dump, so the keys of jobs run before it existed stay."""
        dumped: dict[str, object] = handler(self)
        if dumped.get("attacks") is None:
            dumped.pop("attacks", None)
        return dumped


class AutoAttackRandParams(AutoAttackParams):
    version: Literal["standard", "rand"] = "rand"


@register_attack("autoattack")
class AutoAttack(Attack):
    """Croce & Hein's AutoAttack (standard version), pyautoattack's reference code run on the pipeline.

    Target classes of APGD-T and FAB-T are capped at (classes - 1) so datasets with fewer than 10 classes
    work (the reference code would index past the logits); the cap is recorded in ``notes``.
    """

    Params = AutoAttackParams
    norms: ClassVar[tuple[Norm, ...]] = ("linf", "l2", "l1")
    #: 2: the rand version judges success by the harness's vote (:class:`VoteJudged`).
    revision = 2
    source = (
        "Croce & Hein, Reliable evaluation of adversarial robustness with an ensemble of diverse "
        "parameter-free attacks, ICML 2020; pyautoattack (PyPI), AutoAttack class, published version presets"
    )
    params: AutoAttackParams

    def __init__(self, params: AttackParams | None = None) -> None:
        super().__init__(params)
        #: pyautoattack's soundness warnings from the latest ``perturb`` call (one harness batch).
        self.last_warnings: list[str] = []
        #: Every distinct soundness warning since this instance was made, across batches, in order.
        self.all_warnings: list[str] = []
        #: Frontline's own remarks on how the reference protocol was adapted (e.g. capped target classes).
        self.notes: list[str] = []
        #: pyautoattack's informational log from the latest call (its progress lines).
        self.last_log: list[str] = []

    def _eot(self) -> int:
        p = self.params
        if p.eot_iter is not None:
            return p.eot_iter
        return REFERENCE_RAND_EOT if p.version == "rand" else 1

    def cost_per_example(self, pipeline: Pipeline) -> int:
        """APGD-CE runs first on every example the pipeline gets right: n_iter gradients of eot_iter draws."""
        return self.params.n_iter * self._eot()

    def budget_note(self) -> str | None:
        p = self.params
        cut = []
        if p.n_iter < REFERENCE_N_ITER:
            cut.append(f"{p.n_iter} of {REFERENCE_N_ITER} APGD/FAB iterations")
        # Square runs only in the standard version; only the rand version's APGD averages over draws.
        runs_square = p.attacks is None or "square" in p.attacks
        if p.version == "standard" and p.n_queries < REFERENCE_N_QUERIES and runs_square:
            cut.append(f"{p.n_queries} of {REFERENCE_N_QUERIES} Square queries")
        if p.version == "rand" and self._eot() < REFERENCE_RAND_EOT:
            cut.append(f"{self._eot()} of {REFERENCE_RAND_EOT} EOT draws per gradient")
        if p.attacks is not None and len(p.attacks) < len(VERSION_ATTACKS[p.version]):
            left = [a for a in VERSION_ATTACKS[p.version] if a not in p.attacks]
            cut.append(f"{', '.join(left)} not run (of the {p.version} version)")
        return ", ".join(cut) or None

    def perturb(
        self, pipeline: Pipeline, x: torch.Tensor, y: torch.Tensor, threat: Threat, ctx: JobContext
    ) -> torch.Tensor:
        self.check(threat)
        p = self.params
        name = "autoattack" if p.version == "standard" else "autoattack-rand"
        if p.version == "standard":
            image_side_check(name, threat.norm, x)
        with torch.no_grad():
            n_cls = int(pipeline(x[:1]).shape[1])
        need = 4 if p.version == "standard" else 3
        if n_cls < need:
            raise ConfigError(
                f"{name} uses the {'targeted ' if need == 4 else ''}DLR loss, which needs at least {need} "
                f"classes; the pipeline has {n_cls}"
            )
        from pyautoattack import AutoAttack as ReferenceAutoAttack

        model: torch.nn.Module = pipeline
        if p.version == "rand" and pipeline.randomized:
            model = VoteJudged(pipeline)
        with captured_pyautoattack([x.device]) as said:
            aa = ReferenceAutoAttack(
                model,
                norm=AA_NORM[threat.norm],
                eps=threat.eps,
                seed=p.seed,
                version=p.version,
                device=x.device,
            )
            self._configure(aa, pipeline, threat, n_cls)
            if p.attacks is not None:
                aa.attacks_to_run = list(p.attacks)
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=p.batch_size)
        self.last_warnings = _dedupe(said.warnings)
        self.all_warnings = _dedupe(self.all_warnings + self.last_warnings)
        self.last_log = said.log
        out: torch.Tensor = x_adv.detach().to(x.dtype)
        # pyautoattack keeps its points in the ball up to its own float rounding; the harness allows 1e-6.
        return threat.project(x, out)

    def _configure(self, aa: Any, pipeline: Pipeline, threat: Threat, n_cls: int) -> None:
        """Apply the exposed knobs to pyautoattack's own sub-attack objects (its code, our settings)."""
        p = self.params
        if p.n_iter != REFERENCE_N_ITER:
            from pyautoattack.autopgd_base import APGDAttack

            # APGD derives its step-size checkpoints from n_iter in __init__; take them from a fresh instance
            # so the schedule is pyautoattack's, not a copy of its formula.
            ref = APGDAttack(pipeline, n_iter=p.n_iter, eps=threat.eps, norm=AA_NORM[threat.norm])
            for apgd in (aa.apgd, aa.apgd_targeted):
                for attr in ("n_iter", "n_iter_orig", "n_iter_2", "n_iter_min", "size_decr"):
                    setattr(apgd, attr, getattr(ref, attr))
            aa.fab.n_iter = p.n_iter
        if p.eot_iter is not None:
            aa.apgd.eot_iter = p.eot_iter
            aa.apgd_targeted.eot_iter = p.eot_iter
        aa.square.n_queries = p.n_queries
        for sub in (aa.apgd_targeted, aa.fab):
            if sub.n_target_classes > n_cls - 1:
                note = (
                    f"{type(sub).__name__}: target classes capped from {sub.n_target_classes} to {n_cls - 1} "
                    f"({n_cls} classes)"
                )
                sub.n_target_classes = n_cls - 1
                if note not in self.notes:
                    self.notes.append(note)

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(warnings=list(self.all_warnings), notes=list(self.notes))
        return out


@register_attack("autoattack-rand")
class AutoAttackRand(AutoAttack):
    """AutoAttack's ``rand`` version for randomized pipelines: APGD-CE and APGD-DLR with EOT over 20 draws."""

    Params = AutoAttackRandParams
    source = (
        "Croce & Hein, ICML 2020, AutoAttack 'rand' version for randomized defenses (APGD-CE + APGD-DLR, "
        "EOT=20); pyautoattack (PyPI) reference implementation"
    )
