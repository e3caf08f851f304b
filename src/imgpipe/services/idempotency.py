"""Idempotency-Key for POST /v1/images, as Stripe does it.

The first request with a key reserves it (one row per owner and key) before any work;
when it succeeds the row keeps the image id and status code, and a retry with the same
key and the same request (sha256 of the file plus the form fields) gets that image back
without a second upload. The same key with a different request is 409
``idempotency_conflict``; a retry while the first is still running is 409
``idempotency_in_progress``. A failed request frees its key. Keys are kept 24 hours.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from imgpipe.db import idempotency as idempotency_db
from imgpipe.db.schema import utcnow
from imgpipe.domain.errors import IdempotencyConflict, IdempotencyInProgress
from imgpipe.services.deps import ServiceDeps


def request_hash(file_sha256: str, profiles: list[str] | None, callback_url: str | None) -> str:
    names = ",".join(profiles or [])
    fields = f"{file_sha256}\nprofiles={names}\ncallback_url={callback_url or ''}"
    return hashlib.sha256(fields.encode()).hexdigest()


def reserve(deps: ServiceDeps, owner: str, key: str, digest: str) -> str | None:
    """None if the key is now ours to use; else the image id of its first success."""
    expired_before = utcnow() - timedelta(seconds=deps.access.idempotency_ttl_s)
    for _ in range(2):
        with deps.sessions.begin() as session:
            row = idempotency_db.get_key(session, owner, key)
            if row is not None and row.created_at < expired_before:
                idempotency_db.drop_key(session, row)
                row = None
            if row is not None:
                if row.request_hash != digest:
                    raise IdempotencyConflict(
                        "This Idempotency-Key was first used with a different file or "
                        "different fields; use a new key for a new request."
                    )
                if row.image_id is None:
                    raise IdempotencyInProgress(
                        "The first request with this Idempotency-Key has not finished; "
                        "retry in a moment."
                    )
                return row.image_id
        if idempotency_db.insert_key(deps.sessions, owner, key, digest):
            return None
        # A concurrent request reserved it first: read what it holds.
    raise IdempotencyInProgress("Retry in a moment.")


def complete(deps: ServiceDeps, owner: str, key: str, image_id: str, status_code: int) -> None:
    with deps.sessions.begin() as session:
        row = idempotency_db.get_key(session, owner, key)
        if row is not None:
            row.image_id, row.status_code = image_id, status_code


def release(deps: ServiceDeps, owner: str, key: str) -> None:
    with deps.sessions.begin() as session:
        idempotency_db.release_key(session, owner, key)


# Expired keys are refused by ``reserve`` anyway; this only keeps the table small.
FORGET_EVERY_S = 3600.0


def forget_expired(deps: ServiceDeps, now: datetime | None = None) -> int:
    """Delete the keys older than IDEMPOTENCY_TTL; returns how many went."""
    cutoff = (now or utcnow()) - timedelta(seconds=deps.access.idempotency_ttl_s)
    with deps.sessions.begin() as session:
        return idempotency_db.delete_older_than(session, cutoff)
