"""Job artifacts: content-addressed folders under a root that is a local folder or any fsspec URL.

A write goes to a temporary file beside its target, is flushed to the disk and renamed over the target, so a
process killed at any point leaves either the whole artifact or a ``.tmp`` file. Such a file is never taken
for an artifact (artifacts are found only through the store's records) and is deleted by the next write into
its folder or by :meth:`ArtifactStore.sweep` at run start, once the process that wrote it is gone.

Every read checks the sha256 the store recorded. A file's hash is computed once per process per version of
the file (its location, size and modification stamp), so checking every artifact of a large matrix at each
run start, and again when a downstream job reads it, costs one pass over each file.

A local folder is handled with ``os`` calls alone; any other root (``memory://…`` in tests, ``s3://…`` for a
shared root many hosts write to) goes through fsspec, which is then required (``pip install
frontline-bench[ray]``). Training checkpoints stay on a local disk in both cases (see :meth:`checkpoints`).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Hashable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from bench.errors import BenchError


@dataclass(frozen=True)
class StoredArtifact:
    name: str
    path: str  # relative to the artifact root
    sha256: str
    bytes: int


class ArtifactStorageError(BenchError):
    """The artifact root cannot take a write (disk full, read-only, gone); nothing of the job was recorded."""

    def __init__(self, folder: str, exc: OSError) -> None:
        cause = exc.strerror or str(exc) or type(exc).__name__
        hint = {
            errno.ENOSPC: "free some space there",
            errno.EDQUOT: "free some space there",
            errno.EROFS: "point --artifacts at a writable folder",
            errno.EACCES: "make it writable or point --artifacts at a writable folder",
            errno.EPERM: "make it writable or point --artifacts at a writable folder",
        }.get(exc.errno or 0, "check the folder")
        super().__init__(
            f"cannot write artifacts into {folder}: {cause}; {hint} and rerun (the job was not recorded, and "
            "no partial artifact was left behind)"
        )
        self.folder = folder
        self.errno = exc.errno
        self.os_error = exc

    def __reduce__(self) -> tuple[Any, ...]:
        """Rebuilt from what it was made of, as a Ray worker's error is on the driver (the default rebuilds
        from the message alone, which ``__init__`` does not take)."""
        return type(self), (self.folder, self.os_error)


class ArtifactMismatchError(BenchError):
    """An artifact is gone or its bytes are not those the store recorded (damaged, or replaced by a run of
    non-deterministic training); the job that wrote it is recomputed by the next run."""


#: The metric every job with upstream jobs records: upstream job key -> artifact name -> sha256 of the files
#: it was computed from. Stores written before it lack it; their jobs are trusted as their keys alone say.
UPSTREAM_SHA256 = "upstream_sha256"

#: This host, as it appears in temporary file names (a shared root is written from many hosts).
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.tmp$")
#: Another host's temporary file is deleted only after this long: whether its writer is alive is unknowable.
FOREIGN_TMP_AGE_S = 24 * 3600.0

#: (location, size, version stamp) -> sha256, for every file hashed by this process.
_HASHES: dict[tuple[str, int, Hashable], str] = {}
#: The temporary files this process is writing now, which no sweep may delete.
_WRITING: set[str] = set()


def tmp_name(name: str) -> str:
    """The temporary name a write of ``name`` uses; hidden, and naming its writer so a sweep can tell whether
    that writer may still be alive."""
    return f".{name}.{HOST}.{os.getpid()}.tmp"


def is_stale_tmp(name: str, age_s: float) -> bool:
    """Whether ``name`` is a temporary file left by a write that can no longer finish."""
    m = _TMP.match(name)
    if m is None:
        return False
    if m["host"] != HOST:
        return age_s > FOREIGN_TMP_AGE_S
    pid = int(m["pid"])
    if pid == os.getpid():
        return True  # a write of this process in progress is in _WRITING, checked by the caller
    return not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


class _Files(Protocol):
    """What the store needs from a file system; paths are strings in the file system's own form."""

    def join(self, *parts: str) -> str: ...
    def makedirs(self, folder: str) -> None: ...
    #: (size, version) of a file, None when it is missing; a version of None means "cannot tell".
    def stamp(self, path: str) -> tuple[int, Hashable | None] | None: ...
    def open_read(self, path: str) -> IO[bytes]: ...
    def open_write(self, path: str) -> IO[bytes]: ...
    #: Writes ``data`` to ``folder/name`` through its temporary name, returning the file's path.
    def write_atomic(self, folder: str, name: str, data: bytes) -> str: ...
    #: (name, path, age in seconds) of each entry of a folder; none when it does not exist.
    def entries(self, folder: str) -> Iterator[tuple[str, str, float]]: ...
    def remove(self, path: str) -> None: ...


