"""Loading weights trained elsewhere into an architecture's network, without ever running a pickle's code.

Checkpoints in the wild are pickles; unpickling one in full can execute anything it names. Pickle-based files
are therefore read only with ``torch.load(weights_only=True)``, whose restricted unpickler accepts tensors and
plain containers and refuses everything else; a file it refuses is reported, never retried unsafely.
Safetensors files hold no code at all and are preferred. Which reader a file gets is decided by its
content, never its name: a pickle renamed ``.safetensors``, Cohen et al.'s ``checkpoint.pth.tar`` (a zip, not
a tar) and a file with no suffix all reach one of these two readers or none.

Checkpoints also differ in wrapping (``{"state_dict": ...}``) and in key prefixes left by training wrappers
(``module.`` from DataParallel, ``_orig_mod.`` from ``torch.compile``, ``1.`` from Cohen and Salman et al.'s
``Sequential(NormalizeLayer, net)``); all are undone here so that loading itself can stay strict: a missing,
unexpected or reshaped tensor is an error, not a silently random layer.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import struct
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from bench.errors import WeightsError

#: Keys under which training scripts commonly nest the state dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model", "net")
#: Prefixes training wrappers add to every key: DataParallel/DDP, Lightning-style modules, torch.compile.
PREFIXES = ("module.", "model.", "net.", "_orig_mod.")
#: The normalization buffers a harness classifier artifact holds beside its network's ``net.*`` weights.
STATS = ("mean", "std")
#: What a normalize layer in front of the network may call its statistics, by the harness's name for them.
NORMALIZE_NAMES = {"mean": ("mean", "means"), "std": ("std", "stds", "sds")}
#: The attribute a network sets to the ``(mean, std)`` its published checkpoints were trained behind when
#: those checkpoints cannot say so themselves (see :func:`load_classifier_weights`).
PUBLISHED_NORMALIZATION = "published_normalization"
#: How many offending keys an error message lists before summarizing the rest as a count.
SHOWN = 5
#: ``torch.save``'s two containers: a zip archive (PyTorch >= 1.6), or a pickle stream (protocol 2, so it
#: opens with the PROTO opcode).
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = 0x80
#: Safetensors' own bound on its JSON header, which follows an 8-byte little-endian length.
SAFETENSORS_MAX_HEADER = 100_000_000

StateDict = dict[str, torch.Tensor]


def load_state_dict_file(path: str | os.PathLike[str]) -> StateDict:
    """Read a state dict on the CPU from a safetensors file or, safely, from a PyTorch checkpoint.

    The suffix is not trusted either way: a name is the easiest thing about a file to forge, and checkpoints
    come as ``.pt``, ``.pth``, ``.th``, ``.bin``, ``.ckpt``, ``.pth.tar`` or nothing at all.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist")
    kind = sniff_format(p)
    if kind == "safetensors":
        try:
            return dict(safetensors.torch.load_file(p, device="cpu"))
        except (SafetensorError, OSError) as e:
            raise WeightsError(
                f"weights file {p} is not a readable safetensors file (corrupt or truncated?): {e}"
            ) from e
    if kind is None:
        raise WeightsError(
            f"weights file {p} is not a readable safetensors file, nor a PyTorch checkpoint (a zip archive "
            "or a protocol-2+ pickle): corrupt, truncated, or another format; it was not read"
        )
    try:
        # An open file, not the path: torch.load picks its reader by a path's suffix (".safetensors").
        with p.open("rb") as f:
            obj = torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(
            f"weights file {p} was refused: {refusal_reason(str(e))}. Pickles are only read "
            "as plain tensors and containers; convert the checkpoint to safetensors where its "
            "source is trusted"
        ) from e
    except Exception as e:  # torch.load surfaces damaged files as many exception types
        raise WeightsError(f"weights file {p} is corrupt or truncated ({type(e).__name__}: {e})") from e
    return _unwrap(obj, str(p))


def sniff_format(path: Path) -> str | None:
    """``"safetensors"``, ``"torch"`` (zip or pickle, for the restricted unpickler) or None, from the bytes.

    Bytes that are neither are refused before any parser sees them. A zip or pickle cannot pass for
    safetensors: their ninth byte would have to be the header's ``{`` and their first eight a length that
    fits the file.
    """
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(9)
    except OSError as e:
        raise WeightsError(f"cannot read weights file {path}: {e}") from e
    if len(head) == 9 and head[8:9] == b"{":
        (length,) = struct.unpack("<Q", head[:8])
        if length <= min(size - 8, SAFETENSORS_MAX_HEADER):
            return "safetensors"
    if head.startswith(ZIP_MAGIC) or (head and head[0] == PICKLE_PROTO):
        return "torch"
    return None


