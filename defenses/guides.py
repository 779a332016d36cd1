"""What the guided front-ends need to know about their guides before training: that every guide takes the
front-end's images and answers in the same classes, and which of a guide's layers are named for a loss
(read with forward hooks, so any architecture works without changes to its code).

Everything here runs on structure and a forward pass of two blank images, never on weights, so ``bench
validate`` can run it on untrained copies of the guides (see :meth:`bench.api.Defense.check`).
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from bench.api import ConfigError

#: The stages of a ResNet (``layer1``, ``layer2``, ...), the default guide layers of the Robustifier.
STAGE = re.compile(r"(?:^|\.)layer\d+$")
#: Names listed in full in an error; beyond that, only the shallow ones.
LISTED = 40


def device_of(module: nn.Module) -> torch.device:
    first = next(itertools.chain(module.parameters(), module.buffers()), None)
    return first.device if first is not None else torch.device("cpu")


def check_guides_fit(input_shape: tuple[int, int, int], guides: Sequence[nn.Module]) -> None:
    """Every guide classifies images of ``input_shape`` into the same number of classes; one front-end is
    trained for all of them, so an ensemble mixing input shapes or datasets cannot be trained."""
    classes: list[int] = []
    for i, guide in enumerate(guides):
        try:
            logits = _forward(guide, input_shape)
        except RuntimeError as exc:
            raise ConfigError(
                f"guide {i + 1} of {len(guides)} cannot take the front-end's images of shape {input_shape} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0]}); all guides of one front-end must take "
                "images of the same shape"
            ) from exc
        if logits.dim() != 2:
            raise ConfigError(
                f"guide {i + 1} of {len(guides)} returns an output of shape {tuple(logits.shape)} for a "
                "batch of two images; a guide must return logits, one row per image"
            )
        classes.append(int(logits.shape[1]))
    if len(set(classes)) > 1:
        raise ConfigError(
            f"the guides answer in different numbers of classes ({', '.join(map(str, classes))}); all guides "
            "of one front-end must classify the same dataset"
        )


def guide_layers(guide: nn.Module, names: Sequence[str] | None, index: int, count: int) -> list[str]:
    """The guide's layers whose outputs a loss compares: ``names`` as given, or the ResNet stages when None.

    Raises :class:`ConfigError` listing the guide's valid names when a name is not one of its modules, or
    when ``names`` is None and the guide has no stages.
    """
    modules = dict(guide.named_modules())
    valid = [name for name in modules if name]
    which = f"guide {index + 1} of {count}" if count > 1 else "the guide"
    if names is None:
        stages = [name for name in valid if STAGE.search(name)]
        if not stages:
            raise ConfigError(
                f"{which} has no ResNet stages (modules named layer1, layer2, ...) to take activations from; "
                f"name its layers with guide_layers: [...] ({_listing(valid)})"
            )
        return stages
    for name in names:
        if name not in modules or not name:
            close = difflib.get_close_matches(name, valid, n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConfigError(f"guide layer {name!r} is not a module of {which}{hint} ({_listing(valid)})")
    return list(names)


def _listing(valid: list[str]) -> str:
    if len(valid) <= LISTED:
        return f"valid: {', '.join(valid)}"
    shallow = [name for name in valid if name.count(".") <= 1]
    return f"valid, to two levels: {', '.join(shallow)}; and {len(valid) - len(shallow)} deeper modules"


def check_layers_run(
    guide: nn.Module, names: Sequence[str], input_shape: tuple[int, int, int], index: int, count: int
) -> None:
    """Each named layer runs exactly once in a forward pass and returns one tensor: a module that is built
    but never called (or called twice) would leave the loss without its activation, or with the wrong one."""
    with capture(guide, names, strict=False) as taken:
        _forward(guide, input_shape)
    which = f"guide {index + 1} of {count}" if count > 1 else "the guide"
    for name in names:
        outputs = taken.get(name, [])
        if len(outputs) != 1:
            raise ConfigError(
                f"guide layer {name!r} gives {len(outputs)} tensor outputs in one forward pass of {which}; "
                "name a layer that runs once and returns a tensor"
            )


@contextmanager
def capture(
    guide: nn.Module, names: Sequence[str], *, strict: bool = True
) -> Iterator[dict[str, list[torch.Tensor]]]:
    """The outputs of the named layers during the forward passes run inside the block, in call order.

    Outputs are cloned: a later in-place operation of the guide (an in-place ReLU, say) must not change a
    captured activation, nor break its gradient. With ``strict``, an output that is not a tensor is an error.
    """
    modules = dict(guide.named_modules())
    taken: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    handles = []

    def hook(name: str) -> Any:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                taken[name].append(output.clone())
            elif strict:
                raise ConfigError(f"guide layer {name!r} returns {type(output).__name__}, not a tensor")

        return record

    for name in names:
        handles.append(modules[name].register_forward_hook(hook(name)))
    try:
        yield taken
    finally:
        for handle in handles:
            handle.remove()


def _forward(guide: nn.Module, input_shape: tuple[int, int, int]) -> torch.Tensor:
    """Two blank images through the guide in eval mode (the guide's mode is put back)."""
    was_training = guide.training
    guide.eval()
    try:
        with torch.no_grad():
            out = guide(torch.full((2, *input_shape), 0.5, device=device_of(guide)))
    finally:
        guide.train(was_training)
    if not isinstance(out, torch.Tensor):
        raise ConfigError(f"a guide returned {type(out).__name__} instead of a tensor of logits")
    return out
