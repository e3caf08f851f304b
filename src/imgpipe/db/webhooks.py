"""Webhook events' rows (the outbox) and the record of every delivery attempt."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from imgpipe.db.schema import WebhookDeliveryRow, WebhookEventRow
from imgpipe.domain.webhooks import EventStatus


def add_event(
    session: Session,
    event_id: str,
    owner: str,
    image_id: str,
    event_type: str,
    url: str,
    payload: str,
    due_at: datetime,
    created_at: datetime,
) -> None:
    """A pending event, no attempt made yet, in the caller's transaction."""
    session.add(
        WebhookEventRow(
            id=event_id,
            owner=owner,
            image_id=image_id,
            type=event_type,
            url=url,
            payload=payload,
            status=EventStatus.PENDING.value,
            attempts=0,
            due_at=due_at,
            created_at=created_at,
        )
    )


def get_event(session: Session, event_id: str) -> WebhookEventRow | None:
    return session.get(WebhookEventRow, event_id)


def claim_attempt(session: Session, event_id: str, attempt: int, lease_until: datetime) -> bool:
    """Compare-and-set: count ``attempt`` as made by this caller, held until
    ``lease_until``, if the event is pending and ``attempt - 1`` attempts were made."""
    statement = (
        update(WebhookEventRow)
        .where(
            WebhookEventRow.id == event_id,
            WebhookEventRow.status == EventStatus.PENDING.value,
            WebhookEventRow.attempts == attempt - 1,
        )
        .values(attempts=attempt, due_at=lease_until)
    )
    return cast("CursorResult[Any]", session.execute(statement)).rowcount == 1


def add_delivery(
    session: Session,
    event_id: str,
    image_id: str,
    url: str,
    attempt: int,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    started_at: datetime,
    finished_at: datetime,
) -> None:
    session.add(
        WebhookDeliveryRow(
            event_id=event_id,
            image_id=image_id,
            url=url,
            attempt=attempt,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
            started_at=started_at,
            finished_at=finished_at,
        )
    )


def due_events(session: Session, now: datetime, limit: int) -> list[tuple[str, int]]:
    """(id, attempts made) of pending events whose next attempt is due, earliest first."""
    query = (
        select(WebhookEventRow.id, WebhookEventRow.attempts)
        .where(
            WebhookEventRow.status == EventStatus.PENDING.value,
            WebhookEventRow.due_at <= now,
        )
        .order_by(WebhookEventRow.due_at)
        .limit(limit)
    )
    return [(row.id, row.attempts) for row in session.execute(query)]


def hold_due_event(
    session: Session, event_id: str, attempts: int, now: datetime, lease_until: datetime
) -> bool:
    """Compare-and-set: push a due event's ``due_at`` to ``lease_until`` if it is still
    pending, due by ``now`` and at ``attempts`` (no other sweep took it)."""
    statement = (
        update(WebhookEventRow)
        .where(
            WebhookEventRow.id == event_id,
            WebhookEventRow.status == EventStatus.PENDING.value,
            WebhookEventRow.attempts == attempts,
            WebhookEventRow.due_at <= now,
        )
        .values(due_at=lease_until)
    )
    return cast("CursorResult[Any]", session.execute(statement)).rowcount == 1


def events_for_image(session: Session, image_id: str, owner: str) -> list[WebhookEventRow]:
    """The owner's events for the image, oldest first."""
    query = (
        select(WebhookEventRow)
        .where(WebhookEventRow.image_id == image_id, WebhookEventRow.owner == owner)
        .order_by(WebhookEventRow.created_at, WebhookEventRow.id)
    )
    return list(session.scalars(query))


def deliveries_of(session: Session, event_ids: list[str]) -> list[WebhookDeliveryRow]:
    """Every attempt made for these events, in the order they were recorded."""
    query = (
        select(WebhookDeliveryRow)
        .where(WebhookDeliveryRow.event_id.in_(event_ids))
        .order_by(WebhookDeliveryRow.id)
    )
    return list(session.scalars(query))
