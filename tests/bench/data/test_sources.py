"""Tests for bench.data.sources: ImageFolder PNG trees, built tiny in tmp_path.

Each tree is the registered layout of a real dataset (``mnist-png``, ``cifar10-png``...) holding a handful of
images, so the checks run against the datasets' own declared shapes and class names.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.api import DATASETS, DatasetInfo
from bench.data import sources
from bench.data.sources import CIFAR10_CLASSES, CIFAR100_CLASSES, ImageFolderLayout, OnDiskDataset
from bench.errors import BenchError, DatasetMissingError
from tests.conftest import data_root

#: An mtime well in the past, so the cache treats the files as settled (see ``sources._RACY_NS``).
OLD_NS = 1_600_000_000 * 10**9


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cache per test: trees in different tests may share names, sizes and mtimes but not pixels."""
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))


def write_png(path: Path, pixels: np.ndarray, mode: str, mtime_ns: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), mode=mode).save(path)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))


def grey(value: int, size: int = 28) -> np.ndarray:
    return np.full((size, size), value, dtype=np.uint8)


def colour(value: int, size: int = 32) -> np.ndarray:
    return np.stack([np.full((size, size), value + c, dtype=np.uint8) for c in range(3)], axis=-1)


def write_tree(
    root: Path,
    folder: str,
    classes: tuple[str, ...] | list[str],
    grey_pngs: bool,
    mtime_ns: int | None = None,
) -> None:
    """One image per class, of value 10 * (position in ``classes``) mod 250: labels can be read off pixels."""
    for i, name in enumerate(classes):
        value = 10 * i % 250
        pixels, mode = (grey(value), "L") if grey_pngs else (colour(value), "RGB")
        write_png(root / folder / "train" / name / "00000.png", pixels, mode, mtime_ns)


def fresh(name: str) -> OnDiskDataset:
    """The registered dataset's PNG layout in a new instance, with no in-process memo of earlier loads."""
    registered = DATASETS.get(name)
    assert isinstance(registered, OnDiskDataset)
    layout = next(lay for lay in registered.layouts if isinstance(lay, ImageFolderLayout))
    return OnDiskDataset(registered.info, registered.description, (layout,), None)


# -- channels and shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "folder"), [("mnist", "mnist-png"), ("fashion-mnist", "fashion-mnist-png")])
def test_greyscale_tree_loads_as_one_channel(tmp_path: Path, name: str, folder: str) -> None:
    write_tree(tmp_path, folder, [str(d) for d in range(10)], grey_pngs=True)
    data = DATASETS.get(name).load(tmp_path, "train", download=False)
    assert data.images.shape == (10, 1, 28, 28)
    assert data.labels.tolist() == list(range(10))
    assert torch.equal(data.images[:, 0, 0, 0], torch.arange(0, 100, 10, dtype=torch.uint8))


def test_colour_tree_keeps_its_channels(tmp_path: Path) -> None:
    write_tree(tmp_path, "cifar10-png", CIFAR10_CLASSES, grey_pngs=False)
    data = DATASETS.get("cifar10").load(tmp_path, "train", download=False)
    assert data.images.shape == (10, 3, 32, 32)
    assert data.images[3, :, 5, 5].tolist() == [30, 31, 32]


def test_colour_png_in_a_greyscale_dataset_is_refused(tmp_path: Path) -> None:
    write_tree(tmp_path, "mnist-png", [str(d) for d in range(10)], grey_pngs=True)
    write_png(tmp_path / "mnist-png" / "train" / "7" / "00001.png", colour(0, size=28), "RGB")
    with pytest.raises(BenchError) as err:
        fresh("mnist").load(tmp_path, "train", download=False)
    assert not isinstance(err.value, DatasetMissingError)
    msg = str(err.value)
    tree = str(tmp_path / "mnist-png" / "train")
    for part in ("'mnist'", "(train)", tree, "7/00001.png", "mode-RGB", "(1, 28, 28)"):
        assert part in msg, msg


def test_wrong_image_size_names_both_shapes(tmp_path: Path) -> None:
    write_tree(tmp_path, "mnist-png", [str(d) for d in range(10)], grey_pngs=True)
    write_png(tmp_path / "mnist-png" / "train" / "2" / "00001.png", grey(0, size=32), "L")
    with pytest.raises(BenchError) as err:
        fresh("mnist").load(tmp_path, "train", download=False)
    assert not isinstance(err.value, DatasetMissingError)
    msg = str(err.value)
    for part in ("'mnist'", "(train)", "2/00001.png", "shape (1, 32, 32)", "shape (1, 28, 28)"):
        assert part in msg, msg


# -- class folders -----------------------------------------------------------------------------------------


def test_missing_class_folder_is_refused_not_shifted(tmp_path: Path) -> None:
    write_tree(tmp_path, "cifar10-png", CIFAR10_CLASSES[1:], grey_pngs=False)
    with pytest.raises(BenchError, match=r"'cifar10' \(train\).*missing: airplane; unexpected: \(none\)"):
        fresh("cifar10").load(tmp_path, "train", download=False)


