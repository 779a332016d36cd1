"""The defense contract and its registry: ``@register_defense(name)`` on a :class:`Defense` subclass.

A defense kind builds a :class:`~bench.api.frontend.FrontEnd` from validated parameters and, when trainable,
fits it through frozen guide classifiers. Third-party packages add defenses through the ``frontline.defenses``
entry-point group.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict
from torch import nn

from bench.api.context import JobContext
from bench.api.data import ImageData
from bench.api.frontend import FrontEnd
from bench.api.registry import Registry


class DefenseParams(BaseModel):
    """Base of every defense's parameter model; unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Defense(ABC):
    """A registered defense kind: builds a front-end and, when trainable, fits it through frozen guides."""

    Params: ClassVar[type[DefenseParams]] = DefenseParams
    #: Whether ``fit`` uses the guides; untrainable front-ends share one artifact across guide sets.
    trainable: ClassVar[bool] = False
    #: Whether ``fit`` needs the training data at all (some front-ends train without guides).
    needs_data: ClassVar[bool] = False
    #: Whether ``fit`` trains its guides too, from scratch and jointly with the front-end (Zhou et al.'s
    #: joint adversarial training). Its guides in a matrix are then classifiers to build, never pre-trained
    #: ones: ``fit`` gets them freshly initialized and trainable, the front-end job keeps the weights it
    #: leaves them with, and the front-end is evaluated natively on those, not on an independently trained
    #: classifier of the same configuration. Implies ``trainable`` and ``needs_data``.
    trains_classifier: ClassVar[bool] = False

    @abstractmethod
    def build(self, params: Any, input_shape: tuple[int, int, int]) -> FrontEnd: ...

    def fit(
        self,
        frontend: FrontEnd,
        guides: Sequence[nn.Module],
        train: ImageData,
        val: ImageData | None,
        params: Any,
        ctx: JobContext,
    ) -> dict[str, float]:
        """Train ``frontend`` in place; returns training metrics for the job record.

        Guides arrive frozen and shared with other jobs: the harness checks their weights are unchanged
        afterwards and fails the job if not (unless the defense ``trains_classifier``: then they are its own,
        new and trainable, and ``fit`` leaves them trained and in eval mode). ``val`` holds images of the
        training split disjoint from ``train`` (``n_val`` in the defense's matrix entry; None when 0), for
        early stopping, a plateau schedule or validation metrics. A long fit checkpoints each epoch through
        :class:`bench.api.TrainingState`, so a killed run resumes it.
        """
        return {}

    def check(self, params: Any, input_shape: tuple[int, int, int], guides: Sequence[nn.Module]) -> None:
        """Raise :class:`~bench.errors.ConfigError` for what only the defense knows is wrong with this pairing
        of parameters, input shape and guides (a guide layer it names that a guide lacks, guides that do not
        fit together, a network the input size cannot take).

        Called before ``fit`` with the real guides, and by ``bench validate`` before any work with untrained
        guides of the same architectures (zoo models it cannot build without downloading are left out): a
        check may read structure and run a forward pass, never rely on weights. The default accepts all.
        """
        return None

    def check_init(self, params: Any, init_kind: str | None, init_params: Any | None) -> None:
        """Raise :class:`~bench.errors.ConfigError` when this front-end may not start its training from the
        one it is given, or must start from one and is given none (a fine-tuning objective, say).

        ``init_kind`` and ``init_params`` are the kind and validated parameters of the matrix entry named by
        ``init_from``, whose trained (or loaded) front-end ``fit`` then receives as ``frontend``; both are
        None for a front-end trained from scratch. The harness itself checks that the two architectures
        match (a strict load), so this need only judge what the parameters mean. Called by ``bench validate``
        and before planning, for every trained entry of the matrix (an entry loaded from ``weights`` is not
        trained). The default accepts every pairing, and no init.
        """
        return None

    def check_targets(self, params: Any, guides: Sequence[str], targets: Sequence[str]) -> None:
        """Raise :class:`~bench.errors.ConfigError` when the front-end may not be evaluated on ``targets``
        after training through ``guides`` (a denoiser declared black-box, trained through surrogates,
        evaluated on one of them: that is white-box).

        Both are classifier labels of the matrix; a target that is the same classifier as a guide under
        another label (an identical entry) arrives as that guide's label, so a check may compare labels.
        Called by ``bench validate`` before any work, once per experiment and guide set of a trainable
        defense, with the classifiers that front-end is evaluated on (a native experiment's are its guides).
        The default accepts all.
        """
        return None

    def epochs_at_full_scale(self, params: Any) -> int | None:
        """The paper's epoch count, so the harness can say when a run was trained at reduced scale."""
        return None


DEFENSES: Registry[type[Defense]] = Registry("defense")


def register_defense(name: str, description: str | None = None) -> Callable[[type[Defense]], type[Defense]]:
    return DEFENSES.register(name, description)
