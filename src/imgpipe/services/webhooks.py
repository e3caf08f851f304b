"""Webhooks: record an event when an image settles, deliver it, retry it, list attempts.

The database is the source of truth. An event row holds the body (fixed when the event
happens), its status and the time its next attempt is due. Workers send attempts as
Celery tasks on the light ``<queue>.webhooks`` queue; a sweep (a thread in ``serve`` and
in every ``imgpipe worker``) hands out every attempt that is due, so a lost message, a
dead worker or a receiver that was down for hours only delays an event, never loses it.
An attempt is claimed with a compare-and-set on the attempt number, so two copies of a
message (or two sweeps) never send the same attempt twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import TypeAdapter

from imgpipe.db import repo
from imgpipe.db import webhooks as webhooks_db
from imgpipe.db.schema import ImageRow, utcnow
from imgpipe.db.session import Session
from imgpipe.domain.errors import NotFound
from imgpipe.domain.ids import new_image_id
from imgpipe.domain.webhooks import EventStatus, EventType, event_for_status, next_delay_s
from imgpipe.jobs.messages import DeliverWebhook
from imgpipe.notify import signing
from imgpipe.notify.egress import check_url
from imgpipe.notify.sender import send
from imgpipe.services import delivery
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.views import ImageView, image_view

log = logging.getLogger(__name__)

_IMAGE_JSON = TypeAdapter(ImageView)
SWEEP_BATCH = 200


def check_callback_url(deps: ServiceDeps, url: str) -> None:
    """At upload time: 400 ``bad_callback_url`` unless the URL may receive webhooks."""
    check_url(url, deps.webhooks.allow, deps.webhooks.resolve)


def image_resource(view: ImageView) -> dict[str, Any]:
    """The image exactly as GET /v1/images/{id} shows it."""
    data: dict[str, Any] = _IMAGE_JSON.dump_python(view, mode="json")
    for variant in data["variants"].values():
        variant.pop("name", None)
        if variant.get("public_url") is None:  # only under PUBLIC_BASE_URL, as in the API
            variant.pop("public_url", None)
    return data


def record_event(
    deps: ServiceDeps, session: Session, image: ImageRow, event_type: EventType | None = None
) -> str | None:
    """Add the image's event to the caller's transaction, if it settled and has a callback.

    Recorded in the same transaction as the image's outcome (an outbox), so a worker that
    dies right after the commit cannot lose the event. Call ``hand_out_first`` after the
    commit; if that never happens, the sweep sends it once ``due_at`` passes.
    """
    if not image.callback_url:
        return None
    # image.flagged is moderation's (services/moderation.py); the rest follow the status.
    event_type = event_type or event_for_status(image.status)
    if event_type is None:
        return None
    now = utcnow()
    event_id = "evt_" + new_image_id().removeprefix("img_")
    session.flush()  # the image resource below shows the outcome being committed
    body = {
        "type": event_type.value,
        "timestamp": now.isoformat().replace("+00:00", "Z"),
        "data": image_resource(image_view(image, delivery.public_urls(deps))),
    }
    webhooks_db.add_event(
        session,
        event_id,
        owner=image.owner,
        image_id=image.id,
        event_type=event_type.value,
        url=image.callback_url,
        payload=json.dumps(body, separators=(",", ":")),
        # Handed to the queue after the commit; the sweep takes over if that is lost.
        due_at=now + timedelta(seconds=deps.webhooks.lease_s),
        created_at=now,
    )
    return event_id


def hand_out_first(deps: ServiceDeps, event_id: str) -> None:
    """Send an event's first attempt now (after the commit that recorded it)."""
    _hand_out(deps, DeliverWebhook(event_id, 1))


def _hand_out(deps: ServiceDeps, message: DeliverWebhook) -> None:
    queue = deps.webhooks.queue
    if queue is None:
        deliver(deps, message)
        return
    try:
        queue.enqueue_webhook(message)
    except Exception:  # the broker client's own errors; the sweep sends it later
        log.warning("webhook enqueue failed; the sweep will send it", exc_info=True)


