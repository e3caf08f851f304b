"""GET /v1/me: who the caller is (owner, admin), so a client can tell which parts of the
API are its own before calling them (the web page shows the review queue to admins only,
instead of learning it from a 403)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from imgpipe.api.deps import current_principal
from imgpipe.domain.access import Principal

router = APIRouter(tags=["keys"])


class MeOut(BaseModel):
    owner: str = Field(description="The owner the caller's images belong to.")
    admin: bool = Field(description="Whether /v1/admin routes answer this caller.")
    key_id: str | None = Field(description="The key's id; null in single-user mode.")


@router.get("/v1/me", response_model=MeOut)
def me(caller: Annotated[Principal, Depends(current_principal)]) -> MeOut:
    """The caller's owner and whether it is an admin."""
    return MeOut(owner=caller.owner, admin=caller.admin, key_id=caller.key_id)