def test_misnamed_class_folder_names_both_sides(tmp_path: Path) -> None:
    write_tree(tmp_path, "cifar10-png", ("aeroplane", *CIFAR10_CLASSES[1:]), grey_pngs=False)
    with pytest.raises(BenchError, match="missing: airplane; unexpected: aeroplane"):
        fresh("cifar10").load(tmp_path, "train", download=False)


def test_extra_folder_is_refused(tmp_path: Path) -> None:
    write_tree(tmp_path, "cifar100-png", (*CIFAR100_CLASSES, ".ipynb_checkpoints"), grey_pngs=False)
    with pytest.raises(BenchError, match=r"missing: \(none\); unexpected: \.ipynb_checkpoints"):
        fresh("cifar100").load(tmp_path, "train", download=False)


def test_labels_follow_the_official_names_not_the_folder_order(tmp_path: Path) -> None:
    shuffled = ("b", "a", "c")
    info = DatasetInfo("toy", 3, (1, 28, 28), (0.5,), (0.5,), 3, 3, class_names=shuffled)
    write_tree(tmp_path, "toy-png", shuffled, grey_pngs=True)
    toy = OnDiskDataset(info, "toy", (ImageFolderLayout("toy-png", info),), None)
    data = toy.load(tmp_path, "train", download=False)
    # "b" holds pixel value 0 and is label 0 although "a" sorts first.
    assert data.labels.tolist() == [0, 1, 2]
    assert data.images[:, 0, 0, 0].tolist() == [0, 10, 20]


def test_unnamed_classes_need_one_folder_each(tmp_path: Path) -> None:
    """Without class names a missing folder cannot be named, but it must not shift the labels either."""
    write_tree(tmp_path, "mnist-png", [str(d) for d in range(1, 10)], grey_pngs=True)
    with pytest.raises(
        BenchError, match=r"'mnist' \(train\).* holds 9 class folders \(1, 2, .*\), expected 10"
    ):
        fresh("mnist").load(tmp_path, "train", download=False)


def test_empty_tree_is_refused(tmp_path: Path) -> None:
    for d in range(10):
        (tmp_path / "mnist-png" / "train" / str(d)).mkdir(parents=True)
    with pytest.raises(BenchError, match="holds no images"):
        fresh("mnist").load(tmp_path, "train", download=False)


@pytest.mark.parametrize(
    ("folder", "names"), [("cifar10-png", CIFAR10_CLASSES), ("cifar100-png", CIFAR100_CLASSES)]
)
def test_official_names_match_the_shipped_trees(folder: str, names: tuple[str, ...]) -> None:
    tree = data_root() / folder
    assert tree.is_dir(), f"{folder} not found under {data_root()} (set BENCH_DATA_DIR)"
    for split in ("train", "test"):
        assert sorted(p.name for p in (tree / split).iterdir() if p.is_dir()) == sorted(names)
        with (tree / f"{split}_index.csv").open() as f:
            pairs = {(int(row["label"]), row["class_name"]) for row in csv.DictReader(f)}
        assert pairs == set(enumerate(names))


# -- decode cache ------------------------------------------------------------------------------------------


def cached_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "datasets").glob("*.safetensors"))


def test_settled_tree_is_read_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_tree(tmp_path, "cifar10-png", CIFAR10_CLASSES, grey_pngs=False, mtime_ns=OLD_NS)
    first = fresh("cifar10").load(tmp_path, "train", download=False)
    assert len(cached_files(tmp_path)) == 1

    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded a PNG although the cache holds this tree")

    monkeypatch.setattr(sources.Image, "open", no_decoding)
    assert fresh("cifar10").load(tmp_path, "train", download=False).identity == first.identity


def test_edited_png_of_the_same_size_is_decoded_again(tmp_path: Path) -> None:
    write_tree(tmp_path, "cifar10-png", CIFAR10_CLASSES, grey_pngs=False, mtime_ns=OLD_NS)
    before = fresh("cifar10").load(tmp_path, "train", download=False)
    edited = tmp_path / "cifar10-png" / "train" / "cat" / "00000.png"
    size = edited.stat().st_size
    write_png(edited, colour(200), "RGB", mtime_ns=OLD_NS + 10**9)
    assert edited.stat().st_size == size, "the test needs an edit that keeps the file size"

    after = fresh("cifar10").load(tmp_path, "train", download=False)
    assert after.images[3, :, 0, 0].tolist() == [200, 201, 202]
    assert after.identity != before.identity
    assert len(cached_files(tmp_path)) == 2


def test_just_written_tree_is_not_cached(tmp_path: Path) -> None:
    """Within one timestamp tick an edit keeps its mtime, so a tree that recent must not be trusted later."""
    write_tree(tmp_path, "cifar10-png", CIFAR10_CLASSES, grey_pngs=False)
    fresh("cifar10").load(tmp_path, "train", download=False)
    assert cached_files(tmp_path) == []
