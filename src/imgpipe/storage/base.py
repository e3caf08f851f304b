"""The object store port: what the services need from any storage backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol


class ObjectStore(Protocol):
    """Durable, atomic object storage addressed by key.

    ``put_*`` either stores every byte under the key or leaves nothing there: a reader
    never sees a partial object. Implementations raise StorageUnavailable or
    InsufficientStorage (both retryable) for infrastructure trouble, NotFound for a
    missing key.
    """

    def put_file(self, key: str, source: Path, sha256: str) -> None:
        """Store ``source`` (consumed) under ``key``; verify the stored bytes hash to ``sha256``."""

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def get_bytes(self, key: str) -> bytes: ...

    def iter_bytes(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    def local_file(self, key: str) -> AbstractContextManager[Path]:
        """A local path holding the object for the duration of the context."""

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def check(self) -> None:
        """Raise StorageUnavailable unless the store can be written to now."""
