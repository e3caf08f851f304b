"""/v1/admin: endpoints for keys made with ``imgpipe keys create --admin`` only."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from imgpipe.api.auth import require_admin
from imgpipe.api.deps import service_deps
from imgpipe.domain.access import Principal
from imgpipe.services import keys
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
