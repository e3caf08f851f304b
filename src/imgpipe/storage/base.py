"""The object store port: what the services need from any storage backend."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

# Variants and renders are content-addressed: a key's bytes never change, so any cache may
# keep them for a year without asking again (RFC 8246 immutable).
PUBLIC_IMMUTABLE = "public, max-age=31536000, immutable"
# Originals are never served publicly (SPEC §5); a browser that opens one saves it.
PRIVATE_NO_STORE = "private, max-age=0, no-store"


@dataclass(frozen=True, slots=True)
class ObjectMeta:
    """The HTTP headers an object is stored with, so a store or CDN can serve it as is."""

    content_type: str = "application/octet-stream"
    cache_control: str | None = None
    content_disposition: str | None = None

    @classmethod
    def public(cls, media_type: str) -> ObjectMeta:
        """A variant or a render: public, a year, immutable."""
        return cls(media_type, PUBLIC_IMMUTABLE)

    @classmethod
    def original(cls, media_type: str) -> ObjectMeta:
        """An original: private, downloaded rather than shown inline."""
        return cls(media_type, PRIVATE_NO_STORE, "attachment")

    @classmethod
    def render_source(cls) -> ObjectMeta:
        """A render source (keys.render_source, either copy): the original's pixels, so
        private like the original. Stored as ``image/jpeg`` whatever its bytes (an alpha
        copy is a PNG), as its key's ``.jpg`` says; only imgpipe reads it."""
        return cls("image/jpeg", PRIVATE_NO_STORE)


@dataclass(frozen=True, slots=True)
class Protection:
    """What a bucket keeps beyond the current copy of an object (S3 versioning, object lock)."""

    versioning: str  # "enabled", "suspended", "off", or "n/a" (a store without versions)
    object_lock: bool = False
    lock_mode: str | None = None  # GOVERNANCE / COMPLIANCE default retention, if any
    lock_days: int | None = None

    def describe(self) -> str:
        lock = f", object lock {self.lock_mode or 'on'}" if self.object_lock else ""
        days = f" {self.lock_days}d" if self.lock_days else ""
        return f"versioning {self.versioning}{lock}{days}"


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What ``purge`` removed, and what a bucket's object lock kept (with its reason)."""

    removed: int = 0
    locked: tuple[str, ...] = ()


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

    def put_file(self, key: str, source: Path, sha256: str, meta: ObjectMeta | None = None) -> None:
        """Store ``source`` (consumed) under ``key``; verify the stored bytes hash to ``sha256``.
        ``meta``: the headers stored with the object (a file store has none to keep)."""

    def put_bytes(self, key: str, data: bytes, meta: ObjectMeta | None = None) -> None: ...

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

    def list_keys(self, prefix: str) -> Iterator[tuple[str, float]]:
        """Every key under ``prefix`` (a "directory", non-empty) with its mtime (Unix s)."""

    def set_meta(self, key: str, meta: ObjectMeta) -> bool:
        """Make the stored headers of ``key`` ``meta``; True if they had to change."""

    def purge(self, key: str) -> PurgeResult:
        """Remove ``key`` (every key under it when it ends with "/") and, where the store
        keeps versions, every version of it; what object lock keeps is listed, not raised."""

    def protection(self) -> Protection:
        """What the store keeps beyond the current copy (versioning, object lock)."""

    def presigned_get(self, key: str, expires_s: int) -> str | None:
        """A URL that GETs ``key`` without credentials until it expires, or None when this
        store has no such URLs (a local disk)."""

    def direct_upload_form(
        self, key: str, max_bytes: int, expires_s: int
    ) -> DirectUploadForm | None:
        """A form that lets a client upload to ``key`` itself, size-capped by the store,
        or None when this store cannot take uploads directly (the API receives them)."""
