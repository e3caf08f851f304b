"""On-demand render: verify -> parse -> negotiate -> authorise -> cache hit, or render once.

The use case behind ``GET /v1/render/{id}``, in two parts so the API can run them on
different threads: ``lookup`` (a 304, a cache hit, or the authorised render to make) and
``make`` (the render itself); ``render_image`` is both. The signature is checked before
anything else (an unsigned or forged URL costs one HMAC per key), then the options are
parsed into their one canonical form, then the image's row is checked on every request,
hit or not: a deleted image, a failed one and another owner's are 404 whatever is cached.
The row comes from the process's lookup cache (services/render_runtime.py) for up to
RENDER_LOOKUP_TTL_S: a delete or a verdict made in this process applies at once, one made
in another within that time (docs/render.md, "Caching"). The result is stored under a
key derived from (original sha256, canonical options, negotiated format, watermark
bytes), so the second request is a read from storage with no decode at all. Concurrent
first requests for one key in this process wait on one lock and render once; across
processes a rare duplicate render can happen and is harmless, since output is
deterministic and the key is the same.

A render whose pixels fit in the image's render source (a 1920x1080 copy the worker keeps,
engine/render_source.py) is made from that copy rather than the original: a tenth of the
pixels to decode; a larger one (w=2400) from the large copy, where the original gets one.
An image without its copy yet (processed before copies existed, the copy lost, or, for
the large copy, a render in the moments after "done" while the worker still makes it)
gets it made here, once, from the original: the same bytes the worker makes.

Such a render never reads the original: the original's header facts (size, orientation,
alpha...) come with the image's row, recorded at upload, and today's limits are checked
against them (engine/probe.py ``check_limits``). The original is fetched (on S3, a
download of up to 25 MB) only for a render that reads it, or to make a missing copy, or
to probe an image whose row has no facts (uploaded before they were recorded): that
render records them, so the next cold render of the image does not (docs/render.md,
"What a cold render reads").
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imgpipe.db import renders
from imgpipe.domain.errors import ImgpipeError, NotFound
from imgpipe.domain.media import ImageFormat, ProbeResult
from imgpipe.domain.moderation import check_keyless
from imgpipe.domain.render_options import BadOption, RenderOptions, parse_options
from imgpipe.domain.signing import authorise_render, check_expiry, render_expiry
from imgpipe.domain.states import ImageStatus
from imgpipe.engine import jxl, render_source
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.plan import plan
from imgpipe.engine.probe import check_limits, probe
from imgpipe.engine.render import output_format, render
from imgpipe.services.deps import ServiceDeps
from imgpipe.storage import keys
from imgpipe.storage.base import ObjectMeta
from imgpipe.telemetry.metrics import RENDER_SECONDS, RENDER_SOURCES_MADE, RENDERS, RENDERS_FROM

log = logging.getLogger(__name__)

LEGACY = "legacy"  # format=auto for a client that takes neither AVIF nor WebP


@dataclass(frozen=True, slots=True)
class RenderRequest:
    image_id: str
    path: str  # the request path as signed: /v1/render/ID[.EXT]
    pairs: Sequence[tuple[str, str]]  # the query, decoded, in the order it came
    path_format: ImageFormat | None
    # Media types the client's Accept names explicitly with q > 0 (api/headers.py).
    accepted: frozenset[str] = frozenset()
    # The entity tags of If-None-Match, weak ones without their W/ (api/headers.py).
    if_none_match: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RenderResponse:
    etag: str
    vary_accept: bool
    not_modified: bool = False
    media_type: str = ""
    data: bytes = b""
    cache: str = "hit"  # hit | miss


@dataclass(frozen=True, slots=True)
class RenderTarget:
    """An authorised render of an existing image: where its result is cached, how to make it."""

    sha256: str
    options: RenderOptions
    format: ImageFormat | None  # None: JPEG, or PNG where alpha matters (format=auto, legacy)
    watermark_path: Path | None
    key: str
    etag: str
    vary_accept: bool
    # The original's size and header facts from the image's row (facts None: not
    # recorded, so the render probes the original and records them).
    original_bytes: int = 0
    facts: ProbeResult | None = None


def render_image(deps: ServiceDeps, owner: str | None, request: RenderRequest) -> RenderResponse:
    """The whole use case: ``lookup``, then ``make`` on a miss."""
    found = lookup(deps, owner, request)
    return make(deps, found) if isinstance(found, RenderTarget) else found


def lookup(
    deps: ServiceDeps, owner: str | None, request: RenderRequest
) -> RenderResponse | RenderTarget:
    """A 304, a cache hit, or (a miss) the authorised render to make.

    Never decodes: the signature, the options, the image's row (from the lookup cache, or
    one indexed query) and one storage read. The API runs it on a few threads and ``make``
    apart (api/routes_render).
    """
    found = _lookup(deps, owner, request, read_database=True)
    assert found is not None
    return found


def lookup_without_database(
    deps: ServiceDeps, owner: str | None, request: RenderRequest
) -> RenderResponse | RenderTarget | None:
    """``lookup``, or None where it would have to read the image's row from the database
    (not in this process's lookup cache): the caller then runs ``lookup`` where waiting on
    the database is fine. For callers that must not block long (the API's event loop)."""
    return _lookup(deps, owner, request, read_database=False)


def _lookup(
    deps: ServiceDeps, owner: str | None, request: RenderRequest, *, read_database: bool
) -> RenderResponse | RenderTarget | None:
    target = authorise(deps, owner, request, read_database=read_database)
    if target is None or isinstance(target, RenderResponse):
        return target
    data = _cached(deps, target.key)
    if data is None:
        return target
    RENDERS.labels("hit").inc()
    return RenderResponse(
        target.etag, target.vary_accept, media_type=_media_type(target, data), data=data
    )


def authorise(
    deps: ServiceDeps, owner: str | None, request: RenderRequest, *, read_database: bool = True
) -> RenderTarget | RenderResponse | None:
    """Signature, options, format and the image's row: the render's cache key, or 304.
    None only with ``read_database`` False, where the row is not cached."""
    options = _authorised_options(deps, request, owner)
    watermark_path, watermark_digest = _watermark(deps, options)
    negotiated = _negotiate(options, request.accepted)
    row = _renderable_row(deps, request.image_id, owner, read_database)
    if row is None:
        return None
    sha256 = row.sha256

    ext = LEGACY if negotiated == LEGACY else ImageFormat(negotiated).extension
    # Whether renders may read the render source changes their bytes, so it is in the key.
    source_tag = f"source-v{render_source.SOURCE_VERSION}" if deps.render.intermediate else ""
    digests = deps.render_runtime.digests
    digest_key = (options, negotiated, watermark_digest + source_tag)
    digest = digests.get(digest_key)
    if digest is None:
        digest = options.cache_digest(negotiated, watermark_digest + source_tag)
        digests.put(digest_key, digest)
    etag = f'"{sha256[:16]}-{digest}"'
    vary = options.format is None
    if etag in request.if_none_match:
        RENDERS.labels("not_modified").inc()
        return RenderResponse(etag, vary, not_modified=True)
    fmt = None if negotiated == LEGACY else ImageFormat(negotiated)
    key = keys.render(sha256, digest, ext)
    return RenderTarget(sha256, options, fmt, watermark_path, key, etag, vary, row.bytes, row.probe)


def make(deps: ServiceDeps, target: RenderTarget) -> RenderResponse:
    """Render once per key in this process (later requests wait, then read the result)."""
    cache = "hit"
    with deps.render_runtime.locks.hold(target.key):
        data = _cached(deps, target.key)  # another request may have rendered it meanwhile
        if data is None:
            data = _render_and_store(deps, target)
            cache = "miss"
    RENDERS.labels(cache).inc()
    return RenderResponse(
        target.etag,
        target.vary_accept,
        media_type=_media_type(target, data),
        data=data,
        cache=cache,
    )


def _authorised_options(
    deps: ServiceDeps, request: RenderRequest, owner: str | None
) -> RenderOptions:
    config = deps.render
    # A request without a key (owner None) is authorised by its signature alone, so it is
    # always checked, even where unsigned renders are allowed for key holders.
    if config.allow_unsigned and owner is not None:
        pairs = [(k, v) for k, v in request.pairs if k != "sig"]
        return parse_options(pairs, request.path_format)
    # A query whose exact bytes were verified before in this process skips parsing them
    # again (HMAC is a pure function of key, message and signature, so the answer is the
    # same); its expiry is checked on every request. Any other bytes, a forged or altered
    # signature included, go through the whole check.
    memo = deps.render_runtime.signed
    memo_key = (request.path, tuple(request.pairs))
    now = time.time()
    known = memo.get(memo_key)
    if known is not None:
        options, expires_at = known
        check_expiry(expires_at, now)
        return options
    accepted = (deps.signing_key, *config.previous_keys)
    options = authorise_render(accepted, request.path, request.pairs, request.path_format, now)
    memo.put(memo_key, (options, render_expiry(request.pairs)))
    return options


def _negotiate(options: RenderOptions, accepted: frozenset[str]) -> str:
    """The output format: as asked, or for format=auto the best the client names: JPEG XL
    (only where Accept names image/jxl and the `jxl` extra is installed), AVIF, WebP, else
    JPEG or PNG (legacy)."""
    if options.format is not None:
        if options.format is ImageFormat.JXL and not jxl.available():
            raise BadOption(
                "format", "a format this server can write (jxl needs imgpipe[jxl])", "jxl"
            )
        return options.format.value
    candidates = ("jxl", "avif", "webp") if jxl.available() else ("avif", "webp")
    for candidate in candidates:
        if f"image/{candidate}" in accepted:
            return candidate
    return LEGACY


def _renderable_row(
    deps: ServiceDeps, image_id: str, owner: str | None, read_database: bool = True
) -> renders.RenderableImage | None:
    """The image's row as a render sees it: 404 for another owner's, a deleted or a
    failed image.

    ``owner`` None: a signed request without an API key, authorised by its signature alone.
    It runs on every request, hit or not, so the row comes from this process's lookup
    cache (services/render_runtime.py) when it was read less than RENDER_LOOKUP_TTL_S ago
    and nothing here changed it since; otherwise from the database (with ``read_database``
    False: None instead).
    """
    lookups = deps.render_runtime.lookups
    if read_database:
        row = lookups.get(image_id, lambda: _read_image(deps, image_id))
    else:
        known, row = lookups.cached(image_id)
        if not known:
            return None
    # Another owner's image and a missing one take the same path and the same cache.
    if row is None or (owner is not None and row.owner != owner):
        raise NotFound(f"No image {image_id}.")
    if row.status == ImageStatus.FAILED.value:
        raise NotFound(f"No image {image_id}.")
    if owner is None:  # keyless: only what moderation lets out (domain/moderation.py)
        check_keyless(row.moderation, deps.moderation.enabled)
    return row


def _read_image(deps: ServiceDeps, image_id: str) -> renders.RenderableImage | None:
    with deps.read_sessions() as session:
        return renders.renderable_image(session, image_id)


def _cached(deps: ServiceDeps, key: str) -> bytes | None:
    try:
        return deps.store.get_bytes(key)
    except NotFound:
        return None


def _render_and_store(deps: ServiceDeps, target: RenderTarget) -> bytes:
    started = time.perf_counter()
    options = target.options
    with contextlib.ExitStack() as files:
        original = _Original(deps, target.sha256, files)
        facts = _facts(deps, target, original)
        planned = plan(options, facts.upright_size)
        width, height = planned.output
        if width * height > deps.render.max_output_pixels:
            raise _too_large(options, (width, height), deps.render.max_output_pixels)
        source_size = (
            render_source.source_for(facts, planned.decode) if deps.render.intermediate else None
        )
        # Fetched before taking a slot, as before: a download holds no render slot.
        pixels_path = original.path() if source_size is None else None
        slots = deps.render_runtime.slots
        with slots.slot(deps.render.max_in_flight), contextlib.ExitStack() as stack:
            pixels_facts = facts
            if source_size is not None:
                pixels_path, pixels_facts = stack.enter_context(
                    _render_source(deps, target.sha256, original, facts, source_size)
                )
            assert pixels_path is not None
            rendered = render(
                pixels_path,
                pixels_facts,
                options,
                target.format,
                target.watermark_path,
                Deadline(deps.process_timeout_s),
                planned=planned,
                render_source=source_size is not None,
            )
    meta = ObjectMeta.public(rendered.format.media_type)
    deps.store.put_bytes(target.key, rendered.data, meta)
    RENDERS_FROM.labels("original" if source_size is None else "source").inc()
    RENDER_SECONDS.observe(time.perf_counter() - started)
    return rendered.data


class _Original:
    """The original as a local file, fetched from the store on first use only (on S3, a
    download of up to 25 MB): a render made from the render source never asks for it."""

    def __init__(self, deps: ServiceDeps, sha256: str, files: contextlib.ExitStack) -> None:
        self._deps, self._sha256, self._files = deps, sha256, files
        self._path: Path | None = None

    def path(self) -> Path:
        if self._path is None:
            key = keys.original(self._sha256)
            self._path = self._files.enter_context(self._deps.store.local_file(key))
        return self._path


def _facts(deps: ServiceDeps, target: RenderTarget, original: _Original) -> ProbeResult:
    """The original's header facts, checked against today's limits: the row's, or (none
    recorded) the original's probe, which is then recorded on the row. A TIFF is always
    probed: its page count, which a lowered MAX_FRAMES may refuse, is read from the file."""
    recorded = target.facts
    try:
        if recorded is not None and recorded.format is not ImageFormat.TIFF:
            check_limits(recorded, target.original_bytes, deps.limits)
            return recorded
        if not deps.probes.holds(target.sha256):
            original.path()  # a missing original is the store's 404, never kept as a refusal
        # Cached: a costly header (a long TIFF directory chain) is read once, not on
        # every render.
        return deps.probes.get(target.sha256, lambda: _probe_original(deps, target, original))
    except ImgpipeError as exc:
        if exc.retryable or isinstance(exc, NotFound):
            raise
        # The original no longer passes validation (a limit was lowered, or it was
        # refused later): it is not served in any form.
        raise NotFound("This image cannot be rendered.") from exc


def _probe_original(deps: ServiceDeps, target: RenderTarget, original: _Original) -> ProbeResult:
    facts = probe(original.path(), deps.limits)
    if target.facts is None:
        _record_facts(deps, target.sha256, facts)
    return facts


def _record_facts(deps: ServiceDeps, sha256: str, facts: ProbeResult) -> None:
    """Back-fill the facts of an image uploaded before they were recorded, so its next
    cold render (in any process) reads no original. A cache, so never fatal."""
    try:
        with deps.sessions.begin() as session:
            renders.record_probe(session, sha256, facts)
    except Exception:
        log.warning("probe facts not recorded", exc_info=True)


@contextmanager
def _render_source(
    deps: ServiceDeps,
    sha256: str,
    original: _Original,
    facts: ProbeResult,
    size: tuple[int, int],
) -> Iterator[tuple[Path, ProbeResult]]:
    """The image's render source as a local file, made from the original first when it
    is missing or damaged (once per process at a time: later renders wait for it)."""
    large = size != render_source.source_size(facts)  # the large copy has its own key
    key = keys.render_source(sha256, render_source.SOURCE_VERSION, large=large)
    with contextlib.ExitStack() as files:
        with deps.render_runtime.locks.hold(key):
            opened = _open_usable_source(deps, key, size, files)
            if opened is None:
                deps.store.put_bytes(
                    key,
                    render_source.make_source(original.path(), facts, size),
                    ObjectMeta.render_source(),
                )
                RENDER_SOURCES_MADE.labels("large" if large else "base", "render").inc()
                path = files.enter_context(deps.store.local_file(key))
                opened = (path, probe(path, deps.limits))
        yield opened


def _open_usable_source(
    deps: ServiceDeps, key: str, size: tuple[int, int], files: contextlib.ExitStack
) -> tuple[Path, ProbeResult] | None:
    """The stored copy, opened in ``files`` and probed, or None: missing, or damaged (cut
    short, or not the size this version makes)."""
    try:
        path = files.enter_context(deps.store.local_file(key))
        source = probe(path, deps.limits)
    except NotFound:
        return None
    except ImgpipeError as exc:
        if exc.retryable:
            raise
        return None
    return (path, source) if source.upright_size == size else None


def _media_type(target: RenderTarget, data: bytes) -> str:
    """The render's type: the format its key names; for ``legacy`` (JPEG or PNG, the
    engine's choice by the result's alpha) the one of the two it came out as."""
    return output_format(target.format, data[:8]).media_type


# --- watermarks -------------------------------------------------------------------------


def _too_large(options: RenderOptions, output: tuple[int, int], limit: int) -> BadOption:
    """Name what the caller asked for (w=8000), and why it is too much: the output
    size comes from the image, which the caller may not know (never upscaled, so w=8000
    on a 6000x4000 photo makes 6000x4000)."""
    asked = {"w": options.width, "h": options.height}
    given = {name: value for name, value in asked.items() if value is not None}
    width, height = output
    return BadOption(
        "w" if options.width is not None or options.height is None else "h",
        f"a size whose output has at most {limit} pixels (RENDER_MAX_PIXELS); "
        f"this image would come out {width}x{height}",
        "&".join(f"{name}={value}" for name, value in given.items()) or None,
    )


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
    digests = deps.render_runtime.watermark_digests
    digest = digests.get(memo)
    if digest is None:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        digests.put(memo, digest)
    return path, digest
