"""API keys' rows: created, listed, revoked, found by the hash of the key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from imgpipe.db.schema import ApiKeyRow


def add_key(
    session: Session,
    key_id: str,
    owner: str,
    key_hash: str,
    prefix: str,
    admin: bool,
    callback_url: str | None,
    created_at: datetime,
) -> ApiKeyRow:
    row = ApiKeyRow(
        id=key_id,
        owner=owner,
        key_hash=key_hash,
        prefix=prefix,
        admin=admin,
        callback_url=callback_url,
        created_at=created_at,
    )
    session.add(row)
    session.flush()
    return row


def all_keys(session: Session) -> list[ApiKeyRow]:
    """Every key, revoked ones too, oldest first."""
    return list(session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)))


def key_by_id_or_prefix(session: Session, key_id: str) -> ApiKeyRow | None:
    """The key with this id or, failing that, the first with this shown prefix."""
    return (
        session.get(ApiKeyRow, key_id)
        or session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == key_id)).first()
    )


def key_by_hash(session: Session, key_hash: str) -> ApiKeyRow | None:
    return session.scalars(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash)).first()


def any_key(session: Session) -> bool | None:
    """Whether any key exists, revoked ones included; None when the query itself fails
    (no table yet, a statement error). A database that cannot be reached is not a "cannot
    tell": it raises DatabaseUnavailable (db/session.py), as every other query does."""
    try:
        return session.scalar(select(ApiKeyRow.id).limit(1)) is not None
    except SQLAlchemyError:
        return None


def has_active_key(session: Session, owner: str) -> bool:
    """Whether the owner has a key that is not revoked."""
    query = select(ApiKeyRow.id).where(ApiKeyRow.owner == owner, ApiKeyRow.revoked_at.is_(None))
    return session.scalar(query.limit(1)) is not None
