"""Image jobs' queries: the locked job row, leases, attempts, hand-outs.

The rules (when a job is due, who holds it, what a lost lease means) are in
services/jobs.py and services/reconcile.py; these functions only read and write rows.
Each takes the caller's open Session, so a use case stays one transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, and_, or_, select, update
from sqlalchemy.orm import Session

from imgpipe.db.schema import ImageRow, JobAttemptRow


def locked_image(session: Session, image_id: str) -> ImageRow | None:
    """The image row, locked for this transaction: every change to a job goes through it."""
    # FOR UPDATE on PostgreSQL serialises claims of one image; SQLite's write
    # transactions (BEGIN IMMEDIATE) are serialised already.
    return session.get(ImageRow, image_id, with_for_update=True, populate_existing=True)


def add_attempt(
    session: Session,
    image_id: str,
    attempt: int,
    lease_owner: str,
    worker: str,
    variants: list[str],
    claimed_at: datetime,
) -> JobAttemptRow:
    """A new attempt row in this transaction (its id is set once the session flushes)."""
    row = JobAttemptRow(
        image_id=image_id,
        attempt=attempt,
        lease_owner=lease_owner,
        worker=worker,
        variants=variants,
        claimed_at=claimed_at,
    )
    session.add(row)
    return row


def get_attempt(session: Session, attempt_id: int) -> JobAttemptRow | None:
    return session.get(JobAttemptRow, attempt_id)


def open_attempts(session: Session, image_id: str) -> list[JobAttemptRow]:
    """The image's attempts with no outcome recorded yet."""
    query = select(JobAttemptRow).where(
        JobAttemptRow.image_id == image_id, JobAttemptRow.finished_at.is_(None)
    )
    return list(session.scalars(query))


def renew_lease(session: Session, image_id: str, lease_owner: str, due_at: datetime) -> bool:
    """Push the job's ``due_at`` to ``due_at`` if ``lease_owner`` still holds it."""
    return _updated_one(
        session,
        update(ImageRow)
        .where(ImageRow.id == image_id, ImageRow.lease_owner == lease_owner)
        .values(due_at=due_at, updated_at=ImageRow.updated_at),
    )


def forget_enqueued(session: Session, image_id: str) -> None:
    """The job's message never reached the broker: leave it to the reconciler."""
    session.execute(
        update(ImageRow)
        .where(ImageRow.id == image_id)
        .values(enqueued_at=None, updated_at=ImageRow.updated_at)
    )


def expired_leases(session: Session, now: datetime, limit: int) -> list[str]:
    """Ids of jobs whose lease ran out by ``now``, the longest expired first."""
    query = (
        select(ImageRow.id)
        .where(ImageRow.lease_owner.is_not(None), ImageRow.due_at <= now)
        .order_by(ImageRow.due_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def _not_sent_since_due() -> ColumnElement[bool]:
    return or_(ImageRow.enqueued_at.is_(None), ImageRow.enqueued_at < ImageRow.due_at)


def due_unsent(session: Session, now: datetime, limit: int) -> list[tuple[str, datetime | None]]:
    """(id, enqueued_at) of unleased jobs due by ``now`` with no message sent since they
    fell due, the earliest due first."""
    query = (
        select(ImageRow.id, ImageRow.enqueued_at)
        .where(ImageRow.lease_owner.is_(None), ImageRow.due_at <= now, _not_sent_since_due())
        .order_by(ImageRow.due_at)
        .limit(limit)
    )
    return [(row.id, row.enqueued_at) for row in session.execute(query)]


def mark_enqueued_if_unsent(session: Session, image_id: str, now: datetime) -> bool:
    """Compare-and-set: record the hand-out only if the job is still unleased and unsent
    since due (another reconciler did not get there first)."""
    condition = and_(ImageRow.lease_owner.is_(None), _not_sent_since_due())
    return _mark_enqueued(session, image_id, condition, now)


def sent_and_waiting(
    session: Session, now: datetime, sent_before: datetime, limit: int
) -> list[tuple[str, datetime]]:
    """(id, enqueued_at) of unleased due jobs whose message went out after they fell due
    and no later than ``sent_before``, the oldest message first."""
    query = (
        select(ImageRow.id, ImageRow.enqueued_at)
        .where(
            ImageRow.lease_owner.is_(None),
            ImageRow.due_at <= now,
            ImageRow.enqueued_at >= ImageRow.due_at,
            ImageRow.enqueued_at <= sent_before,
        )
        .order_by(ImageRow.enqueued_at)
        .limit(limit)
    )
    return [(row.id, cast("datetime", row.enqueued_at)) for row in session.execute(query)]


def mark_enqueued_if_sent_at(
    session: Session, image_id: str, enqueued_at: datetime, now: datetime
) -> bool:
    """Compare-and-set: record the hand-out only if the last one is still ``enqueued_at``."""
    return _mark_enqueued(session, image_id, ImageRow.enqueued_at == enqueued_at, now)


def _mark_enqueued(
    session: Session, image_id: str, condition: ColumnElement[bool], now: datetime
) -> bool:
    return _updated_one(
        session,
        update(ImageRow)
        .where(ImageRow.id == image_id, condition)
        .values(enqueued_at=now, updated_at=ImageRow.updated_at),
    )


def _updated_one(session: Session, statement: Any) -> bool:
    result = cast("CursorResult[Any]", session.execute(statement))
    return result.rowcount == 1
