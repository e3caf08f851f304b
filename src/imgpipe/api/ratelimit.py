"""Per-key rate limits: uploads and every other /v1 call count in separate buckets.

The check runs inside the auth dependency (it needs the key); the decision's
``RateLimit-*`` headers are added to the response by a small middleware, and a refusal
is a 429 ``rate_limited`` problem with ``Retry-After``.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgpipe.api.problems import problem_response
from imgpipe.domain.access import Principal
from imgpipe.domain.errors import RateLimited
from imgpipe.domain.ratelimit import Rate
from imgpipe.services.deps import ServiceDeps

_UPLOAD_PATHS = ("/v1/images", "/v1/uploads")


def is_upload(request: Request) -> bool:
    return request.method == "POST" and request.url.path.rstrip("/") in _UPLOAD_PATHS


def check(request: Request, deps: ServiceDeps, principal: Principal) -> None:
    """Take a token from the caller's bucket, or refuse with 429."""
    access = deps.access
    kind, rate = (
        ("uploads", access.upload_rate) if is_upload(request) else ("requests", access.request_rate)
    )
    bucket = f"{kind}:{principal.key_id or 'single-user'}"
    decision = access.limiter.hit(bucket, rate)
    headers = decision.headers(rate)
    request.state.ratelimit_headers = headers
    if not decision.allowed:
        raise RateLimited(_explain(kind, rate, decision.retry_after_s), headers)


def check_keyless(request: Request, deps: ServiceDeps) -> None:
    """Rate-limit a request that authorises itself (a signed render or upload URL) by the
    client's address: it has no key to count against, and without a bucket a forger could
    make us compute HMACs (and look up images) as fast as the network allows.

    Behind a proxy the address is the proxy's unless the server trusts its
    ``X-Forwarded-For`` (uvicorn's ``--forwarded-allow-ips``).
    """
    access = deps.access
    rate = access.request_rate
    address = request.client.host if request.client else "unknown"
    decision = access.limiter.hit(f"address:{address}", rate)
    headers = decision.headers(rate)
    request.state.ratelimit_headers = headers
    if not decision.allowed:
        raise RateLimited(
            f"This address may make {rate.tokens} request(s) without a key per "
            f"{_unit(rate)}; retry in {decision.retry_after_s} s.",
            headers,
        )


def _unit(rate: Rate) -> str:
    return {1.0: "second", 60.0: "minute", 3600.0: "hour"}.get(rate.period_s, "period")


def _explain(kind: str, rate: Rate, retry_after: int) -> str:
    return (
        f"This key may make {rate.tokens} {kind[:-1]} call(s) per {_unit(rate)}; "
        f"retry in {retry_after} s."
    )


class RateLimitHeaders:
    """Pure ASGI middleware adding the RateLimit-* headers the auth dependency computed
    (kept in the request's state) to whatever response the route gives."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def add_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state = scope.get("state") or {}
                headers: dict[str, str] | None = state.get("ratelimit_headers")
                if headers:
                    message["headers"] = _with_defaults(message.get("headers", ()), headers)
            await send(message)

        await self.app(scope, receive, add_headers)


def _with_defaults(
    raw: Iterable[tuple[bytes, bytes]], defaults: dict[str, str]
) -> list[tuple[bytes, bytes]]:
    """``raw`` plus each of ``defaults`` it does not already have (names compared
    case-insensitively): what MutableHeaders.setdefault does, in one pass."""
    headers = list(raw)
    present = {name.lower() for name, _ in headers}
    for name, value in defaults.items():
        encoded = name.lower().encode("latin-1")
        if encoded not in present:
            headers.append((encoded, value.encode("latin-1")))
    return headers


async def _rate_limited(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RateLimited)
    return problem_response(exc.status, exc.code, exc.title, exc.detail, exc.response_headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RateLimited, _rate_limited)
    app.add_middleware(RateLimitHeaders)
