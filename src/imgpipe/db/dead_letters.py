"""Dead letters' rows and the job attempts that led to them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from imgpipe.db.schema import DeadLetterRow, ImageRow, JobAttemptRow


def newest(session: Session, include_retried: bool, limit: int) -> list[DeadLetterRow]:
    """Newest first; those already retried only when asked."""
    query = select(DeadLetterRow).order_by(DeadLetterRow.created_at.desc()).limit(limit)
    if not include_retried:
        query = query.where(DeadLetterRow.retried_at.is_(None))
    return list(session.scalars(query))


def get(session: Session, dead_letter_id: str) -> DeadLetterRow | None:
    return session.get(DeadLetterRow, dead_letter_id)


def history(session: Session, row: DeadLetterRow, limit: int) -> list[JobAttemptRow]:
    """The dead letter's own attempts, newest first: those claimed since the image's
    previous dead letter was retried (or since the beginning), up to this one."""
    previous = session.scalar(
        select(DeadLetterRow)
        .where(DeadLetterRow.image_id == row.image_id, DeadLetterRow.created_at < row.created_at)
        .order_by(DeadLetterRow.created_at.desc())
        .limit(1)
    )
    query = select(JobAttemptRow).where(
        JobAttemptRow.image_id == row.image_id, JobAttemptRow.claimed_at <= row.created_at
    )
    if previous is not None:
        query = query.where(
            JobAttemptRow.claimed_at >= (previous.retried_at or previous.created_at)
        )
    return list(session.scalars(query.order_by(JobAttemptRow.id.desc()).limit(limit)))


def add(
    session: Session,
    dead_letter_id: str,
    image: ImageRow,
    variants: list[str],
    attempts: int,
    error_code: str,
    error: str,
    created_at: datetime,
) -> None:
    """A dead letter for ``image`` (its owner is copied) in this transaction."""
    session.add(
        DeadLetterRow(
            id=dead_letter_id,
            image_id=image.id,
            owner=image.owner,
            variants=variants,
            attempts=attempts,
            error_code=error_code,
            error=error,
            created_at=created_at,
        )
    )
