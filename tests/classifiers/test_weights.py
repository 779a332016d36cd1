"""Weights files are read without executing anything, and loaded strictly or not at all."""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

import classifiers  # noqa: F401  (registers the built-in architectures)
from bench.api import CLASSIFIERS, load_classifier_weights, load_into, load_state_dict_file, sha256_file
from bench.api.weights import match_keys, sniff_format
from bench.errors import WeightsError


def resnet20(num_classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return CLASSIFIERS.get("resnet20").factory(num_classes)


def snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


class RunsShell:
    """Unpickling this runs a shell command: what a weights loader must never do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Callable[[str], int], tuple[str]]:
        return os.system, (self.command,)


def test_safetensors_round_trip(tmp_path: Path) -> None:
    source = resnet20(seed=1)
    path = tmp_path / "r20.safetensors"
    safetensors.torch.save_file(source.state_dict(), path)
    target = resnet20(seed=2)
    load_into(target, load_state_dict_file(path), str(path))
    assert_same(snapshot(target), snapshot(source))


@pytest.mark.parametrize("wrapper", ["state_dict", "model", "net", None])
@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod."])
def test_pickled_checkpoint_with_wrapper_and_prefix(tmp_path: Path, wrapper: str | None, prefix: str) -> None:
    source = resnet20(seed=1)
    state = {prefix + k: v for k, v in source.state_dict().items()}
    path = tmp_path / "ckpt.pth"
    torch.save(state if wrapper is None else {"epoch": 3, "best_prec1": 91.5, wrapper: state}, path)
    target = resnet20(seed=2)
    load_into(target, load_state_dict_file(path), str(path))
    assert_same(snapshot(target), snapshot(source))


def test_legacy_format_with_prefix_loads(tmp_path: Path) -> None:
    """akamaster's checkpoints are pre-zip torch.save files; weights_only reads that format too."""
    source = resnet20(seed=1)
    path = tmp_path / "legacy.th"
    state = {"module." + k: v for k, v in source.state_dict().items()}
    torch.save({"best_prec1": 91.0, "state_dict": state}, path, _use_new_zipfile_serialization=False)
    target = resnet20(seed=2)
    load_into(target, load_state_dict_file(path), str(path))
    assert_same(snapshot(target), snapshot(source))


def test_prefix_kept_when_the_target_has_it() -> None:
    state = {"model.weight": torch.zeros(1), "model.bias": torch.zeros(1)}
    assert match_keys(state, ["model.weight", "model.bias"]) == state
    assert set(match_keys(state, ["weight", "bias"])) == {"weight", "bias"}


def test_missing_batch_counter_is_tolerated() -> None:
    """Checkpoints older than PyTorch 0.4.1 have no num_batches_tracked; they must still load strictly."""
    source = resnet20(seed=1)
    state = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    target = resnet20(seed=2)
    load_into(target, state, "old checkpoint")
    assert torch.equal(target.state_dict()["linear.weight"], source.state_dict()["linear.weight"])


def test_wrong_shapes_raise_and_leave_the_net_untouched() -> None:
    state = resnet20(10, seed=1).state_dict()
    target = resnet20(100, seed=2)
    before = snapshot(target)
    with pytest.raises(WeightsError) as err:
        load_into(target, state, "cifar10-checkpoint")
    message = str(err.value)
    assert "cifar10-checkpoint" in message
    assert "linear.weight (10, 64) vs (100, 64)" in message
    assert "linear.bias (10,) vs (100,)" in message
    assert_same(snapshot(target), before)


def test_missing_and_unexpected_keys_raise_and_leave_the_net_untouched() -> None:
    state = dict(resnet20(seed=1).state_dict())
    del state["layer2.1.conv1.weight"]
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    target = resnet20(seed=2)
    before = snapshot(target)
    with pytest.raises(WeightsError, match=r"missing layer2\.1\.conv1\.weight; unexpected layer9\.0\."):
        load_into(target, state, "edited")
    assert_same(snapshot(target), before)


def test_many_offending_keys_are_summarized() -> None:
    state = {f"junk{i}": torch.zeros(1) for i in range(20)}
    with pytest.raises(WeightsError, match=r"unexpected junk0, junk1, junk2, junk3, junk4 \(and 15 more\)"):
        load_into(resnet20(), state, "junk")


@pytest.mark.parametrize(
    ("writer", "reason"),
    [
        ("torch.save", r"it needs the object \w+\.system"),
        ("torch.save legacy", r"it needs the object \w+\.system"),
        ("pickle protocol 2", r"it needs the object \w+\.system"),
        (
            "pickle protocol 5",
            r"it is not a pickle of tensors",
        ),  # torch's safe unpickler stops at the framing
    ],
)
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, writer: str, reason: str) -> None:
    marker = tmp_path / "pwned"
    payload = {"state_dict": {"w": [0.0]}, "hook": RunsShell(f"touch {marker}")}
    path = tmp_path / "evil.pt"
    if writer.startswith("pickle"):
        path.write_bytes(pickle.dumps(payload, protocol=int(writer[-1])))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=writer == "torch.save")
    with pytest.raises(WeightsError, match=rf"evil\.pt was refused: {reason}"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_numpy_objects_in_a_pickle_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "np.pt"
    torch.save({"w": torch.zeros(1), "extra": np.zeros(2)}, path)
    with pytest.raises(WeightsError, match="refused"):
        load_state_dict_file(path)


@pytest.mark.parametrize("name", ["ckpt.pt", "ckpt_legacy.pth", "ckpt.safetensors"])
def test_truncated_file_raises(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    state = resnet20().state_dict()
    if name.endswith(".safetensors"):
        safetensors.torch.save_file(state, path)
    else:
        torch.save(state, path, _use_new_zipfile_serialization="legacy" not in name)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=rf"{name}.*(corrupt|truncated)"):
        load_state_dict_file(path)


def test_empty_and_garbage_files_raise(tmp_path: Path) -> None:
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "garbage.pt").write_bytes(bytes(range(256)) * 4)
    for name in ("empty.pt", "garbage.pt"):
        with pytest.raises(WeightsError, match=name):
            load_state_dict_file(tmp_path / name)


