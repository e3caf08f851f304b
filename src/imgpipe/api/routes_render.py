"""GET /v1/render/{id}[.ext]: a thin route over services.render.

Served by ``RenderRoute``, plain ASGI ahead of FastAPI's routing (the declared route
documents it). The lookup (signature, options, the image's row, the cache read: a hit
ends there) runs on the event loop where it cannot block (a keyless request, a local
store, the row cached), else on a small, adaptive number of threads; a miss's render runs
on the shared pool. Why, with figures: docs/render.md, "Performance".
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from imgpipe.api import ratelimit
from imgpipe.api.deps import current_owner, current_principal, service_deps
from imgpipe.api.http_headers import accepted_types, entity_tags
from imgpipe.domain.ratelimit import InProcessLimiter
from imgpipe.domain.render_options import split_render_path
from imgpipe.domain.signing import RENDER_PATH_PREFIX
from imgpipe.services import render
from imgpipe.services.deps import ServiceDeps

router = APIRouter(tags=["render"])


def render_owner(request: Request) -> str | None:
    """Whose images this request may render.

    A signed URL is its own authorisation, so an `<img>` tag or a CDN can fetch it with no
    API key: the signature proves the holder of the signing key asked for exactly this
    render (imgproxy's and Cloudinary's model). Such a request is not scoped to an owner
    (None). A request that does send a key is scoped to the key's owner as everywhere
    else: another owner's image is 404. Unsigned renders (RENDER_UNSIGNED) always need
    the key where auth is on.
    """
    signed = "sig=" in request.scope.get("query_string", b"").decode("latin-1")
    if signed and "authorization" not in request.headers:
        ratelimit.check_keyless(request, service_deps(request))
        return None
    return current_owner(current_principal(request))


IMMUTABLE = "public, max-age=31536000, immutable"
# An unsigned render made with a key (RENDER_UNSIGNED) needed that key: no shared cache.
PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"

_OPTIONS_DOC = (
    "Options (docs/render.md): w, h, fit (inside, cover, contain, fill), crop (centre, "
    "attention, entropy, face), fp=x,y, format (auto, webp, avif, jpeg, png), q, blur, "
    "sharpen, rotate (90, 180, 270), flip (h, v, hv), bri, con, gray, "
    "wm=NAME[,POSITION[,OPACITY]], exp, sig."
)


ROUTE_PATH = "/v1/render/{name}"


class LookupThreads:
    """How many render lookups may run on worker threads at once in this process.

    A lookup with a local database and store is a few hundred microseconds of Python
    between short system calls. More than two at once only fight over the GIL, and the
    event loop that parses and writes every response waits behind them: with anyio's 40
    threads, 16 connections of cache hits gave about 650 requests/s and a p99 near 75 ms;
    with two threads, about 1,000 requests/s and 22 ms (bench/render_bench.py). A lookup
    that waits on a network (S3, a remote database) needs many threads instead, or
    requests queue behind a few idle ones. So the limit follows the fastest of the last
    ``WINDOW`` lookups, a floor that contention for the GIL cannot raise: below
    ``NETWORK_S``, ``LOCAL``; otherwise ``REMOTE``.
    """

    LOCAL = 2
    REMOTE = 32
    NETWORK_S = 0.002
    WINDOW = 64

    def __init__(self) -> None:
        self._limiter: anyio.CapacityLimiter | None = None  # made in the event loop
        self._recent: deque[float] = deque(maxlen=self.WINDOW)

    @property
    def limit(self) -> int:
        return int(self.limiter().total_tokens)

    def limiter(self) -> anyio.CapacityLimiter:
        """The limiter (made on first use, in the event loop that will use it)."""
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.LOCAL)
        return self._limiter

    def observe(self, seconds: float) -> None:
        """Record how long one lookup took; in the event loop (it may change the limit)."""
        self._recent.append(seconds)
        if len(self._recent) == self.WINDOW:
            fastest = min(self._recent)
            self.limiter().total_tokens = self.LOCAL if fastest < self.NETWORK_S else self.REMOTE

    async def run(
        self, request: Request, render_request: render.RenderRequest
    ) -> render.RenderResponse | render.RenderTarget:
        deps = service_deps(request)
        owner: str | _Unknown | None = _UNKNOWN
        if _cheap_owner(request, deps):
            # A signed URL without a key, rate-limited in this process: no I/O to know
            # whose it is. Where the store is a local disk and the image's row is in the
            # lookup cache, the whole lookup is tens of microseconds of CPU and a small
            # file read: done here, it saves the hand-off to a thread, which costs more
            # than the lookup (docs/render.md, "Performance").
            owner = render_owner(request)
            if deps.render_runtime.local_reads:
                inline = render.lookup_without_database(deps, owner, render_request)
                if inline is not None:
                    return inline
        found, seconds = await anyio.to_thread.run_sync(
            _lookup, request, render_request, owner, limiter=self.limiter()
        )
        # A 304 is answered without reading storage: it says nothing about its latency.
        if not (isinstance(found, render.RenderResponse) and found.not_modified):
            self.observe(seconds)
        return found


class _Unknown:
    """Whose request it is has not been decided yet (it may need the database)."""


_UNKNOWN = _Unknown()


def _cheap_owner(request: Request, deps: ServiceDeps) -> bool:
    """Whether ``render_owner`` needs no I/O: a signed request without a key (no API key
    to look up) whose rate limit is counted in this process (not in Redis)."""
    signed = "sig=" in request.scope.get("query_string", b"").decode("latin-1")
    keyless = signed and "authorization" not in request.headers
    return keyless and isinstance(deps.access.limiter, InProcessLimiter)


def _lookup(
    request: Request, render_request: render.RenderRequest, owner: str | _Unknown | None
) -> tuple[render.RenderResponse | render.RenderTarget, float]:
    started = time.perf_counter()
    if isinstance(owner, _Unknown):
        owner = render_owner(request)
    found = render.lookup(service_deps(request), owner, render_request)
    return found, time.perf_counter() - started


LOOKUPS = LookupThreads()


@router.get(
    ROUTE_PATH,
    response_class=Response,
    responses={200: {"content": {"image/webp": {}, "image/avif": {}, "image/jpeg": {}}}},
    description=_OPTIONS_DOC,
)
async def render_image(name: str, request: Request) -> Response:
    """An on-demand transform of one image, HMAC-signed (`imgpipe sign`), cached."""
    # Served by RenderRoute below, before FastAPI's routing; this declaration documents it
    # (OpenAPI) and answers should the plain route not be installed.
    return await render_response(request, name)


async def render_response(request: Request, name: str) -> Response:
    path = RENDER_PATH_PREFIX + name
    image_id, path_format = split_render_path(path)
    query = request.scope.get("query_string", b"").decode("latin-1")
    render_request = render.RenderRequest(
        image_id=image_id,
        path=path,
        pairs=parse_qsl(query, keep_blank_values=True),
        path_format=path_format,
        accepted=accepted_types(request.headers.get("accept", "")),
        if_none_match=entity_tags(request.headers.get("if-none-match")),
    )
    found = await LOOKUPS.run(request, render_request)
    if isinstance(found, render.RenderTarget):  # a miss: render on the shared pool
        found = await run_in_threadpool(render.make, service_deps(request), found)
    # A signed URL authorises itself (whoever holds it may have the render), so a CDN may
    # keep it for everyone; anything else that came with a key is that key's.
    keyed = "sig=" not in query and "authorization" in request.headers
    headers = {"ETag": found.etag, "Cache-Control": PRIVATE_IMMUTABLE if keyed else IMMUTABLE}
    if found.vary_accept:
        headers["Vary"] = "Accept"
    if found.not_modified:
        return Response(status_code=304, headers=headers)
    headers["X-Render-Cache"] = found.cache
    return Response(found.data, media_type=found.media_type, headers=headers)


class RenderRoute:
    """``GET /v1/render/{name}`` as plain ASGI, ahead of FastAPI's routing.

    A cache hit's use case is tens of microseconds; FastAPI's router (its included
    routers tried in turn), its exception and exit-stack middleware and its request
    handling cost several times that, so a hit served through them ran at a tenth of
    what a plain handler returning the same file manages (docs/render.md, "Performance"). This
    middleware sits inside the app's own (request timing, HEAD as GET, rate-limit
    headers), answers the render path itself with the same function the declared route
    calls, and turns an error into the response the app's exception handlers give it.
    Every other request goes on to FastAPI.
    """

    def __init__(self, app: ASGIApp, owner: Starlette) -> None:
        self.app = app
        self._owner = owner  # the FastAPI app, whose exception handlers answer errors
        # The declared route, which the request timing labels requests by.
        self._route = next(r for r in router.routes if getattr(r, "path", None) == ROUTE_PATH)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = _render_name(scope)
        if name is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route
        request = Request(scope, receive)
        try:
            response = await render_response(request, name)
        except Exception as exc:
            handler = _handler_for(self._owner.exception_handlers, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
        await response(scope, receive, send)


def _render_name(scope: Scope) -> str | None:
    """The ``{name}`` of a GET to the render route, or None for any other request."""
    if scope["type"] != "http" or scope["method"] != "GET":
        return None
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not path.startswith(RENDER_PATH_PREFIX):
        return None
    name = path[len(RENDER_PATH_PREFIX) :]
    return name if name and "/" not in name else None


def _handler_for(handlers: Mapping[Any, Callable[..., Any]], exc: Exception) -> Any:
    """The app's handler for ``exc``, chosen as Starlette chooses: the nearest class."""
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None
