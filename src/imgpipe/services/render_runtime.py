"""What on-demand render keeps between requests in one process, in one object.

The container builds one ``RenderRuntime`` per process and hands it to the services in
``ServiceDeps``; nothing here is a module global, and every cache is bounded:

- ``locks``: one lock per render key while anyone holds or waits for it, so concurrent
  first requests for one render make it once;
- ``slots``: at most ``RENDER_CONCURRENCY`` cold renders at once;
- ``watermark_digests``: the digest of each watermark file's bytes, by (path, mtime,
  size), least recently used dropped past ``WATERMARK_DIGESTS``;
- ``lookups``: the facts of recently rendered images (sha256, status, owner,
  moderation; and the original's size and header facts, which never change), for
  ``RENDER_LOOKUP_TTL_S`` seconds, least recently used dropped past
  ``LOOKUPS``. The services that change those facts (delete, restore, a moderation
  verdict) call ``lookups.invalidate(image_id)`` after their commit: this process sees
  the change at once, other processes within the TTL (docs/render.md, "Caching").
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from imgpipe.db.renders import RenderableImage
from imgpipe.domain.render_options import RenderOptions

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

WATERMARK_DIGESTS = 256
SIGNED_QUERIES = 4096
LOOKUPS = 10_000
DEFAULT_LOOKUP_TTL_S = 2.0


class KeyedLocks:
    """One lock per key while anyone holds or waits for it (then forgotten)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class Slots:
    """At most ``size`` holders at once (libvips uses every core anyway); one semaphore
    per size asked for, so a changed setting in a test gets its own."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._semaphores: dict[int, threading.Semaphore] = {}

    @contextmanager
    def slot(self, size: int) -> Iterator[None]:
        with self._guard:
            semaphore = self._semaphores.setdefault(size, threading.Semaphore(size))
        with semaphore:
            yield


class LruCache(Generic[K, V]):
    """At most ``size`` entries, the least recently used dropped first; thread-safe."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class _Missing:
    """What a lookup cache keeps for an id with no row: cached like a row."""


MISSING = _Missing()


class LookupCache(Generic[V]):
    """Loaded values by key for ``ttl_s`` seconds, at most ``size`` of them.

    ``None`` from the loader (no such row) is cached too, so an unknown id and a known
    one cost the same once warm. ``invalidate`` drops a key at once; a load that was
    already under way when it ran is not stored (it may have read the old row), so an
    invalidation is never undone by a slower reader. ``ttl_s`` 0 turns caching off.
    """

    def __init__(
        self, ttl_s: float, size: int = LOOKUPS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_s = ttl_s
        self._size = size
        self._clock = clock
        self._items: OrderedDict[str, tuple[float, V | _Missing]] = OrderedDict()
        self._lock = threading.Lock()
        self._epoch = 0  # bumped by every invalidation

    def get(self, key: str, load: Callable[[], V | None]) -> V | None:
        if self.ttl_s <= 0:
            return load()
        now = self._clock()
        with self._lock:
            entry = self._items.get(key)
            if entry is not None and entry[0] > now:
                self._items.move_to_end(key)
                value = entry[1]
                return None if isinstance(value, _Missing) else value
            epoch = self._epoch
        loaded = load()
        with self._lock:
            if self._epoch == epoch:
                self._items[key] = (now + self.ttl_s, MISSING if loaded is None else loaded)
                self._items.move_to_end(key)
                while len(self._items) > self._size:
                    self._items.popitem(last=False)
        return loaded

    def cached(self, key: str) -> tuple[bool, V | None]:
        """(True, value) when ``key`` is cached and fresh (value None: no such row);
        (False, None) when only ``get`` can tell."""
        if self.ttl_s <= 0:
            return False, None
        with self._lock:
            entry = self._items.get(key)
            if entry is None or entry[0] <= self._clock():
                return False, None
            self._items.move_to_end(key)
            value = entry[1]
        return True, None if isinstance(value, _Missing) else value

    def invalidate(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._epoch += 1

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class RenderRuntime:
    """Render's per-process state (see the module docstring); built by the container."""

    lookup_ttl_s: float = DEFAULT_LOOKUP_TTL_S
    lookup_size: int = LOOKUPS
    # Reads from the store are local file reads (the container sets it for a local
    # store): short enough that the API may make them on its event loop (api/routes_render).
    local_reads: bool = False
    clock: Callable[[], float] = time.monotonic  # the lookup cache's (tests move it)
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    slots: Slots = field(default_factory=Slots)
    watermark_digests: LruCache[tuple[str, int, int], str] = field(
        default_factory=lambda: LruCache(WATERMARK_DIGESTS)
    )
    # Signed queries verified before, by their exact bytes: their options and expiry.
    signed: LruCache[tuple[str, tuple[tuple[str, str], ...]], tuple[RenderOptions, int | None]] = (
        field(default_factory=lambda: LruCache(SIGNED_QUERIES))
    )
    # Cache-key digests by (options, negotiated format, asset digests).
    digests: LruCache[tuple[RenderOptions, str, str], str] = field(
        default_factory=lambda: LruCache(SIGNED_QUERIES)
    )
    lookups: LookupCache[RenderableImage] = field(init=False)

    def __post_init__(self) -> None:
        self.lookups = LookupCache(self.lookup_ttl_s, self.lookup_size, self.clock)

    def forget_image(self, image_id: str) -> None:
        """The hook for services that change what a render may serve (delete, restore,
        moderation): this process's next render of ``image_id`` reads its row again."""
        self.lookups.invalidate(image_id)
