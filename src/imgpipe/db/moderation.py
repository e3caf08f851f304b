"""Moderation's rows: the job row beside each image, and the decisions recorded on it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from imgpipe.db.schema import ImageRow, ModerationDecisionRow, ModerationRow


def locked(session: Session, image_id: str) -> ModerationRow | None:
    """The image's moderation row, locked for this transaction (as db.jobs.locked_image)."""
    return session.get(ModerationRow, image_id, with_for_update=True, populate_existing=True)


def due_unsent(session: Session, now: datetime, sent_before: datetime, limit: int) -> list[str]:
    """Image ids of moderation jobs due by ``now`` with no live message: never sent, sent
    before they fell due, or sent no later than ``sent_before``; the earliest due first."""
    query = (
        select(ModerationRow.image_id)
        .where(
            ModerationRow.due_at <= now,
            or_(
                ModerationRow.enqueued_at.is_(None),
                ModerationRow.enqueued_at < ModerationRow.due_at,
                ModerationRow.enqueued_at <= sent_before,
            ),
        )
        .order_by(ModerationRow.due_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def leased(session: Session) -> list[ModerationRow]:
    """Every row some worker holds a lease on."""
    return list(
        session.scalars(select(ModerationRow).where(ModerationRow.lease_owner.is_not(None)))
    )


def scheduled(session: Session) -> list[ModerationRow]:
    """Every row with a run still to come (``due_at`` set)."""
    return list(session.scalars(select(ModerationRow).where(ModerationRow.due_at.is_not(None))))


def add_decision(
    session: Session,
    image_id: str,
    status: str,
    previous_status: str | None,
    decided_by: str,
    reason: str | None,
    labels: list[dict[str, Any]],
    created_at: datetime,
) -> None:
    session.add(
        ModerationDecisionRow(
            image_id=image_id,
            status=status,
            previous_status=previous_status,
            decided_by=decided_by,
            reason=reason,
            labels=labels,
            created_at=created_at,
        )
    )


def decisions(session: Session, image_id: str) -> list[ModerationDecisionRow]:
    """The image's decisions, oldest first."""
    query = (
        select(ModerationDecisionRow)
        .where(ModerationDecisionRow.image_id == image_id)
        .order_by(ModerationDecisionRow.id)
    )
    return list(session.scalars(query))


def images_with_status(
    session: Session, status: str, after_id: str | None, limit: int
) -> list[ImageRow]:
    """Every owner's images whose moderation has this status, by id, after ``after_id``."""
    query = (
        select(ImageRow)
        .join(ModerationRow, ModerationRow.image_id == ImageRow.id)
        .where(ModerationRow.status == status)
    )
    if after_id:
        query = query.where(ImageRow.id > after_id)
    return list(session.scalars(query.order_by(ImageRow.id).limit(limit)))


def status_of(session: Session, image_id: str) -> str | None:
    """The image's moderation status; None when it has no row."""
    return session.scalar(select(ModerationRow.status).where(ModerationRow.image_id == image_id))
