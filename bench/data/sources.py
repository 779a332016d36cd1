"""Where the registered datasets come from: torchvision's files, or ImageFolder PNG trees.

Each dataset is tried in a fixed order of on-disk layouts; only when none is present and the user asked for
``--download`` does torchvision fetch it. Decoding 60,000 PNGs takes tens of seconds, so decoded trees are
cached under ``$BENCH_CACHE_DIR`` (default ``~/.cache/frontline``), keyed by every file's name, size and
modification time: as cheap as the directory listing that finding the files needs anyway, and an edited
file changes the key (hashing 60,000 files' contents on every load would cost more than the cache saves).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from bench.api import DatasetInfo, ImageData, content_hash, register_dataset
from bench.errors import BenchError, DatasetMissingError

SPLITS = ("train", "test")

#: Official label order (the ``batches.meta`` / ``meta`` files of the python release): label i is entry i.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver",
    "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly",
    "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach",
    "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard",
    "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum",
    "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew",
    "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table",
    "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe",
    "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip


def cache_dir() -> Path:
    return Path(os.environ.get("BENCH_CACHE_DIR", Path.home() / ".cache" / "frontline"))


@dataclass(frozen=True)
class TorchvisionLayout:
    """A torchvision dataset class read with ``download=False`` (or ``True`` when the user allows it)."""

    cls_name: str
    folder: str

    def path(self, root: Path) -> Path:
        return root / self.folder

    def present(self, root: Path, split: str) -> bool:
        # torchvision's own integrity check, without reading the arrays.
        import torchvision.datasets as tvd

        ds_cls = getattr(tvd, self.cls_name)
        probe = ds_cls.__new__(ds_cls)
        probe.root = str(root)
        probe.train = split == "train"
        check = getattr(probe, "_check_exists", None) or probe._check_integrity
        return bool(check())

    def read(self, root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        import torchvision.datasets as tvd

        ds = getattr(tvd, self.cls_name)(str(root), train=split == "train", download=download)
        data = ds.data
        images = torch.as_tensor(np.asarray(data)) if not isinstance(data, torch.Tensor) else data
        images = images.unsqueeze(1) if images.dim() == 3 else images.permute(0, 3, 1, 2)
        labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
        return images.contiguous().to(torch.uint8), labels


#: PNG mode each declared channel count is decoded into.
_PNG_MODES = {1: "L", 3: "RGB"}

#: Modes a 1-channel dataset accepts: converting a colour or 16-bit PNG to 8-bit grey would hide that the tree
#: holds another dataset.
_GREY_PNG_MODES = ("1", "L")

#: Filesystems stamp modification times coarsely (a kernel tick on ext4, 2 s on FAT), so a file rewritten
#: within one tick of being listed keeps its time; a listing with files this recent is decoded, not cached.
_RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class ImageFolderLayout:
    """``<root>/<folder>/<split>/<class>/*.png``, one folder per class of ``info``.

    Labels follow ``info.class_names`` when the dataset has them (a missing folder would otherwise shift every
    later label by one); without them, the sorted folder names are taken as the label order.
    """

    folder: str
    info: DatasetInfo

    def path(self, root: Path) -> Path:
        return root / self.folder

    def present(self, root: Path, split: str) -> bool:
        return (root / self.folder / split).is_dir()

    def read(self, root: Path, split: str, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
        split_dir = root / self.folder / split
        mode = _PNG_MODES[self.info.input_shape[0]]
        listed_at = time.time_ns()
        files: list[tuple[Path, int]] = []
        listing = [f"mode={mode}"]
        newest = 0
        for label, name in enumerate(self._classes(split_dir, split)):
            for entry in sorted(os.scandir(split_dir / name), key=lambda e: e.name):
                st = entry.stat()
                files.append((Path(entry.path), label))
                listing.append(f"{name}/{entry.name}:{st.st_size}:{st.st_mtime_ns}")
                newest = max(newest, st.st_mtime_ns)
        if not files:
            raise BenchError(f"dataset {self.info.name!r} ({split}): PNG tree {split_dir} holds no images")
        sig = hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16]
        cached = cache_dir() / "datasets" / f"{self.folder}-{split}-{sig}.safetensors"
        cacheable = newest < listed_at - _RACY_NS
        if cacheable and cached.exists():
            t = load_file(str(cached))
            return t["images"], t["labels"]
        images = np.stack([self._read_png(f, mode, split_dir, split) for f, _ in files])
        labels = torch.tensor([label for _, label in files], dtype=torch.int64)
        tensor = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
        if cacheable:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(f".tmp{os.getpid()}")
            save_file({"images": tensor, "labels": labels}, str(tmp))
            os.replace(tmp, cached)
        return tensor, labels

    def _classes(self, split_dir: Path, split: str) -> tuple[str, ...]:
        found = sorted(p.name for p in split_dir.iterdir() if p.is_dir())
        info = self.info
        where = f"dataset {info.name!r} ({split}): PNG tree {split_dir}"
        if info.class_names:
            missing = [c for c in info.class_names if c not in found]
            unexpected = [c for c in found if c not in info.class_names]
            if missing or unexpected:
                raise BenchError(
                    f"{where} must hold one folder for each of the {info.num_classes} official classes "
                    f"({info.class_names[0]}=0 ... {info.class_names[-1]}={info.num_classes - 1}); "
                    f"missing: {', '.join(missing) or '(none)'}; "
                    f"unexpected: {', '.join(unexpected) or '(none)'}"
                )
            return info.class_names
        if len(found) != info.num_classes:
            raise BenchError(
                f"{where} holds {len(found)} class folders ({', '.join(found) or 'none'}), expected "
                f"{info.num_classes}: one per class, named so that they sort into label order"
            )
        return tuple(found)

    def _read_png(self, path: Path, mode: str, split_dir: Path, split: str) -> np.ndarray[Any, Any]:
        with Image.open(path) as im:
            if mode == "L" and im.mode not in _GREY_PNG_MODES:
                raise self._bad_png(path, split_dir, split, f"is a mode-{im.mode} PNG, not 8-bit greyscale")
            arr = np.asarray(im.convert(mode), dtype=np.uint8).reshape(im.height, im.width, -1)
        shape = (arr.shape[2], arr.shape[0], arr.shape[1])
        if shape != self.info.input_shape:
            raise self._bad_png(path, split_dir, split, f"has shape {shape}")
        return arr

    def _bad_png(self, path: Path, split_dir: Path, split: str, got: str) -> BenchError:
        name, mode, shape = self.info.name, _PNG_MODES[self.info.input_shape[0]], self.info.input_shape
        return BenchError(
            f"dataset {name!r} ({split}): {path.relative_to(split_dir)} in PNG tree {split_dir} {got}; "
            f"expected {mode} PNGs of shape {shape} (channels, height, width)"
        )


Layout = TorchvisionLayout | ImageFolderLayout


@dataclass(frozen=True)
class OnDiskDataset:
    info: DatasetInfo
    description: str
    layouts: tuple[Layout, ...]
    download_with: TorchvisionLayout | None
    _memo: dict[tuple[str, str], ImageData] = field(default_factory=dict, compare=False, repr=False)

    def candidates(self, root: Path, split: str) -> list[Path]:
        return [layout.path(root) for layout in self.layouts]

    def load(self, root: Path, split: str, download: bool) -> ImageData:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        memo_key = (str(root.resolve()), split)
        if memo_key in self._memo:
            return self._memo[memo_key]
        layout = next((lay for lay in self.layouts if lay.present(root, split)), None)
        fetch = layout is None and download and self.download_with is not None
        if fetch:
            layout = self.download_with
        if layout is None:
            raise DatasetMissingError(self._missing_message(root, download))
        try:
            images, labels = layout.read(root, split, fetch)
        except (RuntimeError, OSError) as exc:  # download failures surface as these
            raise DatasetMissingError(f"{self._missing_message(root, download)}\n  cause: {exc}") from exc
        self._check(images, labels, split, layout.path(root))
        data = ImageData(images, labels, content_hash(images, labels), self.info)
        self._memo[memo_key] = data
        return data

    def _check(self, images: torch.Tensor, labels: torch.Tensor, split: str, folder: Path) -> None:
        """The files are there but are not this dataset: a data problem, not a missing dataset."""
        shape = tuple(images.shape[1:])
        where = f"dataset {self.info.name!r} ({split}) in {folder}"
        if shape != self.info.input_shape:
            raise BenchError(
                f"{where} has images of shape {shape}, "
                f"expected {self.info.input_shape} (channels, height, width)"
            )
        n_classes = int(labels.max()) + 1 if len(labels) else 0
        if n_classes > self.info.num_classes:
            raise BenchError(
                f"{where} has labels up to {n_classes - 1}, expected {self.info.num_classes} classes"
            )

    def _missing_message(self, root: Path, download: bool) -> str:
        searched = "\n".join(f"    {p}" for p in self.candidates(root, "train"))
        how = (
            "download failed (see the cause below); fetch the files by hand into one of these folders"
            if download
            else "pass --download to fetch it, point --data-dir or BENCH_DATA_DIR at a folder that holds it, "
            "or place the files in one of the folders above"
        )
        name = self.info.name
        return f"dataset {name!r} not found under data root {root}; searched:\n{searched}\n  fix: {how}"


def _register(info: DatasetInfo, description: str, files: TorchvisionLayout, png_folder: str) -> None:
    """torchvision's files first (they load without decoding), then a PNG tree checked against ``info``."""
    register_dataset(OnDiskDataset(info, description, (files, ImageFolderLayout(png_folder, info)), files))


_register(
    DatasetInfo("mnist", 10, (1, 28, 28), (0.1307,), (0.3081,), 60000, 10000),
    "MNIST handwritten digits (LeCun et al.), 28x28 grey, 10 classes",
    TorchvisionLayout("MNIST", "MNIST"),
    "mnist-png",
)
_register(
    DatasetInfo("fashion-mnist", 10, (1, 28, 28), (0.2860,), (0.3530,), 60000, 10000),
    "Fashion-MNIST (Xiao et al.), 28x28 grey clothing images, 10 classes",
    TorchvisionLayout("FashionMNIST", "FashionMNIST"),
    "fashion-mnist-png",
)
_register(
    DatasetInfo(
        "cifar10",
        10,
        (3, 32, 32),
        (0.4914, 0.4822, 0.4465),
        (0.2470, 0.2435, 0.2616),
        50000,
        10000,
        class_names=CIFAR10_CLASSES,
    ),
    "CIFAR-10 (Krizhevsky 2009), 32x32 colour, 10 classes",
    TorchvisionLayout("CIFAR10", "cifar-10-batches-py"),
    "cifar10-png",
)
_register(
    DatasetInfo(
        "cifar100",
        100,
        (3, 32, 32),
        (0.5071, 0.4865, 0.4409),
        (0.2673, 0.2564, 0.2762),
        50000,
        10000,
        class_names=CIFAR100_CLASSES,
    ),
    "CIFAR-100 (Krizhevsky 2009), 32x32 colour, 100 classes (a PNG tree may hold a subset of the images)",
    TorchvisionLayout("CIFAR100", "cifar-100-python"),
    "cifar100-png",
)
