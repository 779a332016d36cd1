"""The artifact store: atomic writes, sha256-checked reads with a per-process hash cache, stray ``.tmp`` files
swept, storage faults reported, on a local folder and on an fsspec URL alike."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import torch

from bench import artifacts as artifacts_module
from bench.artifacts import (
    FOREIGN_TMP_AGE_S,
    HOST,
    ArtifactMismatchError,
    ArtifactStorageError,
    ArtifactStore,
    StoredArtifact,
    tmp_name,
)
from bench.errors import BenchError

KEY = "ab" + "0" * 62


@pytest.fixture(autouse=True)
def fresh_process() -> Iterator[None]:
    """Each test starts with no hash remembered, as a new process does."""
    artifacts_module._HASHES.clear()
    yield
    artifacts_module._HASHES.clear()


@pytest.fixture(params=["local", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return ArtifactStore(tmp_path / "art")
    return ArtifactStore(f"memory://frontline-{uuid.uuid4().hex}")


def flip_last_byte(store: ArtifactStore, a: StoredArtifact) -> None:
    path = store.files.join(store.folder(KEY), a.path.rsplit("/", 1)[-1])
    with store.files.open_read(path) as f:
        data = bytearray(f.read())
    data[-1] ^= 1
    with store.files.open_write(path) as f:
        f.write(bytes(data))


def names_in(store: ArtifactStore, key: str = KEY) -> set[str]:
    return {name for name, _, _ in store.files.entries(store.folder(key))}


def test_tensors_and_json_round_trip_with_their_sha256(store: ArtifactStore) -> None:
    t = store.write_tensors(KEY, "model", {"w": torch.arange(6.0).reshape(2, 3)}, {"job": KEY})
    j = store.write_json(KEY, "card", {"acc": 0.5})
    assert torch.equal(store.read_tensors(t)["w"], torch.arange(6.0).reshape(2, 3))
    assert store.read_json(j) == {"acc": 0.5}
    assert t.path == f"ab/{KEY}/model.safetensors" and t.bytes > 0 and len(t.sha256) == 64
    assert store.intact(t) and store.intact(j)
    assert names_in(store) == {"model.safetensors", "card.json"}, "no temporary file left behind"


def test_a_changed_byte_is_refused_on_read_and_not_intact(store: ArtifactStore) -> None:
    a = store.write_json(KEY, "card", {"acc": 0.5})
    flip_last_byte(store, a)
    artifacts_module._HASHES.clear()  # a later process, which never hashed the good file
    assert not store.intact(a)
    with pytest.raises(ArtifactMismatchError, match="sha256 is not the one recorded.*recomputes the job"):
        store.read_json(a)


def test_a_missing_or_truncated_artifact_is_refused(store: ArtifactStore) -> None:
    a = store.write_json(KEY, "card", {"acc": 0.5})
    short = StoredArtifact(a.name, a.path, a.sha256, a.bytes + 1)
    assert not store.intact(short)
    with pytest.raises(ArtifactMismatchError, match="bytes, not the"):
        store.read_json(short)
    gone = StoredArtifact("other", f"ab/{KEY}/other.json", a.sha256, a.bytes)
    assert not store.intact(gone)
    with pytest.raises(ArtifactMismatchError, match="cannot be read"):
        store.read_json(gone)


def test_a_file_is_hashed_once_per_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path)
    a = store.write_tensors(KEY, "model", {"w": torch.zeros(1000)}, {})
    opened: list[str] = []
    real_open = store.files.open_read

    def counting_open(path: str) -> object:
        opened.append(path)
        return real_open(path)

    monkeypatch.setattr(store.files, "open_read", counting_open)
    artifacts_module._HASHES.clear()
    assert store.intact(a) and store.intact(a) and store.intact(a)
    assert len(opened) == 1, "hashed once, then taken from the cache"
    store.read_tensors(a)
    assert len(opened) == 2, "a read reads the bytes it uses, but does not hash them again"

    # The same bytes rewritten (as a recomputed job does) are a new version: checked again.
    b = store.write_tensors(KEY, "model", {"w": torch.ones(1000)}, {})
    assert b.bytes == a.bytes and b.sha256 != a.sha256
    assert not store.intact(a) and store.intact(b)


def test_a_write_interrupted_by_a_full_disk_leaves_the_old_artifact_and_no_tmp(
    store: ArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = store.write_tensors(KEY, "model", {"w": torch.zeros(4096)}, {})
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if store.url:
        real_open = store.files.open_write

        def filling(path: str) -> IO[bytes]:
            f = real_open(path)
            real_write = f.write

            def write(data: bytes) -> int:
                real_write(data[:100])
                raise full

            monkeypatch.setattr(f, "write", write)
            return f

        monkeypatch.setattr(store.files, "open_write", filling)
    else:
        real_write = os.write
        calls: list[int] = []

        def write(fd: int, data: bytes | memoryview) -> int:
            if calls:
                raise full
            calls.append(fd)
            return real_write(fd, bytes(data)[:100])  # a short write, as a filling disk makes

        monkeypatch.setattr(os, "write", write)

    with pytest.raises(ArtifactStorageError, match="No space left on device") as caught:
        store.write_tensors(KEY, "model", {"w": torch.ones(4096)}, {})
    monkeypatch.undo()
    assert isinstance(caught.value, BenchError)
    assert store.folder(KEY) in str(caught.value)
    assert names_in(store) == {"model.safetensors"}, "the half-written temporary file is deleted"
    assert store.intact(old)
    assert torch.equal(store.read_tensors(old)["w"], torch.zeros(4096))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_named_in_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "art"
    root.mkdir()
    root.chmod(0o555)
    store = ArtifactStore(root)
    try:
        message = re.escape(f"cannot write artifacts into {root}: Permission denied")
        with pytest.raises(ArtifactStorageError, match=message):
            store.check_writable()
        with pytest.raises(ArtifactStorageError, match="Permission denied"):
            store.write_json(KEY, "card", {})
    finally:
        root.chmod(0o755)
    assert list(root.iterdir()) == []


def test_a_read_only_file_system_is_named_in_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root, where chmod does not stop a write, a read-only mount is simulated at the system call."""
    store = ArtifactStore(tmp_path / "art")
    real_open = os.open

    def read_only(path: str, flags: int, *args: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(ArtifactStorageError) as caught:
        store.write_json(KEY, "card", {})
    message = str(caught.value)
    assert f"cannot write artifacts into {store.folder(KEY)}: Read-only file system" in message
    assert "writable folder" in message and "not recorded" in message
    assert names_in(store) == set()


def test_check_writable_refuses_a_root_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    store = ArtifactStore(tmp_path / "file" / "art")
    message = re.escape(f"cannot write artifacts into {tmp_path / 'file' / 'art'}: Not a directory")
    with pytest.raises(ArtifactStorageError, match=message):
        store.check_writable()
    ArtifactStore(tmp_path / "ok").check_writable()
    assert list((tmp_path / "ok").iterdir()) == [], "the probe is removed"


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "print(__import__('os').getpid())"], capture_output=True)
    return int(child.stdout)


