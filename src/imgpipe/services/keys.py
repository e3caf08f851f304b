"""Owners and API keys: create, list, revoke, and who a request's key stands for.

Auth is required as soon as any key exists (revoked ones included: a deployment that
had keys never falls back to single-user mode) or IMGPIPE_AUTH=required. Without
either, every request acts for the single-user owner ``default``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from imgpipe.db import keys as keys_db
from imgpipe.db.schema import ApiKeyRow, utcnow
from imgpipe.db.session import SessionFactory
from imgpipe.domain.access import (
    SINGLE_USER_OWNER,
    Principal,
    check_owner,
    hash_key,
    new_api_key,
    new_key_id,
    shown_prefix,
)
from imgpipe.domain.errors import NotFound, Unauthorized


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    owner: str
    prefix: str
    admin: bool
    callback_url: str | None
    created_at: datetime
    revoked_at: datetime | None


def _info(row: ApiKeyRow) -> KeyInfo:
    return KeyInfo(
        row.id, row.owner, row.prefix, row.admin, row.callback_url, row.created_at, row.revoked_at
    )


def create_key(
    sessions: SessionFactory, owner: str, admin: bool = False, callback_url: str | None = None
) -> tuple[str, KeyInfo]:
    """A new key for ``owner``: the key itself (shown once, never stored) and its record."""
    check_owner(owner)
    key = new_api_key()
    with sessions.begin() as session:
        row = keys_db.add_key(
            session,
            key_id=new_key_id(),
            owner=owner,
            key_hash=hash_key(key),
            prefix=shown_prefix(key),
            admin=admin,
            callback_url=callback_url,
            created_at=utcnow(),
        )
        return key, _info(row)


def list_keys(sessions: SessionFactory) -> list[KeyInfo]:
    with sessions() as session:
        return [_info(row) for row in keys_db.all_keys(session)]


def revoke_key(sessions: SessionFactory, key_id: str) -> KeyInfo:
    """Revoke by id (or by the shown prefix); repeating it is harmless."""
    with sessions.begin() as session:
        row = keys_db.key_by_id_or_prefix(session, key_id)
        if row is None:
            raise NotFound(f"No API key {key_id}.")
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return _info(row)


def any_key_exists(sessions: SessionFactory) -> bool | None:
    """Whether any key exists (revoked ones too); None when the database cannot tell (no
    table yet). A database that cannot be reached raises DatabaseUnavailable."""
    with sessions() as session:
        return keys_db.any_key(session)


class Authenticator:
    """Turns a bearer token into a Principal, or refuses with 401."""

    def __init__(self, sessions: SessionFactory, required: bool) -> None:
        self._sessions = sessions
        self._required = required
        self._keys_seen = False  # once keys exist they never go away: cache the answer
        self._lock = threading.Lock()

    def keys_exist(self) -> bool:
        if self._required or self._keys_seen:
            return True
        seen = any_key_exists(self._sessions)
        if seen is None:
            return True  # cannot tell: fail closed
        if seen:
            with self._lock:
                self._keys_seen = True
        return seen

    def authenticate(self, token: str | None) -> Principal:
        if token is None:
            if not self.keys_exist():
                return Principal(SINGLE_USER_OWNER, None, admin=True)
            raise Unauthorized(
                "Send an API key as 'Authorization: Bearer <key>' "
                "(make one with `imgpipe keys create --owner NAME`)."
            )
        with self._sessions() as session:
            row = keys_db.key_by_hash(session, hash_key(token))
            if row is None:
                raise Unauthorized("The API key is not valid.")
            if row.revoked_at is not None:
                raise Unauthorized("The API key has been revoked.")
            with self._lock:
                self._keys_seen = True
            return Principal(row.owner, row.id, row.admin, row.callback_url)
