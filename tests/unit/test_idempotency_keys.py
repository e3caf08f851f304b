"""Idempotency keys: reused within IDEMPOTENCY_TTL, forgotten by their own round after."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from imgpipe.db.schema import IdempotencyRow, utcnow
from imgpipe.domain.errors import IdempotencyConflict
from imgpipe.services import idempotency

from .sqlite_deps import sqlite_deps


def test_expired_keys_are_forgotten_and_the_rest_kept(tmp_path: Path) -> None:
    with sqlite_deps(tmp_path, store=None, queue=None) as deps:
        digest = idempotency.request_hash("a" * 64, None, None)
        assert idempotency.reserve(deps, "alice", "fresh", digest) is None
        assert idempotency.reserve(deps, "alice", "old", digest) is None
        with deps.sessions.begin() as session:
            old = session.get(IdempotencyRow, ("alice", "old"))
            assert old is not None
            old.created_at = utcnow() - timedelta(seconds=deps.access.idempotency_ttl_s + 60)

        assert idempotency.forget_expired(deps) == 1

        with deps.sessions() as session:
            assert session.get(IdempotencyRow, ("alice", "old")) is None
            assert session.get(IdempotencyRow, ("alice", "fresh")) is not None
        # The fresh key still stands for its request: the same key with another file is
        # refused, so the round did not forget too much.
        other = idempotency.request_hash("b" * 64, None, None)
        with pytest.raises(IdempotencyConflict):
            idempotency.reserve(deps, "alice", "fresh", other)
