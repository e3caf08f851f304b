"""/v1/admin: endpoints for keys made with ``imgpipe keys create --admin`` only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from imgpipe.api.auth import require_admin
from imgpipe.api.deps import service_deps
from imgpipe.api.schemas import ImageOut
from imgpipe.domain.access import Principal
from imgpipe.domain.errors import NotFound
from imgpipe.services import dead_letters, jobs, keys, manage
from imgpipe.services.deps import ServiceDeps

router = APIRouter(prefix="/v1/admin", tags=["admin"])

Deps = Annotated[ServiceDeps, Depends(service_deps)]
Admin = Annotated[Principal, Depends(require_admin)]


class KeyOut(BaseModel):
    id: str
    owner: str
    prefix: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


class KeyListOut(BaseModel):
    items: list[KeyOut]


@router.get("/keys", response_model=KeyListOut)
def list_keys(deps: Deps, admin: Admin) -> KeyListOut:
    """Every API key (never the key itself: only its id and first characters)."""
    return KeyListOut(
        items=[
            KeyOut(
                id=k.id,
                owner=k.owner,
                prefix=k.prefix,
                admin=k.admin,
                created_at=k.created_at,
                revoked_at=k.revoked_at,
            )
            for k in keys.list_keys(deps.sessions)
        ]
    )


class DeadLetterListOut(BaseModel):
    items: list[dead_letters.DeadLetterView]


@router.get("/dead-letters", response_model=DeadLetterListOut)
def list_dead_letters(
    deps: Deps,
    admin: Admin,
    include_retried: Annotated[bool, Query(description="Also the ones already retried.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeadLetterListOut:
    """Jobs whose variants ran out of attempts, newest first, with every attempt made."""
    entries = dead_letters.list_dead_letters(deps.read_sessions, include_retried, limit)
    return DeadLetterListOut(items=entries)


@router.post(
    "/dead-letters/{dead_letter_id}/retry",
    response_model=dead_letters.DeadLetterView,
    status_code=202,
)
def retry_dead_letter(deps: Deps, admin: Admin, dead_letter_id: str) -> dead_letters.DeadLetterView:
    """Give the job's failed variants fresh attempts and hand it to the workers."""
    result = dead_letters.retry(deps.sessions, [dead_letter_id], enqueued=True)
    if not result.retried:
        raise NotFound(f"No dead letter {dead_letter_id}.")
    for image_id in result.image_ids:
        jobs.hand_out(deps, image_id, recover=True)
    return result.retried[0]


@router.post("/images/{image_id}/restore", response_model=ImageOut)
def restore_image(deps: Deps, admin: Admin, image_id: str) -> ImageOut:
    """Undo a DELETE within DELETE_RETENTION_S (any owner's image); 404 after it."""
    return ImageOut.of(manage.restore(deps, image_id))
