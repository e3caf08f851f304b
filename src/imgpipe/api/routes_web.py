"""GET /: the web page. One HTML file, one script and one stylesheet shipped in the package
(``api/web/``), no build step.

The page is static: everything it shows comes from the same /v1 API any client calls, with
the key the user types (kept in the tab's sessionStorage). So these routes need no key,
count against no rate limit, and expose nothing but these files. Only names in
``_ASSETS`` are served, so no path can reach any other file.

The format hints (the accepted formats, the file picker's ``accept`` list) are written
into the HTML once, from the format registry (domain/formats.py).

Cache: the HTML names each asset with ``?v=<content hash>``; a request carrying the current
hash may be cached for a year, anything else (and the HTML itself) is revalidated through
its ``ETag``. Every response carries a Content-Security-Policy that allows scripts and
styles from this origin only (no inline script or style), and images from this origin,
``blob:`` (variants fetched with the key) and ``data:``.
"""

from __future__ import annotations

from functools import cache
from html import escape
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from imgpipe.api.static_files import StaticFile, respond, security_headers
from imgpipe.domain.errors import NotFound
from imgpipe.domain.formats import accepted_formats, upload_extensions

router = APIRouter(include_in_schema=False, tags=["web"])

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob: data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
_SECURITY_HEADERS = security_headers(CONTENT_SECURITY_POLICY)

_PAGE = "index.html"
_ASSETS = {
    "app.js": "text/javascript; charset=utf-8",
    "review.js": "text/javascript; charset=utf-8",  # the admin's review queue
    "app.css": "text/css; charset=utf-8",
}


def _read(name: str, media_type: str) -> StaticFile:
    return StaticFile((files("imgpipe.api") / "web" / name).read_bytes(), media_type)


@cache
def _assets() -> dict[str, StaticFile]:
    return {name: _read(name, media_type) for name, media_type in _ASSETS.items()}


@cache
def _page() -> StaticFile:
    """The HTML, with each asset reference pinned to the asset's content hash."""
    html = (files("imgpipe.api") / "web" / _PAGE).read_text("utf-8")
    for placeholder, value in _registry_text().items():
        if placeholder not in html:
            raise RuntimeError(f"{_PAGE} does not hold {placeholder}")
        html = html.replace(placeholder, escape(value))
    for name, asset in _assets().items():
        reference = f'"/static/{name}"'
        if reference not in html:
            raise RuntimeError(f"{_PAGE} does not reference /static/{name}")
        html = html.replace(reference, f'"/static/{name}?v={asset.version}"')
    return StaticFile(html.encode("utf-8"), "text/html; charset=utf-8")


def _registry_text() -> dict[str, str]:
    """The page's format hints, written into the HTML from the format registry (the page
    stays static for the browser: no inline script, no extra request)."""
    return {
        "{{accepted_formats}}": accepted_formats(),
        # image/* alone would grey out .dng, .cr2 and the like in some file pickers.
        "{{accept}}": ",".join(["image/*", *upload_extensions()]),
    }


@router.api_route("/", methods=["GET", "HEAD"])
def web_page(request: Request) -> Response:
    """The web page: upload images, follow their status, see their variants."""
    return respond(request, _page(), _SECURITY_HEADERS)


@router.api_route("/static/{name}", methods=["GET", "HEAD"])
def web_asset(
    name: str, request: Request, v: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    """The page's script and stylesheet, by exact name only."""
    asset = _assets().get(name)
    if asset is None:
        raise NotFound("There is no such file; the web page is at /.")
    return respond(request, asset, _SECURITY_HEADERS, pinned=v == asset.version)
