"""Idempotency keys' rows: one per (owner, key), kept until they expire."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from imgpipe.db.schema import IdempotencyRow
from imgpipe.db.session import SessionFactory


def get_key(session: Session, owner: str, key: str) -> IdempotencyRow | None:
    return session.get(IdempotencyRow, (owner, key))


def drop_key(session: Session, row: IdempotencyRow) -> None:
    """Delete the row now (in this transaction), so the key can be reserved again."""
    session.delete(row)
    session.flush()


def insert_key(sessions: SessionFactory, owner: str, key: str, request_hash: str) -> bool:
    """Reserve the key in a transaction of its own: True if this call inserted it, False
    if a concurrent request did first (the primary key decides the winner)."""
    try:
        with sessions.begin() as session:
            session.add(IdempotencyRow(owner=owner, key=key, request_hash=request_hash))
    except IntegrityError:
        return False
    return True


def release_key(session: Session, owner: str, key: str) -> None:
    """Free a key whose request failed (one that succeeded keeps its image)."""
    session.execute(
        delete(IdempotencyRow).where(
            IdempotencyRow.owner == owner,
            IdempotencyRow.key == key,
            IdempotencyRow.image_id.is_(None),
        )
    )


def delete_older_than(session: Session, cutoff: datetime) -> int:
    """Delete every key created before ``cutoff``; how many went."""
    statement = delete(IdempotencyRow).where(IdempotencyRow.created_at < cutoff)
    return int(cast("CursorResult[Any]", session.execute(statement)).rowcount)
