"""Serving the few files the package ships (the web page, the API reference), one way.

Each page names its files with ``?v=<content hash>``: a request carrying the current hash
may be cached for a year, anything else (and the page itself) revalidates through its
``ETag``. Every answer carries the page's security headers (its Content-Security-Policy
and friends), a 304 included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from fastapi import Request, Response

REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"


def security_headers(content_security_policy: str) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    media_type: str
    version: str = field(init=False)  # the first 16 hex digits of the body's sha256

    def __post_init__(self) -> None:
        object.__setattr__(self, "version", hashlib.sha256(self.body).hexdigest()[:16])

    @property
    def etag(self) -> str:
        return f'"{self.version}"'


def respond(
    request: Request, file: StaticFile, headers: Mapping[str, str], *, pinned: bool = False
) -> Response:
    """``file``, or 304 when the client holds it; ``pinned``: the URL named its version,
    so it may be cached for good."""
    all_headers = {
        **headers,
        "ETag": file.etag,
        "Cache-Control": IMMUTABLE if pinned else REVALIDATE,
    }
    if request.headers.get("if-none-match") == file.etag:
        return Response(status_code=304, headers=all_headers)
    return Response(file.body, media_type=file.media_type, headers=all_headers)
