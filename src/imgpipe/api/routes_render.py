"""GET /v1/render/{id}[.ext]: a thin route over services.render."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response

from imgpipe.api.deps import current_owner, current_principal, service_deps
from imgpipe.domain.render_options import split_render_path
from imgpipe.domain.signing import RENDER_PATH_PREFIX
from imgpipe.services import render
from imgpipe.services.deps import ServiceDeps

router = APIRouter(tags=["render"])

Deps = Annotated[ServiceDeps, Depends(service_deps)]


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
        return None
    return current_owner(current_principal(request))


Owner = Annotated[str | None, Depends(render_owner)]

IMMUTABLE = "public, max-age=31536000, immutable"

_OPTIONS_DOC = (
    "Options (docs/render.md): w, h, fit (inside, cover, contain, fill), crop (centre, "
    "attention, entropy, face), fp=x,y, format (auto, webp, avif, jpeg, png), q, blur, "
    "sharpen, rotate (90, 180, 270), flip (h, v, hv), bri, con, gray, "
    "wm=NAME[,POSITION[,OPACITY]], exp, sig."
)


@router.get(
    "/v1/render/{name}",
    response_class=Response,
    responses={200: {"content": {"image/webp": {}, "image/avif": {}, "image/jpeg": {}}}},
    description=_OPTIONS_DOC,
)
def render_image(name: str, request: Request, deps: Deps, owner: Owner) -> Response:
    """An on-demand transform of one image, HMAC-signed (`imgpipe sign`), cached."""
    path = RENDER_PATH_PREFIX + name
    image_id, path_format = split_render_path(path)
    query = request.scope.get("query_string", b"").decode("latin-1")
    result = render.render_image(
        deps,
        owner,
        render.RenderRequest(
            image_id=image_id,
            path=path,
            pairs=parse_qsl(query, keep_blank_values=True),
            path_format=path_format,
            accept=request.headers.get("accept", ""),
            if_none_match=request.headers.get("if-none-match"),
        ),
    )
    headers = {"ETag": result.etag, "Cache-Control": IMMUTABLE}
    if result.vary_accept:
        headers["Vary"] = "Accept"
    if result.not_modified:
        return Response(status_code=304, headers=headers)
    headers["X-Render-Cache"] = result.cache
    return Response(result.data, media_type=result.media_type, headers=headers)
