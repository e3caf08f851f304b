"""Direct-to-storage uploads: announce, (receive, on local storage), complete."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from imgpipe.api import ratelimit
from imgpipe.api.deps import (
    api_base_url,
    current_owner,
    current_principal,
    location_of,
    service_deps,
    staging_dir,
)
from imgpipe.api.schemas import ImageOut
from imgpipe.api.upload import receive_body
from imgpipe.domain.access import Principal
from imgpipe.services import direct
from imgpipe.services.deps import ServiceDeps

router = APIRouter(tags=["uploads"])

Deps = Annotated[ServiceDeps, Depends(service_deps)]
Owner = Annotated[str, Depends(current_owner)]
Caller = Annotated[Principal, Depends(current_principal)]


class UploadIn(BaseModel):
    filename: str = Field(min_length=1, max_length=500)
    content_type: str | None = Field(default=None, max_length=200)
    bytes: int = Field(gt=0)


class UploadTarget(BaseModel):
    method: str
    url: str
    headers: dict[str, str]
    fields: dict[str, str]
    expires_at: datetime


class UploadOut(BaseModel):
    image_id: str
    upload: UploadTarget


@router.post("/v1/uploads", status_code=201, response_model=UploadOut)
def announce_upload(body: UploadIn, request: Request, deps: Deps, owner: Owner) -> UploadOut:
    """Get a form to upload a large file straight to storage, then call ``complete``."""
    ticket = direct.announce(
        deps, owner, body.filename, body.content_type, body.bytes, api_base_url(request)
    )
    target = UploadTarget(
        method=ticket.method,
        url=ticket.url,
        headers=ticket.headers,
        fields=ticket.fields,
        expires_at=ticket.expires_at,
    )
    return UploadOut(image_id=ticket.image_id, upload=target)


@router.put("/v1/uploads/{image_id}/content", status_code=204, response_class=Response)
async def receive_upload_content(
    image_id: str,
    request: Request,
    deps: Deps,
    exp: Annotated[int, Query()],
    sig: Annotated[str, Query(max_length=200)],
) -> Response:
    """The signed upload URL on local storage: the raw file as the request body."""
    ratelimit.check_keyless(request, deps)
    direct.check_upload_signature(deps, image_id, exp, sig)
    staged = await receive_body(
        request.headers.get("content-length"),
        request.stream(),
        staging_dir(request),
        deps.limits.max_upload_bytes,
    )
    try:
        await run_in_threadpool(direct.receive, deps, image_id, staged)
    finally:
        staged.path.unlink(missing_ok=True)
    return Response(status_code=204)


@router.post("/v1/images/{image_id}/complete", status_code=202, response_model=ImageOut)
def complete_upload(
    image_id: str, request: Request, response: Response, deps: Deps, caller: Caller
) -> ImageOut:
    """Validate the uploaded bytes like any upload, store the original, enqueue.

    Webhooks for a direct upload go to the key's default callback URL."""
    view = direct.complete(deps, image_id, caller.owner, caller.callback_url)
    response.headers["Location"] = location_of(request, f"/v1/images/{view.id}")
    return ImageOut.of(view)
