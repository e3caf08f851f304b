"""The database contract, run against every database imgpipe supports: SQLite (`serve`)
and PostgreSQL (scale-out). A new database is proved by passing this file.

Each case runs the use cases themselves (services/), on a database migrated to head, as
the API and the workers do. What every database must do: keep times as UTC, let exactly
one of several workers claim a job and exactly one of several requests reserve an
Idempotency-Key, and page a listing without gaps or repeats.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from PIL import Image
from sqlalchemy import update

from backends import postgres_database
from imgpipe.db.schema import ImageRow, utcnow
from imgpipe.domain.errors import IdempotencyInProgress
from imgpipe.services import idempotency, ingest, jobs, queries
from imgpipe.services.deps import ServiceDeps
from imgpipe.storage.local import LocalStore
from unit.sqlite_deps import NoQueue, database_deps

T = TypeVar("T")
CONTENDERS = 6


@pytest.fixture(params=["sqlite", "postgresql"])
def deps(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceDeps]:
    fields = {"store": LocalStore(tmp_path / "objects"), "queue": NoQueue()}
    if request.param == "sqlite":
        with database_deps(f"sqlite:///{tmp_path / 'imgpipe.db'}", tmp_path, **fields) as deps:
            yield deps
        return
    with postgres_database() as url, database_deps(url, tmp_path, **fields) as deps:
        yield deps


def _upload(deps: ServiceDeps, seed: int, key: str | None = None) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (seed % 256, seed // 256, 90)).save(buffer, "PNG")
    data = buffer.getvalue()
    deps.staging_dir.mkdir(parents=True, exist_ok=True)
    path = deps.staging_dir / f"upload-{seed}"
    path.write_bytes(data)
    staged = ingest.StagedUpload(path, len(data), hashlib.sha256(data).hexdigest())
    return ingest.ingest(deps, staged, "alice", idempotency_key=key).id


def _all_at_once(count: int, work: Callable[[int], T]) -> list[T | BaseException]:
    """Run ``work(i)`` in ``count`` threads released together; results or exceptions."""
    start = threading.Barrier(count)
    results: list[T | BaseException] = [RuntimeError("did not run")] * count

    def contender(i: int) -> None:
        start.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_an_image_reads_back_with_its_variants_and_utc_times(deps: ServiceDeps) -> None:
    before = utcnow()
    image_id = _upload(deps, 1)
    view = queries.get_image(deps, image_id, "alice")
    assert view.status == "pending"
    assert set(view.variants) == set(deps.profiles.names())
    assert view.created_at.tzinfo is not None
    assert view.created_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= view.created_at.astimezone(UTC) <= utcnow()


def test_one_job_claimed_by_many_workers_at_once_goes_to_one(deps: ServiceDeps) -> None:
    image_id = _upload(deps, 2)
    with deps.sessions.begin() as session:  # due now, as a message would find it
        session.execute(update(ImageRow).where(ImageRow.id == image_id).values(due_at=utcnow()))
    results = _all_at_once(CONTENDERS, lambda _: jobs.claim(deps, image_id)[0])
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    claims = [r for r in results if r is not None]
    assert len(claims) == 1
    view = queries.get_image(deps, image_id, "alice")
    assert {v.attempts for v in view.variants.values()} == {1}  # counted once, not six times


def test_one_idempotency_key_reserved_at_once_has_one_winner(deps: ServiceDeps) -> None:
    digest = idempotency.request_hash("c" * 64, None, None)
    results = _all_at_once(
        CONTENDERS, lambda _: idempotency.reserve(deps, "alice", "same-key", digest)
    )
    winners = [r for r in results if r is None]
    assert len(winners) == 1
    others = [r for r in results if r is not None]
    assert others and all(isinstance(r, IdempotencyInProgress) for r in others), others


def test_a_listing_pages_newest_first_without_gaps_or_repeats(deps: ServiceDeps) -> None:
    uploaded = [_upload(deps, 10 + n) for n in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = queries.list_images(deps, "alice", 3, cursor)
        seen.extend(item.id for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(uploaded, reverse=True)  # ids sort by time of upload


def test_a_retried_upload_with_its_key_returns_the_first_image(deps: ServiceDeps) -> None:
    first = _upload(deps, 30, key="retry-me")
    assert _upload(deps, 30, key="retry-me") == first
    assert len(queries.list_images(deps, "alice", 10, None).items) == 1
