"""/v1/images: thin routes that parse, call one service, and shape the answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from imgpipe.api import ratelimit
from imgpipe.api.deps import (
    current_owner,
    current_principal,
    location_of,
    service_deps,
    staging_dir,
)
from imgpipe.api.head import is_head
from imgpipe.api.schemas import ImageOut, ImagePageOut, ReprocessIn, SimilarPageOut
from imgpipe.api.upload import receive_upload
from imgpipe.domain import similarity
from imgpipe.domain.access import Principal
from imgpipe.domain.errors import BadRequest, ImgpipeError
from imgpipe.domain.formats import accepted_formats
from imgpipe.services import delivery, ingest, manage, queries, similar
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.queries import StoredObject
from imgpipe.storage.base import PRIVATE_NO_STORE
from imgpipe.telemetry import metrics

router = APIRouter(prefix="/v1/images", tags=["images"])

Deps = Annotated[ServiceDeps, Depends(service_deps)]
Owner = Annotated[str, Depends(current_owner)]
Caller = Annotated[Principal, Depends(current_principal)]

IMMUTABLE = "public, max-age=31536000, immutable"
# An original is whatever the user sent: a file valid as a GIF may also be valid HTML.
# nosniff stops a browser from reading it as anything but its type, and a sandbox CSP
# keeps any script in it from running with this origin, even opened as a document.
ORIGINAL_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
# A response that needed a key must not be stored by a shared cache (RFC 9111 3.5: a
# cache may reuse a response to a request with Authorization when it is `public`), or it
# would hand it to anyone asking for the same URL without a key.
PRIVATE_IMMUTABLE = "private, max-age=31536000, immutable"

_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": (
                                "The image. Its type is decided by its bytes: "
                                f"{accepted_formats()}; anything else is 415."
                            ),
                        },
                        "profiles": {"type": "string", "description": "comma-separated names"},
                        "callback_url": {"type": "string", "format": "uri"},
                    },
                }
            }
        },
    },
    "parameters": [
        {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "schema": {"type": "string", "maxLength": 255},
            "description": "A retry with the same key and body returns the first response.",
        }
    ],
}


@router.post("", status_code=202, response_model=ImageOut, openapi_extra=_UPLOAD_DOC)
async def upload_image(
    request: Request, response: Response, deps: Deps, owner: Owner, caller: Caller
) -> ImageOut:
    """Upload an image (multipart field ``file``); 202 once the original is durable."""
    try:
        form = await receive_upload(
            request.headers.get("content-type"),
            request.headers.get("content-length"),
            request.stream(),
            staging_dir(request),
            deps.limits.max_upload_bytes,
        )
        try:
            profiles = _profile_list(form.fields.get("profiles"))
            view = await run_in_threadpool(
                ingest.ingest,
                deps,
                form.staged,
                owner,
                profiles,
                form.fields.get("callback_url") or caller.callback_url,
                idempotency_key=request.headers.get("idempotency-key"),
            )
        finally:
            form.staged.path.unlink(missing_ok=True)
    except ImgpipeError as exc:
        metrics.UPLOADS.labels("rejected", exc.code).inc()
        raise
    except ClientDisconnect:
        metrics.UPLOADS.labels("aborted", "client_closed_request").inc()
        raise
    response.headers["Location"] = location_of(request, f"/v1/images/{view.id}")
    return ImageOut.of(view)


@router.get("", response_model=ImagePageOut)
def list_images(
    deps: Deps,
    owner: Owner,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ImagePageOut:
    """The caller's images, newest first; pass ``next_cursor`` back as ``cursor``."""
    return ImagePageOut.of(queries.list_images(deps, owner, limit, cursor or None))


@router.get("/{image_id}", response_model=ImageOut)
def get_image(image_id: str, deps: Deps, owner: Owner) -> ImageOut:
    return ImageOut.of(queries.get_image(deps, image_id, owner))