def test_stray_tmp_files_of_dead_writers_are_swept_at_the_next_write(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    folder = Path(store.folder(KEY))
    folder.mkdir(parents=True)
    killed = folder / f".model.safetensors.{HOST}.{dead_pid()}.tmp"
    live = folder / f".model.safetensors.{HOST}.{os.getppid()}.tmp"
    foreign_young = folder / ".model.safetensors.otherhost.12.tmp"
    foreign_old = folder / ".card.json.otherhost.13.tmp"
    not_ours = folder / "notes.tmp"
    for f in (killed, live, foreign_young, foreign_old, not_ours):
        f.write_bytes(b"half")
    old = os.path.getmtime(foreign_old) - FOREIGN_TMP_AGE_S - 60
    os.utime(foreign_old, (old, old))

    store.write_json(KEY, "card", {"acc": 1.0})
    left = {p.name for p in folder.iterdir()}
    assert left == {"card.json", live.name, foreign_young.name, not_ours.name}


def test_sweep_at_run_start_cleans_folders_no_job_will_write(store: ArtifactStore) -> None:
    other = "cd" + "1" * 62
    store.write_json(KEY, "card", {})
    stray = store.files.join(store.folder(KEY), f".model.safetensors.{HOST}.{dead_pid()}.tmp")
    with store.files.open_write(stray) as f:
        f.write(b"half")
    assert store.sweep([KEY, other]) == 1
    assert names_in(store) == {"card.json"}


def test_tmp_names_name_their_writer() -> None:
    assert tmp_name("model.safetensors") == f".model.safetensors.{HOST}.{os.getpid()}.tmp"


def test_a_url_root_without_fsspec_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fsspec", None)
    with pytest.raises(BenchError, match=r"needs fsspec: pip install 'frontline-bench\[ray\]'"):
        ArtifactStore("s3://bucket/artifacts")


def test_a_url_root_keeps_checkpoints_on_the_local_disk(tmp_path: Path) -> None:
    assert ArtifactStore(tmp_path).checkpoints(KEY) == tmp_path / "checkpoints" / KEY
    remote = ArtifactStore("memory://somewhere").checkpoints(KEY)
    assert remote.is_absolute() and remote.name == KEY and "memory" not in str(remote)
