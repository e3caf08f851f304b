"""GET /v1/images/{id}/webhooks: the image's webhook events and every delivery attempt."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from imgpipe.api.deps import current_owner, service_deps
from imgpipe.services import webhooks
from imgpipe.services.deps import ServiceDeps

router = APIRouter(prefix="/v1/images", tags=["webhooks"])

Deps = Annotated[ServiceDeps, Depends(service_deps)]
Owner = Annotated[str, Depends(current_owner)]


class DeliveryOut(BaseModel):
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int
    started_at: datetime
    finished_at: datetime


class EventOut(BaseModel):
    id: str
    type: str
    url: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    deliveries: list[DeliveryOut]


class EventListOut(BaseModel):
    items: list[EventOut]


@router.get("/{image_id}/webhooks", response_model=EventListOut)
def list_webhooks(image_id: str, deps: Deps, owner: Owner) -> EventListOut:
    """Events sent (or being retried) for this image, oldest first, with every attempt."""
    events = webhooks.list_for_image(deps, image_id, owner)
    return EventListOut.model_validate({"items": [asdict(e) for e in events]})