class _LocalFiles:
    """Plain ``os`` calls, as fast as before any other root was possible."""

    def join(self, *parts: str) -> str:
        return os.path.join(*parts)

    def stamp(self, path: str) -> tuple[int, Hashable | None] | None:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None
        # A rename gives the file a new inode, so a replaced file is a new version even within one mtime tick.
        return st.st_size, (st.st_dev, st.st_ino, st.st_mtime_ns)

    def open_read(self, path: str) -> IO[bytes]:
        return open(path, "rb")

    def open_write(self, path: str) -> IO[bytes]:
        return open(path, "wb")

    def write_atomic(self, folder: str, name: str, data: bytes) -> str:
        path, tmp = os.path.join(folder, name), os.path.join(folder, tmp_name(name))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        _fsync_dir(folder)  # the rename itself survives a power cut
        return path

    def entries(self, folder: str) -> Iterator[tuple[str, str, float]]:
        try:
            with os.scandir(folder) as it:
                found = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        now = time.time()
        for entry in found:
            with suppress(FileNotFoundError):  # deleted meanwhile by another sweep
                yield entry.name, entry.path, now - entry.stat(follow_symlinks=False).st_mtime

    def remove(self, path: str) -> None:
        os.unlink(path)

    def makedirs(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _FsspecFiles:
    """Any fsspec file system. Object stores have no rename, so ``mv`` copies; the temporary name still keeps
    a half-uploaded object from ever sitting at an artifact's path."""

    #: Info fields that change whenever a file is rewritten, in order of preference.
    VERSION_FIELDS = ("ETag", "etag", "generation", "mtime", "LastModified", "last_modified", "created")

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def join(self, *parts: str) -> str:
        return "/".join(p.rstrip("/") for p in parts)

    def stamp(self, path: str) -> tuple[int, Hashable | None] | None:
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        version = next((str(info[f]) for f in self.VERSION_FIELDS if info.get(f) is not None), None)
        return int(info["size"]), version

    def open_read(self, path: str) -> IO[bytes]:
        f: IO[bytes] = self.fs.open(path, "rb")
        return f

    def open_write(self, path: str) -> IO[bytes]:
        f: IO[bytes] = self.fs.open(path, "wb")
        return f

    def write_atomic(self, folder: str, name: str, data: bytes) -> str:
        path, tmp = self.join(folder, name), self.join(folder, tmp_name(name))
        with self.open_write(tmp) as f:
            f.write(data)
        self.fs.mv(tmp, path)
        return path

    def entries(self, folder: str) -> Iterator[tuple[str, str, float]]:
        try:
            listing = self.fs.ls(folder, detail=True)
        except FileNotFoundError:
            return
        now = time.time()
        for info in listing:
            modified = info.get("mtime") or info.get("LastModified") or info.get("created")
            stamp = modified.timestamp() if hasattr(modified, "timestamp") else float(modified or now)
            path = str(info["name"])
            yield path.rstrip("/").rsplit("/", 1)[-1], path, now - stamp

    def remove(self, path: str) -> None:
        self.fs.rm_file(path)

    def makedirs(self, folder: str) -> None:
        self.fs.makedirs(folder, exist_ok=True)


def _is_url(root: str) -> bool:
    return "://" in root and not root.startswith("file://")


class ArtifactStore:
    """Content-addressed folders ``<root>/<key[:2]>/<key>/``; ``root`` is a local folder or an fsspec URL."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        text = os.fspath(root)
        self.url = _is_url(text)
        self.files: _Files
        if self.url:
            try:
                import fsspec
            except ImportError as exc:
                raise BenchError(
                    f"artifact root {text} is a URL, which needs fsspec: pip install 'frontline-bench[ray]'"
                ) from exc
            fs, base = fsspec.core.url_to_fs(text)
            self.files, self._base, self.root = _FsspecFiles(fs), str(base).rstrip("/"), text.rstrip("/")
        else:
            local = text.removeprefix("file://")
            self.files, self._base, self.root = _LocalFiles(), local, local

    def folder(self, key: str) -> str:
        return self.files.join(self._base, key[:2], key)

    def checkpoints(self, key: str) -> Path:
        """A job's training checkpoints, beside the artifact folders rather than in one, so nothing that reads
        or checks a job's artifacts ever meets them. Under a URL root they stay on this host's disk: they are
        written every epoch and only this process resumes from them."""
        if not self.url:
            return Path(self._base) / "checkpoints" / key
        from bench.data.sources import cache_dir

        return cache_dir() / "checkpoints" / key

    def location(self, artifact: StoredArtifact) -> str:
        """Where an artifact is, for messages: paths are stored relative to the root, so a store and its
        folder can move together."""
        return f"{self.root}/{artifact.path}"

    # -- writing ------------------------------------------------------------------------------------------
    def write_tensors(
        self, key: str, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
    ) -> StoredArtifact:
        data = save_safetensors(
            {k: v.detach().contiguous().cpu() for k, v in tensors.items()},
            metadata={"meta": json.dumps(meta, sort_keys=True)},
        )
        return self._write(key, f"{name}.safetensors", name, data)

    def write_json(self, key: str, name: str, obj: Any) -> StoredArtifact:
        return self._write(key, f"{name}.json", name, json.dumps(obj, indent=2, sort_keys=True).encode())

    def _write(self, key: str, filename: str, name: str, data: bytes) -> StoredArtifact:
        folder = self.folder(key)
        tmp = self.files.join(folder, tmp_name(filename))
        _WRITING.add(tmp)
        try:
            self.files.makedirs(folder)
            self._sweep_folder(folder)
            path = self.files.write_atomic(folder, filename, data)
        except OSError as exc:
            with suppress(OSError):
                self.files.remove(tmp)
            raise ArtifactStorageError(folder, exc) from exc
        finally:
            _WRITING.discard(tmp)
        digest = hashlib.sha256(data).hexdigest()
        stamp = self.files.stamp(path)
        if stamp is not None and stamp[1] is not None:
            _HASHES[(path, stamp[0], stamp[1])] = digest
        return StoredArtifact(name, f"{key[:2]}/{key}/{filename}", digest, len(data))

    def sweep(self, keys: list[str]) -> int:
        """Delete the temporary files killed writes left in these jobs' folders; the number deleted."""
        return sum(self._sweep_folder(self.folder(k)) for k in keys)

    def _sweep_folder(self, folder: str) -> int:
        removed = 0
        for name, path, age_s in self.files.entries(folder):
            if path not in _WRITING and is_stale_tmp(name, age_s):
                with suppress(OSError):  # gone meanwhile, or a read-only folder, which a write reports
                    self.files.remove(path)
                    removed += 1
        return removed

    def check_writable(self) -> None:
        """Fail now, before hours of training, when the root cannot take a file."""
        probe = f"{self._base}/.write-probe.{HOST}.{os.getpid()}.tmp"
        try:
            self.files.makedirs(self._base)
            with self.files.open_write(probe) as f:
                f.write(b"probe")
        except OSError as exc:
            raise ArtifactStorageError(self.root, exc) from exc
        finally:
            with suppress(OSError):
                self.files.remove(probe)

    # -- reading ------------------------------------------------------------------------------------------
    def _path(self, artifact: StoredArtifact) -> str:
        return self.files.join(self._base, *artifact.path.split("/"))

    def intact(self, artifact: StoredArtifact) -> bool:
        """Whether the file holds exactly the bytes the store recorded (hashed once per version of it)."""
        path = self._path(artifact)
        try:
            stamp = self.files.stamp(path)
            if stamp is None or stamp[0] != artifact.bytes:
                return False
            cached = _HASHES.get((path, stamp[0], stamp[1])) if stamp[1] is not None else None
            if cached is not None:
                return cached == artifact.sha256
            digest = hashlib.sha256()
            with self.files.open_read(path) as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            return self._remember(path, stamp, digest.hexdigest()) == artifact.sha256
        except OSError:
            return False

    def read_bytes(self, artifact: StoredArtifact) -> bytes:
        """The file's bytes, checked against the recorded sha256 as read, so what is used is what was
        checked."""
        path = self._path(artifact)
        try:
            stamp = self.files.stamp(path)
            if stamp is None:
                raise FileNotFoundError(path)
            with self.files.open_read(path) as f:
                data = f.read()
        except OSError as exc:
            raise self._mismatch(artifact, f"it cannot be read ({exc.strerror or exc})") from exc
        if len(data) != artifact.bytes:
            raise self._mismatch(artifact, f"it has {len(data)} bytes, not the {artifact.bytes} recorded")
        cached = _HASHES.get((path, stamp[0], stamp[1])) if stamp[1] is not None else None
        if cached is None:
            cached = self._remember(path, stamp, hashlib.sha256(data).hexdigest())
        if cached != artifact.sha256:
            raise self._mismatch(artifact, "its sha256 is not the one recorded")
        return data

    def _remember(self, path: str, stamp: tuple[int, Hashable | None], digest: str) -> str:
        """Cache the hash of the file read under ``stamp``, unless it changed while being read."""
        if stamp[1] is not None and self.files.stamp(path) == stamp:
            _HASHES[(path, stamp[0], stamp[1])] = digest
        return digest

    def _mismatch(self, artifact: StoredArtifact, why: str) -> ArtifactMismatchError:
        return ArtifactMismatchError(
            f"artifact {self.location(artifact)} cannot be used: {why}; the next `bench run` of its matrix "
            "recomputes the job that wrote it"
        )

    def read_json(self, artifact: StoredArtifact) -> Any:
        return json.loads(self.read_bytes(artifact))

    def read_tensors(self, artifact: StoredArtifact) -> dict[str, torch.Tensor]:
        return load_safetensors(self.read_bytes(artifact))
