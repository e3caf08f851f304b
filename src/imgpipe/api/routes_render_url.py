"""POST /v1/images/{id}/render-url: a signed render URL for one of the caller's images.

The key holder asks, the server signs (services/render_urls.py); the web page's render
builder uses it so that the signing key never leaves the server.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from imgpipe.api.deps import api_base_url, current_owner, service_deps
from imgpipe.services import render_urls
from imgpipe.services.deps import ServiceDeps

router = APIRouter(tags=["render"])

Deps = Annotated[ServiceDeps, Depends(service_deps)]
Owner = Annotated[str, Depends(current_owner)]


class RenderUrlIn(BaseModel):
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description=(
            "Render options as GET /v1/render takes them (w, h, fit, crop, format, q, ...), "
            'for example {"w": 400, "h": 300, "fit": "cover", "format": "webp"}.'
        ),
        max_length=32,
    )
    expires_in: int = Field(
        default=render_urls.DEFAULT_EXPIRES_IN_S,
        ge=1,
        le=render_urls.MAX_EXPIRES_IN_S,
        description="Seconds until the URL stops working.",
    )


class RenderUrlOut(BaseModel):
    url: str = Field(description="The signed render URL, absolute; it needs no API key.")
    path: str = Field(description="The same URL without scheme and host.")
    expires_at: datetime


@router.post("/v1/images/{image_id}/render-url", response_model=RenderUrlOut)
def make_render_url(
    image_id: str, body: RenderUrlIn, request: Request, deps: Deps, owner: Owner
) -> RenderUrlOut:
    """Sign a render URL for one of your images; 404 for anyone else's."""
    signed = render_urls.signed_render_url(deps, owner, image_id, body.options, body.expires_in)
    return RenderUrlOut(
        url=api_base_url(request) + signed.path,
        path=signed.path,
        expires_at=datetime.fromtimestamp(signed.expires_at, UTC),
    )
