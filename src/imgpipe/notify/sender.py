"""Send one signed webhook to the address the egress check approved, and time it.

The name is resolved once, checked, and the connection goes to that address (``Host``
and TLS SNI still carry the name, so virtual hosting and certificates work). Redirects
are never followed: a 3xx is a failed attempt, as with Stripe. Environment proxies are
ignored, so nothing can route around the check.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from imgpipe import __version__
from imgpipe.domain.webhooks import BadCallbackUrl
from imgpipe.notify.egress import AllowList, Resolver, Target, check_url, system_resolver

USER_AGENT = f"imgpipe-webhooks/{__version__}"


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: int


def send(
    url: str,
    body: bytes,
    headers: dict[str, str],
    allow: AllowList,
    timeout_s: float,
    resolve: Resolver = system_resolver,
) -> Attempt:
    started = time.perf_counter()

    def done(ok: bool, status: int | None, error: str | None) -> Attempt:
        return Attempt(ok, status, error, int((time.perf_counter() - started) * 1000))

    try:
        target = check_url(url, allow, resolve)
    except BadCallbackUrl as exc:
        return done(False, None, f"refused: {exc.detail}")
    request_headers = {
        **headers,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Host": _host_header(url),
    }
    extensions = {}
    if target.scheme == "https" and not target.host_is_address:
        extensions["sni_hostname"] = target.host
    try:
        with (
            httpx.Client(follow_redirects=False, timeout=timeout_s, trust_env=False) as client,
            client.stream(
                "POST",
                _pinned_url(target),
                content=body,
                headers=request_headers,
                extensions=extensions,
            ) as response,
        ):
            status = response.status_code
            if 200 <= status < 300:
                return done(True, status, None)
            if 300 <= status < 400:
                where = response.headers.get("location", "")[:200]
                return done(False, status, f"redirect to {where!r} not followed")
            return done(False, status, f"HTTP {status}")
    except httpx.TimeoutException:
        return done(False, None, f"timed out after {timeout_s:g} s")
    except httpx.HTTPError as exc:
        return done(False, None, f"{type(exc).__name__}: {exc}"[:500])


def _host_header(url: str) -> str:
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def _pinned_url(target: Target) -> str:
    """The URL with its host replaced by the checked address."""
    parts = urlsplit(target.url)
    address = target.addresses[0].split("%", 1)[0]
    host = f"[{address}]" if ":" in address else address
    return urlunsplit((parts.scheme, f"{host}:{target.port}", parts.path or "/", parts.query, ""))
