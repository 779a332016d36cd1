"""Checkpoint files: written atomically, read back as tensors and plain values only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.api import BenchError, Checkpoints


class Marker:
    """Test-only: an object ``torch.save`` pickles, which a weights-only load must refuse."""


class FullDisk:
    """Test-only: fails while being written, as a write to a full disk does."""

    def __reduce__(self) -> str:
        raise OSError("no space left on device")


def test_a_saved_state_loads_back_and_records_the_epoch(tmp_path: Path) -> None:
    ckpt = Checkpoints(tmp_path / "job")
    assert ckpt.load() is None and ckpt.resumed_from is None
    ckpt.save({"w": torch.arange(3.0), "n": 2, "nested": {"lr": [0.1, 0.2], "pair": (1, "a")}}, epoch=4)

    again = Checkpoints(tmp_path / "job")
    found = again.load()
    assert found is not None and found.epoch == 4 and again.resumed_from == 4
    assert torch.equal(found.state["w"], torch.arange(3.0))
    assert found.state["n"] == 2 and found.state["nested"] == {"lr": [0.1, 0.2], "pair": (1, "a")}
    again.clear()
    assert not (tmp_path / "job").exists() and Checkpoints(tmp_path / "job").load() is None


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    ckpt = Checkpoints(tmp_path / "job")
    ckpt.save({"w": torch.ones(2)}, epoch=1)
    with pytest.raises(OSError, match="no space left"):
        ckpt.save({"w": FullDisk()}, epoch=2)
    found = ckpt.load()
    assert found is not None and found.epoch == 1 and torch.equal(found.state["w"], torch.ones(2))
    assert [p.name for p in (tmp_path / "job").iterdir()] == ["last.pt"], "no temporary file is left behind"


def test_a_checkpoint_holding_a_pickled_object_is_refused(tmp_path: Path) -> None:
    ckpt = Checkpoints(tmp_path / "job")
    ckpt.save({"object": Marker()}, epoch=1)
    with pytest.raises(BenchError, match=r"last\.pt cannot be read \(damaged, or holding objects other than"):
        ckpt.load()
    assert ckpt.resumed_from is None