@router.get("/{image_id}/similar", response_model=SimilarPageOut)
def similar_images(
    image_id: str,
    deps: Deps,
    owner: Owner,
    max_distance: Annotated[
        int, Query(ge=0, le=similarity.MAX_DISTANCE)
    ] = similarity.DEFAULT_MAX_DISTANCE,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> SimilarPageOut:
    """The caller's images whose 64-bit pHash differs from this one's in at most
    ``max_distance`` bits, nearest first."""
    found = similar.similar(deps, image_id, owner, max_distance, limit)
    return SimilarPageOut.of(image_id, max_distance, found)


@router.get("/{image_id}/variants/{name}", response_class=Response)
def get_variant(
    image_id: str,
    name: str,
    request: Request,
    deps: Deps,
    v: Annotated[str | None, Query(max_length=64, description="Signed URL: version.")] = None,
    sig: Annotated[str | None, Query(max_length=128, description="Signed URL: signature.")] = None,
) -> Response:
    """The variant's bytes: with an API key, or with no key through its signed URL
    (``public_url`` in front of the API), which any cache may keep for a year."""
    if sig is not None and "authorization" not in request.headers:
        ratelimit.check_keyless(request, deps)  # no key to count against: the address
        where = delivery.signed_variant(deps, image_id, name, v or "", sig)
        cache_control = IMMUTABLE
    else:
        caller = current_principal(request)
        where = queries.find_variant(deps, image_id, caller.owner, name)
        # Public only in single-user mode, where no key exists and none was needed.
        cache_control = PRIVATE_IMMUTABLE if caller.key_id is not None else IMMUTABLE
    redirect = delivery.redirect_url(deps, where)
    if redirect is not None:
        # A presigned URL is a credential with an expiry: never shared, and cached by the
        # browser for half its life at most, so a cached redirect still leads somewhere.
        max_age = deps.delivery.presign_s // 2
        headers = {"Location": redirect, "Cache-Control": f"private, max-age={max_age}"}
        return Response(status_code=302, headers=headers)
    return _bytes_response(queries.open_found(deps, where), request, cache_control)


@router.get("/{image_id}/original", response_class=Response)
def get_original(image_id: str, request: Request, deps: Deps, owner: Owner) -> Response:
    """The original exactly as uploaded; owner only, never cached by shared caches."""
    stored = queries.open_original(deps, image_id, owner)
    response = _bytes_response(stored, request, PRIVATE_NO_STORE, ORIGINAL_HEADERS)
    # The same headers the object carries in a bucket (storage/base.py ObjectMeta.original).
    response.headers["Content-Disposition"] = "attachment"
    return response


@router.post("/{image_id}/reprocess", status_code=202, response_model=ImageOut)
def reprocess_image(
    image_id: str, deps: Deps, owner: Owner, body: ReprocessIn | None = None
) -> ImageOut:
    profiles = body.profiles if body else None
    return ImageOut.of(manage.reprocess(deps, image_id, owner, profiles or None))


@router.delete("/{image_id}", status_code=204, response_class=Response)
def delete_image(image_id: str, deps: Deps, owner: Owner) -> Response:
    manage.delete(deps, image_id, owner)
    return Response(status_code=204)


def _profile_list(raw: str | None) -> list[str] | None:
    if raw is None or not raw.strip():
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise BadRequest("profiles must be a comma-separated list of profile names.")
    return names


def _bytes_response(
    stored: StoredObject,
    request: Request,
    cache_control: str,
    extra_headers: dict[str, str] | None = None,
) -> Response:
    headers = {"ETag": stored.etag, "Cache-Control": cache_control, **(extra_headers or {})}
    if request.headers.get("if-none-match") == stored.etag:
        _close(stored)
        return Response(status_code=304, headers=headers)
    headers["Content-Length"] = str(stored.size)
    if is_head(request.scope):  # the same headers, without reading the bytes
        _close(stored)
        return Response(media_type=stored.media_type, headers=headers)
    return StreamingResponse(stored.chunks, media_type=stored.media_type, headers=headers)


def _close(stored: StoredObject) -> None:
    close = getattr(stored.chunks, "close", None)
    if close is not None:
        close()