def refusal_reason(message: str) -> str:
    """The specific cause inside torch's refusal message, whose generic part advises disabling the safety."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    if found:
        return f"it needs the object {found.group(1)}, which is not a tensor or plain container"
    return "it is not a pickle of tensors and plain containers (corrupt, or not a PyTorch checkpoint)"


def _unwrap(obj: object, source: str) -> StateDict:
    """The state dict itself, or the one a checkpoint nests under a conventional key."""
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{source} holds a {type(obj).__name__}, not a state dict")
    if not obj:
        raise WeightsError(f"{source} is an empty state dict")
    if all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        return dict(obj)
    for key in WRAPPER_KEYS:
        if isinstance(obj.get(key), Mapping):
            return _unwrap(obj[key], f"{source}[{key!r}]")
    non_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    raise WeightsError(
        f"{source} is not a state dict: entries {_few(non_tensors)} are not tensors, and none of "
        f"{', '.join(WRAPPER_KEYS)} holds one"
    )


class Unwrapped(NamedTuple):
    """A checkpoint's tensors renamed to fit a network, and what a ``Sequential(normalize, net)`` held."""

    state: StateDict
    #: The tensors of the layers in front of the network, by their full checkpoint key (``0.means``); empty
    #: where the normalize layer keeps its statistics out of the state dict, as Cohen et al.'s does.
    front: StateDict
    #: Whether the keys came from such a wrapper (its index prefix was stripped).
    sequential: bool


def unwrap_state_dict(state: Mapping[str, torch.Tensor], target_keys: Iterable[str]) -> Unwrapped:
    """``state`` with wrapper prefixes stripped as far as that makes more of its keys match ``target_keys``.

    A name prefix (``module.``, ...) is only stripped when every key carries it, so a partial match is never
    manufactured. An ``nn.Sequential`` wrapper shows as keys that all start with a layer index; the last
    layer is taken as the network, and the tensors of the layers before it are set aside in ``front`` for the
    caller to account for (a classifier checks them as its normalization; anyone else refuses them).
    """
    target = set(target_keys)
    current, sequential = dict(state), False
    front: StateDict = {}
    best = Unwrapped(current, {}, False)
    best_overlap = len(target & current.keys())
    while current:
        prefix = next((p for p in PREFIXES if all(k.startswith(p) for k in current)), None)
        if prefix is not None:
            current = {k[len(prefix) :]: v for k, v in current.items()}
        else:
            if not all("." in k and k.partition(".")[0].isdigit() for k in current):
                break
            layers = {k.partition(".")[0] for k in current}
            last = max(layers, key=int)
            front = {**front, **{k: v for k, v in current.items() if not k.startswith(last + ".")}}
            current = {k[len(last) + 1 :]: v for k, v in current.items() if k.startswith(last + ".")}
            sequential = True
        overlap = len(target & current.keys())
        if overlap > best_overlap:
            best, best_overlap = Unwrapped(current, front, sequential), overlap
    return best


def match_keys(state: Mapping[str, torch.Tensor], target_keys: Iterable[str]) -> StateDict:
    """The network's part of ``state``, renamed to fit ``target_keys`` (see :func:`unwrap_state_dict`)."""
    return unwrap_state_dict(state, target_keys).state


