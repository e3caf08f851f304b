"""On-demand render: verify -> parse -> negotiate -> authorise -> cache hit, or render once.

The use case behind ``GET /v1/render/{id}``. The signature is checked before anything
else (an unsigned or forged URL costs one HMAC per key), then the options are parsed into
their one canonical form. The result is stored under a key derived from (original sha256,
canonical options, negotiated format, watermark bytes), so the second request is a read
from storage with no decode at all. Concurrent first requests for one key in this process
wait on one lock and render once; across processes a rare duplicate render can happen and
is harmless, since output is deterministic and the key is the same.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import Counter, Histogram
from sqlalchemy import select

from imgpipe.db.schema import ImageRow
from imgpipe.domain.errors import ImgpipeError, NotFound
from imgpipe.domain.media import ImageFormat
from imgpipe.domain.render_options import (
    BadOption,
    OutputFormat,
    RenderOptions,
    parse_options,
)
from imgpipe.domain.signing import authorise_render
from imgpipe.domain.states import ImageStatus
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.probe import probe
from imgpipe.engine.render import plan_render, render
from imgpipe.services.deps import ServiceDeps
from imgpipe.storage import keys

RENDERS = Counter("imgpipe_renders", "Render requests served, by cache outcome.", ["outcome"])
RENDER_SECONDS = Histogram(
    "imgpipe_render_duration_seconds",
    "Cold render time: probe, decode, steps, encode and store.",
    buckets=(0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 4, 8, 15, 30),
)

LEGACY = "legacy"  # format=auto for a client that takes neither AVIF nor WebP


@dataclass(frozen=True, slots=True)
class RenderRequest:
    image_id: str
    path: str  # the request path as signed: /v1/render/ID[.EXT]
    pairs: Sequence[tuple[str, str]]  # the query, decoded, in the order it came
    path_format: OutputFormat | None
    accept: str
    if_none_match: str | None = None


@dataclass(frozen=True, slots=True)
class RenderResponse:
    etag: str
    vary_accept: bool
    not_modified: bool = False
    media_type: str = ""
    data: bytes = b""
    cache: str = "hit"  # hit | miss


def render_image(deps: ServiceDeps, owner: str | None, request: RenderRequest) -> RenderResponse:
    options = _authorised_options(deps, request, owner)
    watermark_path, watermark_digest = _watermark(deps, options)
    negotiated = _negotiate(options, request.accept)
    sha256 = _renderable_sha(deps, request.image_id, owner)

    ext = LEGACY if negotiated == LEGACY else ImageFormat(negotiated).extension
    digest = options.cache_digest(negotiated, watermark_digest)
    key = keys.render(sha256, digest, ext)
    etag = f'"{sha256[:16]}-{digest}"'
    vary = options.format is OutputFormat.AUTO
    if request.if_none_match and etag in _etags(request.if_none_match):
        RENDERS.labels("not_modified").inc()
        return RenderResponse(etag, vary, not_modified=True)

    data = _cached(deps, key)
    cache = "hit"
    if data is None:
        with _LOCKS.hold(key):
            data = _cached(deps, key)  # another request may have rendered it meanwhile
            if data is None:
                fmt = None if negotiated == LEGACY else ImageFormat(negotiated)
                data = _render_and_store(deps, sha256, options, fmt, watermark_path, key)
                cache = "miss"
    RENDERS.labels(cache).inc()
    return RenderResponse(etag, vary, media_type=_media_type(data), data=data, cache=cache)


def _authorised_options(
    deps: ServiceDeps, request: RenderRequest, owner: str | None
) -> RenderOptions:
    config = deps.render
    # A request without a key (owner None) is authorised by its signature alone, so it is
    # always checked, even where unsigned renders are allowed for key holders.
    if config.allow_unsigned and owner is not None:
        pairs = [(k, v) for k, v in request.pairs if k != "sig"]
        return parse_options(pairs, request.path_format)
    accepted = (deps.signing_key, *config.previous_keys)
    return authorise_render(accepted, request.path, request.pairs, request.path_format, time.time())


def _negotiate(options: RenderOptions, accept: str) -> str:
    if options.format is not OutputFormat.AUTO:
        return options.format.value
    accepted = _accepted_types(accept)
    for candidate in ("avif", "webp"):
        if f"image/{candidate}" in accepted:
            return candidate
    return LEGACY


def _accepted_types(accept: str) -> set[str]:
    """Media types the client names explicitly with q > 0 (wildcards do not count: a
    client sending only */* may not decode AVIF)."""
    types = set()
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            types.add(media.lower())
    return types


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


def _renderable_sha(deps: ServiceDeps, image_id: str, owner: str | None) -> str:
    """The original's sha256: 404 for another owner's, a deleted or a failed image.

    ``owner`` None: a signed request without an API key, authorised by its signature alone.
    One narrow query (no ORM objects, no variants): it runs on every cache hit.
    """
    query = select(ImageRow.sha256, ImageRow.status).where(ImageRow.id == image_id)
    if owner is not None:
        query = query.where(ImageRow.owner == owner)
    with deps.read_sessions() as session:
        row = session.execute(query).first()
    if row is None or row.status == ImageStatus.FAILED.value:
        raise NotFound(f"No image {image_id}.")
    return str(row.sha256)


def _cached(deps: ServiceDeps, key: str) -> bytes | None:
    try:
        return deps.store.get_bytes(key)
    except NotFound:
        return None


def _render_and_store(
    deps: ServiceDeps,
    sha256: str,
    options: RenderOptions,
    fmt: ImageFormat | None,
    watermark_path: Path | None,
    key: str,
) -> bytes:
    started = time.perf_counter()
    with deps.store.local_file(keys.original(sha256)) as path:
        try:
            facts = probe(path, deps.limits)
        except ImgpipeError as exc:
            if exc.retryable:
                raise
            # The original no longer passes validation (a limit was lowered, or it was
            # refused later): it is not served in any form.
            raise NotFound("This image cannot be rendered.") from exc
        geometry = plan_render(facts.upright_size, options)
        width, height = geometry.output
        if width * height > deps.render.max_output_pixels:
            raise BadOption(
                "w" if options.width else "h",
                f"a size whose output has at most {deps.render.max_output_pixels} pixels",
                f"{width}x{height}",
            )
        with _SLOTS.slot(deps.render.max_in_flight):
            rendered = render(
                path, facts, options, fmt, watermark_path, Deadline(deps.process_timeout_s)
            )
    deps.store.put_bytes(key, rendered.data)
    RENDER_SECONDS.observe(time.perf_counter() - started)
    return rendered.data


def _media_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return ImageFormat.PNG.media_type
    if data.startswith(b"\xff\xd8"):
        return ImageFormat.JPEG.media_type
    if data[8:12] == b"WEBP":
        return ImageFormat.WEBP.media_type
    return ImageFormat.AVIF.media_type


# --- watermarks -------------------------------------------------------------------------

_WATERMARK_DIGESTS: dict[tuple[str, int, int], str] = {}


def _watermark(deps: ServiceDeps, options: RenderOptions) -> tuple[Path | None, str]:
    """The watermark's file and a digest of its bytes (part of the cache key, so replacing
    a watermark file never serves renders made with the old one)."""
    if options.watermark is None:
        return None, ""
    folder = deps.render.watermarks_dir
    name = options.watermark.name
    path = folder / f"{name}.png" if folder else None
    try:
        if path is None:
            raise FileNotFoundError
        stat = path.stat()
    except OSError:
        known = folder.glob("*.png") if folder and folder.is_dir() else []
        available = sorted(p.stem for p in known)
        raise BadOption(
            "wm", f"one of the configured watermarks ({', '.join(available) or 'none'})", name
        ) from None
    memo = (str(path), stat.st_mtime_ns, stat.st_size)
    digest = _WATERMARK_DIGESTS.get(memo)
    if digest is None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        _WATERMARK_DIGESTS[memo] = digest
    return path, digest


# --- in-process coordination ------------------------------------------------------------


class _KeyedLocks:
    """One lock per render key while anyone holds or waits for it."""

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


class _Slots:
    """At most N cold renders at once in this process (libvips uses every core anyway)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._semaphores: dict[int, threading.Semaphore] = {}

    @contextmanager
    def slot(self, size: int) -> Iterator[None]:
        with self._guard:
            semaphore = self._semaphores.setdefault(size, threading.Semaphore(size))
        with semaphore:
            yield


_LOCKS = _KeyedLocks()
_SLOTS = _Slots()