def test_missing_file_and_foreign_content_raise(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        load_state_dict_file(tmp_path / "nope.pt")
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(WeightsError, match=r"weights\.h5 is not a readable safetensors file, nor a PyTorch"):
        load_state_dict_file(tmp_path / "weights.h5")


#: Every name a checkpoint comes under, and a lie: what decides how a file is read is its content.
SUFFIXES = (".pt", ".pth", ".th", ".bin", ".tar", ".pth.tar", ".ckpt", ".safetensors", ".h5", "")
WRITERS = ("torch.save", "torch.save legacy", "pickle protocol 2", "pickle protocol 0")


def write_payload(path: Path, payload: object, writer: str) -> None:
    if writer.startswith("pickle"):
        path.write_bytes(pickle.dumps(payload, protocol=int(writer[-1])))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=writer == "torch.save")


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("suffix", SUFFIXES)
def test_code_in_a_pickle_never_runs_whatever_the_name(tmp_path: Path, suffix: str, writer: str) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / f"checkpoint{suffix}"
    write_payload(path, {"state_dict": {"w": torch.zeros(1)}, "hook": RunsShell(f"touch {marker}")}, writer)
    with pytest.raises(
        WeightsError,
        match=rf"checkpoint{re.escape(suffix)} (was refused|is not a readable safetensors file, nor)",
    ):
        load_state_dict_file(path)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("content", ["safetensors", "torch.save", "torch.save legacy"])
def test_weights_load_by_content_whatever_the_name(tmp_path: Path, suffix: str, content: str) -> None:
    state = {"w": torch.arange(6.0).view(2, 3), "b": torch.ones(2)}
    path = tmp_path / f"weights{suffix}"
    if content == "safetensors":
        safetensors.torch.save_file(state, path)
    else:
        write_payload(path, {"epoch": 1, "state_dict": state}, content)
    loaded = load_state_dict_file(path)
    assert_same(loaded, state)


def test_the_payload_is_live_outside_the_loader(tmp_path: Path) -> None:
    """Guards the refusal tests above against a payload that would never have run anyway."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(RunsShell(f"touch {marker}")))
    assert marker.exists()


def test_a_pickle_cannot_pass_for_safetensors(tmp_path: Path) -> None:
    """A file whose ninth byte is "{" is still only read as safetensors when its header length fits."""
    path = tmp_path / "fake.safetensors"
    path.write_bytes(b"\x80\x02" + bytes(6) + b"{" + bytes(16))
    assert sniff_format(path) == "torch"
    with pytest.raises(WeightsError, match="fake.safetensors"):
        load_state_dict_file(path)


def test_checkpoint_without_a_state_dict_raises(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "arch": "resnet20"}, path)
    with pytest.raises(WeightsError, match="not a state dict: entries epoch, arch are not tensors"):
        load_state_dict_file(path)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(WeightsError, match="holds a list"):
        load_state_dict_file(path)


def test_sha256_file(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()
    with pytest.raises(WeightsError):
        sha256_file(tmp_path / "missing")


def test_the_harness_own_classifier_artifact_loads_as_weights() -> None:
    from bench.api.classifier import build_classifier

    trained = build_classifier("mnist-c", 10, (0.1307,), (0.3081,))
    artifact = {k: v.clone() for k, v in trained.state_dict().items()}  # net.* plus mean and std
    fresh = build_classifier("mnist-c", 10, (0.1307,), (0.3081,))
    load_classifier_weights(fresh, artifact, "artifact")
    assert_same(snapshot(fresh), artifact)


def test_an_artifact_with_another_normalization_is_refused() -> None:
    from bench.api.classifier import build_classifier

    artifact = build_classifier("mnist-c", 10, (0.5,), (0.5,)).state_dict()
    target = build_classifier("mnist-c", 10, (0.1307,), (0.3081,))
    with pytest.raises(WeightsError, match=r"saved with normalization mean=\[0.5\].*set the classifier's"):
        load_classifier_weights(target, artifact, "artifact")
