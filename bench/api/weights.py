"""Loading weights trained elsewhere into an architecture's network, without ever running a pickle's code.

Checkpoints in the wild are pickles; unpickling one in full can execute anything it names. Pickle-based files
are therefore read only with ``torch.load(weights_only=True)``, whose restricted unpickler accepts tensors and
plain containers and refuses everything else; a file it refuses is reported, never retried unsafely.
Safetensors files hold no code at all and are preferred.

Checkpoints also differ in wrapping (``{"state_dict": ...}``) and in key prefixes left by training wrappers
(``module.`` from DataParallel, ``_orig_mod.`` from ``torch.compile``); both are undone here so that loading
itself can stay strict: a missing, unexpected or reshaped tensor is an error, not a silently random layer.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from bench.errors import WeightsError

PICKLE_SUFFIXES = (".pt", ".pth", ".th", ".bin")
#: Keys under which training scripts commonly nest the state dict, tried in this order.
WRAPPER_KEYS = ("state_dict", "model", "net")
#: Prefixes training wrappers add to every key: DataParallel/DDP, Lightning-style modules, torch.compile.
PREFIXES = ("module.", "model.", "net.", "_orig_mod.")
#: The normalization buffers a harness classifier artifact holds beside its network's ``net.*`` weights.
STATS = ("mean", "std")
#: How many offending keys an error message lists before summarizing the rest as a count.
SHOWN = 5

StateDict = dict[str, torch.Tensor]


def load_state_dict_file(path: str | os.PathLike[str]) -> StateDict:
    """Read a state dict from ``.safetensors`` or (safely) from a ``.pt/.pth/.th/.bin`` pickle, on the CPU."""
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".safetensors":
        try:
            return dict(safetensors.torch.load_file(p, device="cpu"))
        except (SafetensorError, OSError) as e:
            raise WeightsError(
                f"weights file {p} is not a readable safetensors file (corrupt or truncated?): {e}"
            ) from e
    if suffix not in PICKLE_SUFFIXES:
        raise WeightsError(
            f"weights file {p}: unsupported extension {p.suffix!r} (expected .safetensors or "
            f"{', '.join(PICKLE_SUFFIXES)})"
        )
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise WeightsError(
            f"weights file {p} was refused: {refusal_reason(str(e))}. Pickles are only read "
            "as plain tensors and containers; convert the checkpoint to safetensors where its "
            "source is trusted"
        ) from e
    except Exception as e:  # torch.load surfaces damaged files as many exception types
        raise WeightsError(f"weights file {p} is corrupt or truncated ({type(e).__name__}: {e})") from e
    return _unwrap(obj, str(p))


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


def match_keys(state: Mapping[str, torch.Tensor], target_keys: Iterable[str]) -> StateDict:
    """``state`` with wrapper prefixes stripped as far as that makes more of its keys match ``target_keys``.

    A prefix is only stripped when every key carries it, so a partial match is never manufactured.
    """
    target = set(target_keys)
    current = dict(state)
    best, best_overlap = current, len(target & current.keys())
    while current:
        prefix = next((p for p in PREFIXES if all(k.startswith(p) for k in current)), None)
        if prefix is None:
            break
        current = {k[len(prefix) :]: v for k, v in current.items()}
        overlap = len(target & current.keys())
        if overlap > best_overlap:
            best, best_overlap = current, overlap
    return best


def load_into(net: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``net``; on any mismatch raise before a single tensor is copied."""
    expected = net.state_dict()
    remapped = match_keys(state, expected.keys())
    for key, value in expected.items():
        # BatchNorm's batch counter appeared in PyTorch 0.4.1; older checkpoints (akamaster's) lack it. It
        # only matters for momentum=None, so the model keeps its own value, as PyTorch's own loading does.
        if key.rpartition(".")[2] == "num_batches_tracked":
            remapped.setdefault(key, value)
    missing = [k for k in expected if k not in remapped]
    unexpected = [k for k in remapped if k not in expected]
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

    Besides plain network checkpoints this takes the harness's own classifier artifacts, which hold the
    wrapper's state: ``net.*`` plus the ``mean``/``std`` buffers. Those buffers must equal the matrix's
    normalization; otherwise the network would see inputs scaled unlike the ones it was trained on, and it
    would only show as a mysteriously weaker model.
    """
    net = model.get_submodule("net")
    own = {k: v for k, v in state.items() if k not in STATS}
    if len(own) < len(state) and own and all(k.startswith("net.") for k in own):
        for name in STATS:
            if name not in state:
                continue
            saved, wanted = state[name].flatten(), model.get_buffer(name).flatten()
            if saved.numel() != wanted.numel() or not torch.allclose(saved, wanted):
                raise WeightsError(
                    f"{source} was saved with normalization {name}={saved.tolist()}, but the matrix gives "
                    f"{wanted.tolist()}; set the classifier's normalization to the one it was trained with"
                )
        state = {k[len("net.") :]: v for k, v in own.items()}
    load_into(net, state, source)


def saved_normalization(state: Mapping[str, torch.Tensor]) -> dict[str, list[float]] | None:
    """The mean/std a harness classifier artifact records, or None for a plain network checkpoint.

    Values are the shortest decimals that round to the stored float32s, so a matrix that states the same
    numbers (0.1307, not 0.13070000708) plans the same job as one that leaves them to the file.
    """
    own = [k for k in state if k not in STATS]
    if not (all(s in state for s in STATS) and own and all(k.startswith("net.") for k in own)):
        return None
    return {name: [float(str(np.float32(v))) for v in state[name].flatten().tolist()] for name in STATS}


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
