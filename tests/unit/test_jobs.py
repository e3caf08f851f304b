"""Jobs through the database: claims under a lease, retries with backoff, dead letters,
and the reconciler. Real SQLite, a real local store and real images; the queue is a
recorder, so each test drives the clock through ``due_at``."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select, update

from imgpipe.db.schema import DeadLetterRow, ImageRow, JobAttemptRow, WebhookEventRow, utcnow
from imgpipe.domain.errors import CorruptImage, StorageUnavailable
from imgpipe.domain.retry import RetryPolicy
from imgpipe.jobs.messages import ProcessImage
from imgpipe.services import dead_letters, ingest, jobs, reconcile
from imgpipe.services.deps import JobSettings, ServiceDeps
from imgpipe.services.process import process_image
from imgpipe.storage.base import ObjectMeta
from imgpipe.storage.local import LocalStore

from .sqlite_deps import sqlite_deps

MAX_ATTEMPTS = 5


class RecordingQueue:
    """Takes messages like a broker; ``depth`` is what the broker would report."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.reported_depth: int | None = 0

    def enqueue(self, message: ProcessImage, recover: bool = False) -> None:
        self.sent.append(message.image_id)

    def check(self) -> None:
        pass

    def depth(self) -> int | None:
        return self.reported_depth


class FlakyStore(LocalStore):
    """A real local store whose variant writes fail while ``failures`` lasts."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.failures = 0

    def put_bytes(self, key: str, data: bytes, meta: ObjectMeta | None = None) -> None:
        if key.startswith("variants/") and self.failures > 0:
            self.failures -= 1
            raise StorageUnavailable("injected: the store answered 503")
        super().put_bytes(key, data, meta)


@pytest.fixture
def deps(tmp_path: Path) -> Iterator[ServiceDeps]:
    with sqlite_deps(
        tmp_path,
        store=FlakyStore(tmp_path / "objects"),
        queue=RecordingQueue(),
        jobs=JobSettings(
            retry=RetryPolicy(MAX_ATTEMPTS, base_s=1.0, max_s=300.0),
            lease_s=0.6,
            requeue_after_s=60.0,
        ),
    ) as deps:
        yield deps


def _queue(deps: ServiceDeps) -> RecordingQueue:
    assert isinstance(deps.queue, RecordingQueue)
    return deps.queue


def _store(deps: ServiceDeps) -> FlakyStore:
    assert isinstance(deps.store, FlakyStore)
    return deps.store


def _upload(deps: ServiceDeps, profiles: list[str] | None = None, seed: int = 0) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (seed % 256, 80, 160)).save(buffer, "PNG")
    data = buffer.getvalue()
    deps.staging_dir.mkdir(parents=True, exist_ok=True)
    path = deps.staging_dir / f"upload-{seed}"
    path.write_bytes(data)
    staged = ingest.StagedUpload(path, len(data), hashlib.sha256(data).hexdigest())
    return ingest.ingest(deps, staged, "alice", profile_names=profiles).id


def _image(deps: ServiceDeps, image_id: str) -> ImageRow:
    with deps.sessions() as session:
        image = session.get(ImageRow, image_id)
        assert image is not None
        session.expunge(image)
        return image


def _variants(deps: ServiceDeps, image_id: str) -> dict[str, tuple[str, int, str | None]]:
    return {v.name: (v.status, v.attempts, v.error_code) for v in _image(deps, image_id).variants}


def _make_due(deps: ServiceDeps, image_id: str) -> None:
    with deps.sessions.begin() as session:
        session.execute(
            update(ImageRow)
            .where(ImageRow.id == image_id)
            .values(due_at=utcnow() - timedelta(milliseconds=1))
        )


def _attempts(deps: ServiceDeps, image_id: str) -> list[JobAttemptRow]:
    with deps.sessions() as session:
        rows = session.scalars(
            select(JobAttemptRow)
            .where(JobAttemptRow.image_id == image_id)
            .order_by(JobAttemptRow.id)
        ).all()
        session.expunge_all()
        return list(rows)


def test_a_job_is_claimed_once_and_a_duplicate_message_finds_nothing(deps: ServiceDeps) -> None:
    image_id = _upload(deps, ["thumbnail"])
    claim, _ = jobs.claim(deps, image_id)
    assert claim is not None and set(claim.specs) == {"thumbnail"}
    again, _ = jobs.claim(deps, image_id)  # a second copy of the message, lease still live
    assert again is None
    assert _variants(deps, image_id) == {"thumbnail": ("processing", 1, None)}
    process_image(deps, ProcessImage(image_id))  # the duplicate delivered later: no-op
    assert _variants(deps, image_id) == {"thumbnail": ("processing", 1, None)}


def test_transient_failure_is_retried_after_a_backoff_and_redoes_only_what_failed(
    deps: ServiceDeps,
) -> None:
    image_id = _upload(deps, ["thumbnail", "medium"])
    _store(deps).failures = 1  # the first variant write fails, the second succeeds
    before = utcnow()
    process_image(deps, ProcessImage(image_id))
    variants = _variants(deps, image_id)
    assert sorted(s for s, _, _ in variants.values()) == ["done", "pending"]
    failed = next(n for n, (s, _, _) in variants.items() if s == "pending")
    image = _image(deps, image_id)
    assert image.status == "processing" and image.lease_owner is None
    # Full jitter after attempt 1: somewhere in [0, base * 2^1] seconds.
    assert image.due_at is not None and before <= image.due_at <= utcnow() + timedelta(seconds=2)
    assert [a.outcome for a in _attempts(deps, image_id)] == ["retry"]
    assert _attempts(deps, image_id)[0].error_code == "storage_unavailable"

    _make_due(deps, image_id)
    claim, _ = jobs.claim(deps, image_id)
    assert claim is not None and set(claim.specs) == {failed}  # the done one is not redone


def test_a_retry_is_not_claimed_before_its_backoff_ends(deps: ServiceDeps) -> None:
    image_id = _upload(deps, ["thumbnail"])
    _store(deps).failures = 1
    process_image(deps, ProcessImage(image_id))
    with deps.sessions.begin() as session:
        session.execute(
            update(ImageRow)
            .where(ImageRow.id == image_id)
            .values(due_at=utcnow() + timedelta(seconds=60))
        )
    process_image(deps, ProcessImage(image_id))  # an early message: nothing happens
    assert _variants(deps, image_id) == {"thumbnail": ("pending", 1, None)}
    _make_due(deps, image_id)
    process_image(deps, ProcessImage(image_id))
    assert _variants(deps, image_id) == {"thumbnail": ("done", 2, None)}
    assert _image(deps, image_id).status == "done"


def test_permanent_failure_fails_at_once_without_a_dead_letter(deps: ServiceDeps) -> None:
    image_id = _upload(deps, ["thumbnail"])
    with deps.sessions.begin() as session:
        session.execute(
            update(ImageRow)
            .where(ImageRow.id == image_id)
            .values(callback_url="https://example.com/hook")
        )
    claim, _ = jobs.claim(deps, image_id)
    assert claim is not None
    settled = jobs.settle(deps, claim, {"thumbnail": CorruptImage("bad data")})
    assert settled.status is not None and settled.status.value == "failed"
    # The webhook event was committed with the outcome (an outbox), not after it.
    with deps.sessions() as session:
        event = session.get(WebhookEventRow, settled.event_id)
        assert event is not None and event.type == "image.failed"
    assert _variants(deps, image_id) == {"thumbnail": ("failed", 1, "corrupt_image")}
    assert _image(deps, image_id).due_at is None
    assert dead_letters.list_dead_letters(deps.sessions) == []


def test_transient_failures_use_up_exactly_max_attempts_then_dead_letter(
    deps: ServiceDeps,
) -> None:
    image_id = _upload(deps, ["thumbnail"])
    _store(deps).failures = 1000
    for _ in range(MAX_ATTEMPTS + 3):  # more chances than allowed: the limit must hold
        _make_due(deps, image_id)
        process_image(deps, ProcessImage(image_id))
    assert _variants(deps, image_id) == {"thumbnail": ("failed", 5, "storage_unavailable")}
    assert _image(deps, image_id).status == "failed"
    [entry] = dead_letters.list_dead_letters(deps.sessions)
    assert entry.image_id == image_id and entry.variants == ["thumbnail"]
    assert entry.attempts == 5 and entry.error_code == "storage_unavailable"
    assert [h.attempt for h in entry.history] == [1, 2, 3, 4, 5]
    assert [h.outcome for h in entry.history] == ["retry"] * 4 + ["failed"]


def test_an_expired_lease_is_a_lost_attempt_and_a_poison_job_fails_after_max_claims(
    deps: ServiceDeps,
) -> None:
    image_id = _upload(deps, ["thumbnail", "medium"])
    queue = _queue(deps)
    claims = 0
    for _ in range(MAX_ATTEMPTS + 3):
        queue.sent.clear()
        claim, _ = jobs.claim(deps, image_id)  # the worker takes it... and dies
        if claim is None:
            break
        claims += 1
        _make_due(deps, image_id)  # its lease runs out
        report = reconcile.reconcile(deps)
        assert report.lease_expired == 1
    assert claims == MAX_ATTEMPTS
    image = _image(deps, image_id)
    assert image.status == "failed" and image.due_at is None and image.lease_owner is None
    assert _variants(deps, image_id) == {
        "thumbnail": ("failed", 5, "worker_lost"),
        "medium": ("failed", 5, "worker_lost"),
    }
    assert [a.outcome for a in _attempts(deps, image_id)] == ["lost"] * 5
    [entry] = dead_letters.list_dead_letters(deps.sessions)
    assert entry.error_code == "worker_lost" and entry.variants == ["medium", "thumbnail"]


def test_a_worker_that_lost_its_lease_cannot_record_over_the_new_attempt(
    deps: ServiceDeps,
) -> None:
    image_id = _upload(deps, ["thumbnail"])
    slow, _ = jobs.claim(deps, image_id)
    assert slow is not None
    _make_due(deps, image_id)
    fresh, _ = jobs.claim(deps, image_id)  # the lease ran out; another worker took over
    assert fresh is not None and fresh.lease_owner != slow.lease_owner
    late = jobs.settle(deps, slow, {"thumbnail": CorruptImage("stale result")})
    assert late.status is None
    assert _variants(deps, image_id) == {"thumbnail": ("processing", 2, None)}


def test_the_heartbeat_keeps_a_long_job_leased(deps: ServiceDeps) -> None:
    image_id = _upload(deps, ["thumbnail"])
    claim, _ = jobs.claim(deps, image_id)
    assert claim is not None
    with jobs.Heartbeat(deps, claim):
        time.sleep(deps.jobs.lease_s * 2.5)  # well past the first lease
        assert reconcile.reconcile(deps).lease_expired == 0
        due = _image(deps, image_id).due_at
        assert due is not None and due > utcnow()
    time.sleep(deps.jobs.lease_s * 1.2)  # no more beats: the lease runs out
    assert reconcile.reconcile(deps).lease_expired == 1


def test_the_reconciler_hands_out_only_what_the_broker_lost(deps: ServiceDeps) -> None:
    queue = _queue(deps)
    image_ids = [_upload(deps, ["thumbnail"], seed=n) for n in range(5)]
    queue.sent.clear()
    long_ago = utcnow() - timedelta(seconds=deps.jobs.requeue_after_s + 1)
    with deps.sessions.begin() as session:
        session.execute(update(ImageRow).values(due_at=long_ago, enqueued_at=long_ago))
    queue.reported_depth = 5  # a slow but healthy backlog: nothing is handed out twice
    assert reconcile.reconcile(deps).lost_by_broker == 0 and queue.sent == []
    queue.reported_depth = 2  # three messages are gone (a broker restart)
    assert reconcile.reconcile(deps).lost_by_broker == 3
    assert len(queue.sent) == 3 and set(queue.sent) <= set(image_ids)
    queue.reported_depth = None  # broker unreachable: wait, do not guess
    assert reconcile.reconcile(deps).lost_by_broker == 0


def test_a_job_whose_enqueue_failed_is_handed_out_by_the_next_round(deps: ServiceDeps) -> None:
    queue = _queue(deps)

    def broker_down(message: ProcessImage, recover: bool = False) -> None:
        raise ConnectionError("broker down")

    queue.enqueue = broker_down  # type: ignore[method-assign]
    image_id = _upload(deps, ["thumbnail"])  # accepted anyway: the database has it
    assert _image(deps, image_id).enqueued_at is None
    del queue.enqueue  # the broker is back
    assert reconcile.reconcile(deps).due == 1 and queue.sent == [image_id]
    assert reconcile.reconcile(deps).due == 0  # handed out once


def test_dlq_retry_gives_fresh_attempts_and_the_job_completes(deps: ServiceDeps) -> None:
    image_id = _upload(deps, ["thumbnail"])
    _store(deps).failures = 1000
    for _ in range(MAX_ATTEMPTS):
        _make_due(deps, image_id)
        process_image(deps, ProcessImage(image_id))
    [entry] = dead_letters.list_dead_letters(deps.sessions)
    _store(deps).failures = 0  # the outage is over

    result = dead_letters.retry(deps.sessions, [entry.id, "dlq_missing"])
    assert [e.id for e in result.retried] == [entry.id] and result.unknown == ["dlq_missing"]
    assert _variants(deps, image_id) == {"thumbnail": ("pending", 0, None)}
    assert dead_letters.list_dead_letters(deps.sessions) == []  # retried ones are hidden
    assert reconcile.reconcile(deps).due == 1  # the CLI cannot enqueue; the reconciler does
    process_image(deps, ProcessImage(image_id))
    assert _variants(deps, image_id) == {"thumbnail": ("done", 1, None)}
    with deps.sessions() as session:
        row = session.get(DeadLetterRow, entry.id)
        assert row is not None and row.retried_at is not None
    [variant] = _image(deps, image_id).variants
    assert variant.storage_key is not None and deps.store.exists(variant.storage_key)


@pytest.mark.parametrize("attempt", [1, 2, 5, 8, 9, 20])
def test_backoff_is_full_jitter_under_an_exponential_ceiling(attempt: int) -> None:
    policy = RetryPolicy(5, base_s=1.0, max_s=300.0)
    ceiling = min(300.0, 2.0**attempt)
    assert policy.delay_s(attempt, lambda: 0.0) == 0.0
    assert policy.delay_s(attempt, lambda: 0.999999) == pytest.approx(ceiling, rel=1e-5)
    delays = [policy.delay_s(attempt) for _ in range(2000)]
    assert min(delays) >= 0.0 and max(delays) <= ceiling
    assert max(delays) - min(delays) > ceiling * 0.8  # spread across the range, not fixed
