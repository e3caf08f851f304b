"""Objects as files under one root directory, written the durable way.

Write to a temporary file in the target's directory, fsync it, rename it over the key,
fsync the directory: after a crash the key holds either nothing or every byte, never a
partial file, and a reader can never open a half-written one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from imgpipe.domain.errors import (
    ChecksumMismatch,
    InsufficientStorage,
    NotFound,
    StorageUnavailable,
)
from imgpipe.storage.base import DirectUploadForm, ObjectMeta, Protection, PurgeResult
from imgpipe.storage.hashing import sha256_file

_CHUNK = 1 << 20


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    # --- writes ---------------------------------------------------------------------

    # A file has no headers of its own: the API sends the same ones an S3 object keeps
    # (api/routes_images.py), so ``meta`` is accepted and not stored.
    def put_file(self, key: str, source: Path, sha256: str, meta: ObjectMeta | None = None) -> None:
        target = self._path(key)
        with _os_errors(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._temp_in(target.parent)
            try:
                # The source is handed over: on the same filesystem a rename saves copying
                # the upload; the hash is then taken over what actually landed on disk.
                try:
                    os.replace(source, tmp)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    shutil.copyfile(source, tmp)
                    source.unlink()
                _fsync_file(tmp)
                if sha256_file(tmp) != sha256:
                    raise ChecksumMismatch(f"Stored bytes for {key} do not match their sha256.")
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _fsync_dir(target.parent)

    def put_bytes(self, key: str, data: bytes, meta: ObjectMeta | None = None) -> None:
        target = self._path(key)
        with _os_errors(key):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._temp_in(target.parent)
            try:
                with tmp.open("wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _fsync_dir(target.parent)

    # --- reads ----------------------------------------------------------------------

    def get_bytes(self, key: str) -> bytes:
        # Opened straight away, no stat first: this is every render cache hit.
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFound(f"No object stored under {key}.") from None

    def iter_bytes(self, key: str, chunk_size: int = _CHUNK) -> Iterator[bytes]:
        # Opened here, not inside the generator, so a missing key raises NotFound before
        # a response has started.
        try:
            fh = self._path(key).open("rb")
        except FileNotFoundError:
            raise NotFound(f"No object stored under {key}.") from None
        return _chunks(fh, chunk_size)

    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        with self._reading(key) as path:
            yield path

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        with self._reading(key) as path:
            return path.stat().st_size

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        relative = prefix.strip("/")
        if not relative:
            raise ValueError("delete_prefix needs a non-empty prefix; it never empties a store.")
        shutil.rmtree(self._path(relative), ignore_errors=True)

    def direct_upload_form(
        self, key: str, max_bytes: int, expires_s: int
    ) -> DirectUploadForm | None:
        return None  # a local disk has no HTTP endpoint: the API's signed URL receives it

    def check(self) -> None:
        with _os_errors("readiness probe"):
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self._temp_in(self.root)
            tmp.unlink()

    def list_keys(self, prefix: str) -> Iterator[tuple[str, float]]:
        relative = prefix.strip("/")
        if not relative:
            raise ValueError("list_keys needs a non-empty prefix.")
        top = self._path(relative)
        for path in sorted(top.rglob("*")):
            if path.name.startswith(".tmp-"):
                continue
            with contextlib.suppress(OSError):
                stat = path.stat()
                if path.is_file():
                    yield path.relative_to(self.root).as_posix(), stat.st_mtime

    def set_meta(self, key: str, meta: ObjectMeta) -> bool:
        return False  # nothing stored to repair: the API sends the headers

    def purge(self, key: str) -> PurgeResult:
        if key.endswith("/"):
            removed = sum(1 for _ in self.list_keys(key))
            self.delete_prefix(key)
            return PurgeResult(removed)
        existed = self.exists(key)
        self.delete(key)
        return PurgeResult(int(existed))

    def protection(self) -> Protection:
        return Protection("n/a")

    def presigned_get(self, key: str, expires_s: int) -> str | None:
        return None

    # --- helpers --------------------------------------------------------------------

    def remove_stale_temp_files(self, older_than_s: float = 3600.0) -> int:
        """Delete temp files a killed writer left behind (never a finished object).

        A write is a temp file renamed into place, so a process killed mid-write leaves
        only a ``.tmp-*`` file, never a partial object; this collects them.
        """
        cutoff = time.time() - older_than_s
        removed = 0
        for leftover in self.root.rglob(".tmp-*"):
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    removed += 1
        return removed

    def _path(self, key: str) -> Path:
        # Checked lexically, not with realpath: a key is relative, made of plain segments,
        # so it cannot leave the root. (realpath cost a system call per path component on
        # every cache hit; nothing but imgpipe writes under the root, so no symlink there
        # needs resolving.)
        segments = key.split("/")
        if "\\" in key or "\0" in key or any(s in _NOT_SEGMENTS for s in segments):
            raise NotFound(f"Invalid key {key!r}.")
        return self.root / key

    @contextlib.contextmanager
    def _reading(self, key: str) -> Iterator[Path]:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"No object stored under {key}.")
        yield path

    @staticmethod
    def _temp_in(directory: Path) -> Path:
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=directory)
        os.close(fd)
        return Path(name)


_NOT_SEGMENTS = frozenset({"", ".", ".."})  # also refuses "", "/abs" and "a//b"


def _chunks(fh: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with fh:
        while chunk := fh.read(chunk_size):
            yield chunk


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(f"No space left on the storage volume ({what}).") from exc
        raise StorageUnavailable(f"Local storage failed for {what}: {exc.strerror}.") from exc
