"""GET /docs: Swagger UI from this origin, so the API reference works with no internet.

FastAPI's own /docs loads Swagger UI from a CDN: offline, or behind a proxy that blocks
it, the page is blank. The files come instead from the ``fastapi-offline`` package (MIT;
it ships Swagger UI 5, which reads the OpenAPI 3.1 FastAPI writes; Swagger UI 4, as in
``swagger-ui-bundle``, refuses it) and are served here by exact name only, under a
Content-Security-Policy that names no other origin. Only the package's files are used,
not its app class, whose page starts Swagger UI with an inline script. Here the few
lines that start it are a file of their own (``_INIT``). ReDoc is not offered: one
reference page is enough.

Cache: as for the web page, the HTML names each file with ``?v=<content hash>``; a
request with the current hash may be cached for a year, anything else revalidates.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from imgpipe.api.static_files import StaticFile, respond, security_headers
from imgpipe.domain.errors import NotFound

router = APIRouter(include_in_schema=False, tags=["docs"])

DOCS_PATH = "/docs"
ASSETS_PATH = "/docs/assets"
OPENAPI_PATH = "/openapi.json"

# Swagger UI sets styles through the DOM (allowed) and never evaluates strings, so the
# policy is as strict as the web page's; images are its own SVG icons as data: URLs.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
_SECURITY_HEADERS = security_headers(CONTENT_SECURITY_POLICY)

# validatorUrl null: Swagger UI would otherwise send the schema to validator.swagger.io.
_INIT = f"""\
window.ui = SwaggerUIBundle({{
  url: "{OPENAPI_PATH}",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
  layout: "BaseLayout",
}});
"""

_PACKAGED = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
}
_INIT_NAME = "init.js"


@cache
def _assets() -> dict[str, StaticFile]:
    folder = files("fastapi_offline") / "static"
    found = {
        name: StaticFile((folder / name).read_bytes(), kind) for name, kind in _PACKAGED.items()
    }
    found[_INIT_NAME] = StaticFile(_INIT.encode("utf-8"), "text/javascript; charset=utf-8")
    return found


def _url(name: str) -> str:
    return f"{ASSETS_PATH}/{name}?v={_assets()[name].version}"


@cache
def _page() -> StaticFile:
    html = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>imgpipe API reference</title>
  <link rel="icon" href="data:,">
  <link rel="stylesheet" href="{_url("swagger-ui.css")}">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="{_url("swagger-ui-bundle.js")}"></script>
  <script src="{_url(_INIT_NAME)}"></script>
  <noscript>This page needs JavaScript; the schema itself is at
    <a href="{OPENAPI_PATH}">{OPENAPI_PATH}</a>.</noscript>
</body>
</html>
"""
    return StaticFile(html.encode("utf-8"), "text/html; charset=utf-8")


@router.get(DOCS_PATH)
def docs_page(request: Request) -> Response:
    """The OpenAPI reference (Swagger UI) for /openapi.json."""
    return respond(request, _page(), _SECURITY_HEADERS)


@router.get(ASSETS_PATH + "/{name}")
def docs_asset(
    name: str, request: Request, v: Annotated[str | None, Query(max_length=64)] = None
) -> Response:
    """Swagger UI's script and stylesheet, by exact name only."""
    asset = _assets().get(name)
    if asset is None:
        raise NotFound("There is no such file; the API reference is at /docs.")
    return respond(request, asset, _SECURITY_HEADERS, pinned=v == asset.version)