def load_into(net: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``net``; on any mismatch raise before a single tensor is copied.

    Front-ends and classifiers alike come through here, so every checkpoint layout
    :func:`unwrap_state_dict` knows loads into any network. Tensors of layers in front of the network have no
    place in it and are refused as unexpected; a classifier's normalization is the exception, accounted for
    by :func:`load_classifier_weights`.
    """
    _fit(net, unwrap_state_dict(state, net.state_dict().keys()), source)


def _fit(net: nn.Module, unwrapped: Unwrapped, source: str) -> None:
    expected = net.state_dict()
    remapped = dict(unwrapped.state)
    for key, value in expected.items():
        # BatchNorm's batch counter appeared in PyTorch 0.4.1; older checkpoints (akamaster's) lack it. It
        # only matters for momentum=None, so the model keeps its own value, as PyTorch's own loading does.
        if key.rpartition(".")[2] == "num_batches_tracked":
            remapped.setdefault(key, value)
    missing = [k for k in expected if k not in remapped]
    unexpected = [k for k in remapped if k not in expected] + list(unwrapped.front)
    reshaped = [
        f"{k} {tuple(remapped[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in remapped and remapped[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_few(missing)}")
    if unexpected:
        problems.append(f"unexpected {_few(unexpected)}")
    if reshaped:
        problems.append(f"shape mismatch (checkpoint vs model) {_few(reshaped)}")
    if problems:
        raise WeightsError(f"weights from {source} do not fit {type(net).__name__}: {'; '.join(problems)}")
    net.load_state_dict(remapped, strict=True)


def load_classifier_weights(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a checkpoint into a :class:`~bench.api.classifier.Classifier`'s network.

    Besides plain network checkpoints this takes two layouts that put a normalization in front of the
    network, and maps it onto the wrapper's own: the harness's classifier artifacts (``net.*`` plus the
    ``mean``/``std`` buffers), and the ``Sequential(normalize, net)`` of Cohen and Salman et al.'s code
    (``0.*`` for the normalize layer, ``1.*`` for the network). The normalization such a file was trained
    behind must equal the matrix's; otherwise the network would see inputs scaled unlike the ones it was
    trained on, and it would only show as a mysteriously weaker model. Cohen et al.'s normalize layer keeps
    its statistics out of the state dict, so for their layout the network's ``published_normalization``,
    where it declares one, stands in for what the file cannot record.
    """
    net = model.get_submodule("net")
    own = {k: v for k, v in state.items() if k not in STATS}
    if len(own) < len(state) and own and all(k.startswith("net.") for k in own):
        saved = {k: v for k, v in state.items() if k in STATS}
        _check_normalization(model, saved, f"{source} was saved with normalization")
        load_into(net, {k[len("net.") :]: v for k, v in own.items()}, source)
        return
    unwrapped = unwrap_state_dict(state, net.state_dict().keys())
    if unwrapped.sequential:
        stats = _normalize_stats(unwrapped.front)
        published = getattr(net, PUBLISHED_NORMALIZATION, None)
        if stats:
            _check_normalization(
                model,
                {role: unwrapped.front[key] for role, key in stats.items()},
                f"{source} was saved behind a normalize layer with",
            )
            unwrapped = unwrapped._replace(
                front={k: v for k, v in unwrapped.front.items() if k not in stats.values()}
            )
        elif published is not None:
            mean, std = published
            _check_normalization(
                model,
                {"mean": torch.tensor(mean), "std": torch.tensor(std)},
                f"{source} comes from the Sequential(normalize, net) code {type(net).__name__} was published "
                "with, which normalizes with",
            )
    _fit(net, unwrapped, source)


def _normalize_stats(front: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """The checkpoint key holding each statistic (``mean``, ``std``) a normalize layer recorded."""
    found: dict[str, str] = {}
    for key in front:
        name = key.rpartition(".")[2]
        for role, names in NORMALIZE_NAMES.items():
            if name in names:
                found[role] = key
    return found


def _check_normalization(model: nn.Module, saved: Mapping[str, torch.Tensor], what: str) -> None:
    """Refuse a checkpoint trained behind statistics other than the classifier wrapper's ``mean``/``std``."""
    hint = ""
    if set(saved) == set(STATS):
        hint = f" (normalization: {{mean: {_shortest(saved['mean'])}, std: {_shortest(saved['std'])}}})"
    for name, value in saved.items():
        got, wanted = value.flatten(), model.get_buffer(name).flatten()
        if got.numel() != wanted.numel() or not torch.allclose(got.to(wanted.dtype), wanted):
            raise WeightsError(
                f"{what} {name}={_shortest(got)}, but the matrix gives {_shortest(wanted)}; set the "
                f"classifier's normalization to the one it was trained with{hint}"
            )


def _shortest(values: torch.Tensor) -> list[float]:
    """The shortest decimals that round to these float32s: 0.1307, not 0.13070000708."""
    return [float(str(np.float32(v))) for v in values.flatten().tolist()]


def saved_normalization(state: Mapping[str, torch.Tensor]) -> dict[str, list[float]] | None:
    """The mean/std a harness classifier artifact records, or None for a plain network checkpoint.

    Values are the shortest decimals that round to the stored float32s, so a matrix that states the same
    numbers (0.1307, not 0.13070000708) plans the same job as one that leaves them to the file.
    """
    own = [k for k in state if k not in STATS]
    if not (all(s in state for s in STATS) and own and all(k.startswith("net.") for k in own)):
        return None
    return {name: _shortest(state[name]) for name in STATS}


def _few(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown if len(items) <= SHOWN else f"{shown} (and {len(items) - SHOWN} more)"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks so multi-GB checkpoints need no memory."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as e:
        raise WeightsError(f"cannot hash weights file {path}: {e}") from e
    return digest.hexdigest()
