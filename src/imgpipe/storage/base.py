"""The object store port: what the services need from any storage backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class DirectUploadForm:
    """How a client sends bytes straight to the store (an S3 presigned POST)."""

    method: str
    url: str
    expires_at: datetime
    fields: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


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

    def direct_upload_form(
        self, key: str, max_bytes: int, expires_s: int
    ) -> DirectUploadForm | None:
        """A form that lets a client upload to ``key`` itself, size-capped by the store,
        or None when this store cannot take uploads directly (the API receives them)."""