def deliver(deps: ServiceDeps, message: DeliverWebhook) -> bool:
    """Make one attempt (the webhook task). False if another sender already has it."""
    settings = deps.webhooks
    now = utcnow()
    with deps.sessions.begin() as session:
        lease_until = now + timedelta(seconds=settings.lease_s)
        if not webhooks_db.claim_attempt(session, message.event_id, message.attempt, lease_until):
            return False
        event = webhooks_db.get_event(session, message.event_id)
        assert event is not None
        url, payload, created_at = event.url, event.payload.encode(), event.created_at
        image_id = event.image_id
    started = utcnow()
    headers = signing.headers(
        settings.secret_key, message.event_id, int(started.timestamp()), payload
    )
    attempt = send(url, payload, headers, settings.allow, settings.timeout_s, settings.resolve)
    finished = utcnow()
    with deps.sessions.begin() as session:
        webhooks_db.add_delivery(
            session,
            event_id=message.event_id,
            image_id=image_id,
            url=url,
            attempt=message.attempt,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=attempt.duration_ms,
            started_at=started,
            finished_at=finished,
        )
        event = webhooks_db.get_event(session, message.event_id)
        if event is None:
            return True
        if attempt.ok:
            event.status = EventStatus.DELIVERED.value
            event.delivered_at = finished
        else:
            due = finished + timedelta(seconds=next_delay_s(settings.schedule_s, message.attempt))
            if due > created_at + timedelta(seconds=settings.retry_for_s):
                event.status = EventStatus.FAILED.value
            else:
                event.due_at = due
    level = logging.INFO if attempt.ok else logging.WARNING
    log.log(
        level,
        "webhook attempt",
        extra={
            "image_id": image_id,
            "event_id": message.event_id,
            "attempt": message.attempt,
            "status_code": attempt.status_code,
            "error": attempt.error,
        },
    )
    return True


def sweep(deps: ServiceDeps, now: datetime | None = None) -> int:
    """Hand out every attempt that is due."""
    now = now or utcnow()
    lease = timedelta(seconds=deps.webhooks.lease_s)
    with deps.sessions() as session:
        due = webhooks_db.due_events(session, now, SWEEP_BATCH)
    handed = 0
    for event_id, attempts in due:
        with deps.sessions.begin() as session:
            claimed = webhooks_db.hold_due_event(session, event_id, attempts, now, now + lease)
        if claimed:
            _hand_out(deps, DeliverWebhook(event_id, attempts + 1))
            handed += 1
    return handed


@dataclass(frozen=True, slots=True)
class DeliveryView:
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: int
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True, slots=True)
class EventView:
    id: str
    type: str
    url: str
    status: str
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    deliveries: list[DeliveryView]


def list_for_image(deps: ServiceDeps, image_id: str, owner: str) -> list[EventView]:
    """The image's events, oldest first, each with every attempt made."""
    with deps.sessions() as session:
        events = webhooks_db.events_for_image(session, image_id, owner)
        if not events and repo.get_image(session, image_id, owner) is None:
            raise NotFound(f"No image {image_id}.")
        attempts = webhooks_db.deliveries_of(session, [e.id for e in events])
    by_event: dict[str, list[DeliveryView]] = {}
    for row in attempts:
        by_event.setdefault(row.event_id, []).append(
            DeliveryView(
                row.attempt,
                row.status_code,
                row.error,
                row.duration_ms,
                row.started_at,
                row.finished_at,
            )
        )
    return [
        EventView(
            id=e.id,
            type=e.type,
            url=e.url,
            status=e.status,
            attempts=e.attempts,
            created_at=e.created_at,
            next_attempt_at=e.due_at if e.status == EventStatus.PENDING.value else None,
            delivered_at=e.delivered_at,
            deliveries=by_event.get(e.id, []),
        )
        for e in events
    ]
