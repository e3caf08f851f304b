"""/v1/admin moderation: the review queue, decisions, and any owner's variant for review.

Admin keys only (``imgpipe keys create --admin``), acting across owners like every
``/v1/admin`` route.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from imgpipe.api.auth import require_admin
from imgpipe.api.deps import service_deps
from imgpipe.api.head import is_head
from imgpipe.api.schemas import ImageOut, ModerationOut
from imgpipe.domain.access import Principal
from imgpipe.domain.moderation import Decision, ModerationStatus
from imgpipe.services import moderation
from imgpipe.services.deps import ServiceDeps

router = APIRouter(prefix="/v1/admin", tags=["admin"])

Deps = Annotated[ServiceDeps, Depends(service_deps)]
Admin = Annotated[Principal, Depends(require_admin)]

PRIVATE = "private, max-age=0, no-store"


class ReviewItemOut(BaseModel):
    owner: str
    thumbnail: str | None = Field(
        description="An admin URL of the image's smallest done variant (needs the key)."
    )
    image: ImageOut


class ReviewPageOut(BaseModel):
    items: list[ReviewItemOut]
    next_cursor: str | None


class DecisionIn(BaseModel):
    decision: Literal["approve", "reject"]
    reason: str | None = Field(default=None, max_length=2000)


class DecisionOut(BaseModel):
    status: str
    previous_status: str | None
    decided_by: str
    reason: str | None
    created_at: datetime


class ModerationHistoryOut(BaseModel):
    image_id: str
    moderation: ModerationOut
    decisions: list[DecisionOut]


@router.get("/moderation", response_model=ReviewPageOut)
def review_queue(
    deps: Deps,
    admin: Admin,
    status: Annotated[
        Literal["review", "rejected", "approved", "pending", "error"],
        Query(description="Which images: the review queue by default."),
    ] = "review",
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReviewPageOut:
    """Every owner's images with this moderation status, oldest first."""
    page = moderation.review_queue(deps, ModerationStatus(status), limit, cursor or None)
    return ReviewPageOut(
        items=[
            ReviewItemOut(owner=i.owner, thumbnail=i.thumbnail, image=ImageOut.of(i.image))
            for i in page.items
        ],
        next_cursor=page.next_cursor,
    )


@router.post("/images/{image_id}/moderation", response_model=ImageOut)
def decide(image_id: str, body: DecisionIn, deps: Deps, admin: Admin) -> ImageOut:
    """Approve or reject any owner's image; recorded with the key that decided and why."""
    decided_by = f"key:{admin.key_id or 'single-user'} ({admin.owner})"
    view = moderation.decide(deps, image_id, Decision(body.decision), decided_by, body.reason)
    return ImageOut.of(view)


@router.get("/images/{image_id}/moderation", response_model=ModerationHistoryOut)
def moderation_history(image_id: str, deps: Deps, admin: Admin) -> ModerationHistoryOut:
    """The image's moderation and every decision on it (the model's and admins'), oldest
    first."""
    current, decisions = moderation.history(deps, image_id)
    return ModerationHistoryOut(
        image_id=image_id,
        moderation=ModerationOut.model_validate(current),
        decisions=[
            DecisionOut(
                status=d.status,
                previous_status=d.previous_status,
                decided_by=d.decided_by,
                reason=d.reason,
                created_at=d.created_at,
            )
            for d in decisions
        ],
    )


@router.get("/images/{image_id}/variants/{name}", response_class=Response)
def admin_variant(image_id: str, name: str, request: Request, deps: Deps, admin: Admin) -> Response:
    """Any owner's variant, whatever its moderation, for review; never cached."""
    stored = moderation.open_variant_as_admin(deps, image_id, name)
    headers = {"ETag": stored.etag, "Cache-Control": PRIVATE, "Content-Length": str(stored.size)}
    if is_head(request.scope):
        close = getattr(stored.chunks, "close", None)
        if close is not None:
            close()
        return Response(media_type=stored.media_type, headers=headers)
    data = b"".join(stored.chunks)
    return Response(data, media_type=stored.media_type, headers=headers)
