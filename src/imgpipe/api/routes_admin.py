"""/v1/admin: endpoints for keys made with ``imgpipe keys create --admin`` only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from imgpipe.api.auth import require_admin
from imgpipe.api.deps import service_deps
from imgpipe.domain.access import Principal
from imgpipe.domain.errors import NotFound
from imgpipe.services import dead_letters, jobs, keys
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


class AttemptOut(BaseModel):
    attempt: int
    worker: str
    variants: list[str]
    claimed_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error_code: str | None
    error: str | None


class DeadLetterOut(BaseModel):
    id: str
    image_id: str
    owner: str
    variants: list[str]
    attempts: int
    error_code: str
    error: str
    created_at: datetime
    retried_at: datetime | None
    history: list[AttemptOut]


class DeadLetterListOut(BaseModel):
    items: list[DeadLetterOut]


def _dead_letter_out(entry: dead_letters.DeadLetterView) -> DeadLetterOut:
    return DeadLetterOut.model_validate(entry, from_attributes=True)


@router.get("/dead-letters", response_model=DeadLetterListOut)
def list_dead_letters(
    deps: Deps,
    admin: Admin,
    include_retried: Annotated[bool, Query(description="Also the ones already retried.")] = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> DeadLetterListOut:
    """Jobs whose variants ran out of attempts, newest first, with every attempt made."""
    entries = dead_letters.list_dead_letters(deps.read_sessions, include_retried, limit)
    return DeadLetterListOut(items=[_dead_letter_out(e) for e in entries])


@router.post("/dead-letters/{dead_letter_id}/retry", response_model=DeadLetterOut, status_code=202)
def retry_dead_letter(deps: Deps, admin: Admin, dead_letter_id: str) -> DeadLetterOut:
    """Give the job's failed variants fresh attempts and hand it to the workers."""
    result = dead_letters.retry(deps.sessions, [dead_letter_id], enqueued=True)
    if not result.retried:
        raise NotFound(f"No dead letter {dead_letter_id}.")
    for image_id in result.image_ids:
        jobs.hand_out(deps, image_id)
    return _dead_letter_out(result.retried[0])
