"""Moderation as a job of its own: started at upload beside the variants, leased, retried,
dead-lettered, never failing the image; verdicts, admin decisions and the flagged webhook.

Real SQLite, a real local store, real images; the backend returns chosen scores (or
fails as told), and the queue records what it is handed.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select, update

from imgpipe.db.schema import (
    DeadLetterRow,
    ModerationDecisionRow,
    ModerationRow,
    WebhookEventRow,
    utcnow,
)
from imgpipe.domain.errors import ImgpipeError
from imgpipe.domain.moderation import (
    DEFAULT_THRESHOLDS,
    ContentRejected,
    Decision,
    HeldForReview,
    Label,
    ModerationImage,
    ModerationPending,
    ModerationRefused,
    ModerationStatus,
    ModerationUnavailable,
    Policy,
)
from imgpipe.domain.retry import RetryPolicy
from imgpipe.jobs.messages import ModerateImage, ProcessImage
from imgpipe.notify.egress import AllowList
from imgpipe.services import dead_letters, ingest, moderation, queries
from imgpipe.services.deps import JobSettings, ModerationSettings, ServiceDeps, WebhookSettings
from imgpipe.services.process import process_image
from imgpipe.storage.local import LocalStore

from .sqlite_deps import sqlite_deps

MAX_ATTEMPTS = 3


class ChosenScores:
    """A backend that answers with the labels it is given, or fails as told."""

    model = "chosen-1"
    max_side = 64

    def __init__(self) -> None:
        self.labels: list[Label] = []
        self.failures: list[ImgpipeError] = []
        self.seen: list[tuple[int, int]] = []

    def check(self) -> None:
        pass

    def classify(self, image: ModerationImage) -> list[Label]:
        self.seen.append((image.width, image.height))
        if self.failures:
            raise self.failures.pop(0)
        return list(self.labels)


class RecordingQueue:
    def __init__(self) -> None:
        self.process: list[str] = []
        self.moderate: list[str] = []
        self.webhooks: list[str] = []

    def enqueue(self, message: ProcessImage, recover: bool = False) -> None:
        self.process.append(message.image_id)

    def enqueue_moderation(self, message: ModerateImage) -> None:
        self.moderate.append(message.image_id)

    def enqueue_webhook(self, message: object) -> None:
        self.webhooks.append(getattr(message, "event_id", ""))

    def check(self) -> None:
        pass

    def depth(self) -> int | None:
        return 0


@pytest.fixture
def deps(tmp_path: Path) -> Iterator[ServiceDeps]:
    queue = RecordingQueue()
    with sqlite_deps(
        tmp_path,
        store=LocalStore(tmp_path / "objects"),
        queue=queue,
        jobs=JobSettings(retry=RetryPolicy(MAX_ATTEMPTS, base_s=1.0, max_s=300.0), lease_s=30),
        moderation=ModerationSettings(
            moderator=ChosenScores(), policy=Policy.parse(DEFAULT_THRESHOLDS), queue=queue
        ),
        webhooks=WebhookSettings(
            secret_key=b"k" * 32, allow=AllowList.parse("127.0.0.1"), queue=queue
        ),
    ) as deps:
        yield deps


def _backend(deps: ServiceDeps) -> ChosenScores:
    assert isinstance(deps.moderation.moderator, ChosenScores)
    return deps.moderation.moderator


def _queue(deps: ServiceDeps) -> RecordingQueue:
    assert isinstance(deps.queue, RecordingQueue)
    return deps.queue


def _upload(deps: ServiceDeps, seed: int = 0, callback_url: str | None = None) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (seed % 256, 80, 160)).save(buffer, "PNG")
    data = buffer.getvalue()
    deps.staging_dir.mkdir(parents=True, exist_ok=True)
    path = deps.staging_dir / f"upload-{seed}"
    path.write_bytes(data)
    staged = ingest.StagedUpload(path, len(data), hashlib.sha256(data).hexdigest())
    view = ingest.ingest(deps, staged, "alice", ["thumbnail"], callback_url=callback_url)
    return view.id


def _row(deps: ServiceDeps, image_id: str) -> ModerationRow:
    with deps.sessions() as session:
        row = session.get(ModerationRow, image_id)
        assert row is not None
        session.expunge(row)
        return row


def _make_due(deps: ServiceDeps, image_id: str) -> None:
    with deps.sessions.begin() as session:
        session.execute(
            update(ModerationRow)
            .where(ModerationRow.image_id == image_id)
            .values(due_at=utcnow() - timedelta(milliseconds=1))
        )


def _moderate(deps: ServiceDeps, image_id: str) -> dict[str, object]:
    moderation.moderate_image(deps, ModerateImage(image_id))
    return queries.get_image(deps, image_id, "alice").moderation


def test_an_upload_starts_moderation_beside_the_variants(deps: ServiceDeps) -> None:
    image_id = _upload(deps)
    assert _queue(deps).process == [image_id] and _queue(deps).moderate == [image_id]
    view = queries.get_image(deps, image_id, "alice")
    assert view.moderation["status"] == "pending"
    process_image(deps, ProcessImage(image_id))  # variants do not wait for moderation
    view = queries.get_image(deps, image_id, "alice")
    assert view.status == "done" and view.moderation["status"] == "pending"
    moderated = _moderate(deps, image_id)
    assert moderated == {
        "status": "approved",
        "labels": [],
        "model": "chosen-1",
        "decided_by": "model:chosen-1",
        "reason": None,
        "error": None,
    }
    assert _backend(deps).seen == [(64, 48)]  # the backend's own small copy


@pytest.mark.parametrize(
    ("labels", "status"),
    [
        ([Label("FACE_FEMALE", 0.99, None)], "approved"),
        ([Label("BUTTOCKS_EXPOSED", 0.7, "nudity")], "review"),
        ([Label("Graphic Violence", 0.95, "violence")], "rejected"),
    ],
)
def test_scores_become_the_verdict_with_the_labels_that_count(
    deps: ServiceDeps, labels: list[Label], status: str
) -> None:
    _backend(deps).labels = labels
    image_id = _upload(deps)
    moderated = _moderate(deps, image_id)
    assert moderated["status"] == status
    expected = [
        {"name": x.name, "score": x.score, "category": x.category} for x in labels if x.category
    ]
    assert moderated["labels"] == expected
    with deps.sessions() as session:
        decisions = session.scalars(select(ModerationDecisionRow)).all()
        assert [(d.status, d.previous_status, d.decided_by) for d in decisions] == [
            (status, "pending", "model:chosen-1")
        ]


def test_a_failure_leaves_error_with_the_reason_and_is_retried_never_failing_the_image(
    deps: ServiceDeps,
) -> None:
    _backend(deps).failures = [ModerationUnavailable("Rekognition failed: ThrottlingException.")]
    image_id = _upload(deps)
    before = utcnow()
    moderated = _moderate(deps, image_id)
    assert moderated["status"] == "error"
    assert moderated["error"] == {
        "code": "moderation_unavailable",
        "message": "Rekognition failed: ThrottlingException.",
    }
    row = _row(deps, image_id)
    assert row.due_at is not None and row.lease_owner is None and row.attempts == 1
    assert before <= row.due_at <= utcnow() + timedelta(seconds=2)  # backoff, 2^1 s at most
    process_image(deps, ProcessImage(image_id))
    assert queries.get_image(deps, image_id, "alice").status == "done"

    _make_due(deps, image_id)
    assert moderation.reconcile(deps) == 1  # the retry is handed out once it falls due
    assert _queue(deps).moderate == [image_id, image_id]
    assert _moderate(deps, image_id)["status"] == "approved"
    assert _row(deps, image_id).due_at is None


def test_used_up_attempts_dead_letter_the_moderation_and_dlq_retry_restarts_it(
    deps: ServiceDeps,
) -> None:
    _backend(deps).failures = [ModerationUnavailable("down")] * MAX_ATTEMPTS
    image_id = _upload(deps)
    for _ in range(MAX_ATTEMPTS):
        _make_due(deps, image_id)
        moderated = _moderate(deps, image_id)
    assert moderated["status"] == "error"
    assert "Gave up after 3 attempts" in str(moderated["error"])
    assert _row(deps, image_id).due_at is None
    with deps.sessions() as session:
        letter = session.scalars(select(DeadLetterRow)).one()
        assert (letter.image_id, letter.variants, letter.attempts) == (
            image_id,
            ["moderation"],
            3,
        )
        letter_id = letter.id

    result = dead_letters.retry(deps.sessions, [letter_id])
    assert [x.id for x in result.retried] == [letter_id]
    row = _row(deps, image_id)
    assert row.attempts == 0 and row.due_at is not None
    assert moderation.reconcile(deps) == 1
    assert _moderate(deps, image_id)["status"] == "approved"


def test_an_image_the_backend_refuses_is_an_error_at_once_not_retried(deps: ServiceDeps) -> None:
    _backend(deps).failures = [ModerationRefused("Rekognition refused the image.")]
    image_id = _upload(deps)
    assert _moderate(deps, image_id)["status"] == "error"
    assert _row(deps, image_id).due_at is None
    with deps.sessions() as session:
        assert session.scalars(select(DeadLetterRow)).all() == []


def test_a_duplicate_message_or_a_live_lease_finds_nothing_to_do(deps: ServiceDeps) -> None:
    image_id = _upload(deps)
    _moderate(deps, image_id)
    _moderate(deps, image_id)  # the job settled: a second copy does nothing
    assert len(_backend(deps).seen) == 1


def test_a_dead_workers_lease_expires_and_the_attempt_counts(deps: ServiceDeps) -> None:
    image_id = _upload(deps)
    claim = moderation._claim(deps, image_id)  # the worker takes it, then dies
    assert claim is not None
    assert moderation._claim(deps, image_id) is None  # the lease is live
    _make_due(deps, image_id)
    moderated = _moderate(deps, image_id)
    assert moderated["status"] == "approved"
    assert _row(deps, image_id).attempts == 2


def test_an_admin_decision_wins_over_a_run_in_flight_and_is_recorded(deps: ServiceDeps) -> None:
    _backend(deps).labels = [Label("Graphic Violence", 0.95, "violence")]
    image_id = _upload(deps)
    claim = moderation._claim(deps, image_id)
    assert claim is not None
    view = moderation.decide(deps, image_id, Decision.APPROVE, "key:key_1 (root)", "a film still")
    assert view.moderation["status"] == "approved"
    moderation._settle(deps, claim, moderation._run(deps, claim))  # the run ends: discarded
    current, decisions = moderation.history(deps, image_id)
    assert current["status"] == "approved" and current["decided_by"] == "key:key_1 (root)"
    assert [(d.status, d.decided_by, d.reason) for d in decisions] == [
        ("approved", "key:key_1 (root)", "a film still")
    ]
    view = moderation.decide(deps, image_id, Decision.REJECT, "cli:ops", None)
    assert view.moderation["status"] == "rejected"
    _, decisions = moderation.history(deps, image_id)
    assert [(d.previous_status, d.status) for d in decisions] == [
        ("pending", "approved"),
        ("approved", "rejected"),
    ]


def test_review_queue_lists_every_owners_held_images_with_a_thumbnail(deps: ServiceDeps) -> None:
    _backend(deps).labels = [Label("BUTTOCKS_EXPOSED", 0.7, "nudity")]
    held = [_upload(deps, seed) for seed in (1, 2, 3)]
    for image_id in held:
        _moderate(deps, image_id)
    process_image(deps, ProcessImage(held[0]))
    page = moderation.review_queue(deps, ModerationStatus.REVIEW, 2, None)
    assert [i.image.id for i in page.items] == sorted(held)[:2] and page.next_cursor
    rest = moderation.review_queue(deps, ModerationStatus.REVIEW, 2, page.next_cursor)
    assert [i.image.id for i in rest.items] == sorted(held)[2:] and rest.next_cursor is None
    items = {i.image.id: i for i in page.items + rest.items}
    assert items[held[0]].thumbnail == f"/v1/admin/images/{held[0]}/variants/thumbnail"
    assert items[held[1]].thumbnail is None  # no variant made yet
    assert items[held[0]].owner == "alice"


def test_flagged_images_send_an_image_flagged_webhook(deps: ServiceDeps) -> None:
    _backend(deps).labels = [Label("BUTTOCKS_EXPOSED", 0.7, "nudity")]
    image_id = _upload(deps, callback_url="http://127.0.0.1:9/hook")
    _moderate(deps, image_id)
    with deps.sessions() as session:
        events = session.scalars(select(WebhookEventRow)).all()
        assert [e.type for e in events] == ["image.flagged"]
        body = json.loads(events[0].payload)
        assert body["data"]["moderation"]["status"] == "review"
        assert _queue(deps).webhooks == [events[0].id]
    # approving sends nothing more; rejecting flags again
    moderation.decide(deps, image_id, Decision.APPROVE, "cli:ops", None)
    moderation.decide(deps, image_id, Decision.REJECT, "cli:ops", None)
    with deps.sessions() as session:
        types = [e.type for e in session.scalars(select(WebhookEventRow))]
    assert types == ["image.flagged", "image.flagged"]


def test_keyless_delivery_follows_the_verdict(deps: ServiceDeps) -> None:
    image_id = _upload(deps)
    with pytest.raises(ModerationPending):
        moderation.check_keyless_delivery(deps, image_id)
    _backend(deps).labels = [Label("BUTTOCKS_EXPOSED", 0.7, "nudity")]
    _moderate(deps, image_id)
    with pytest.raises(HeldForReview):
        moderation.check_keyless_delivery(deps, image_id)
    moderation.decide(deps, image_id, Decision.REJECT, "cli:ops", None)
    with pytest.raises(ContentRejected):
        moderation.check_keyless_delivery(deps, image_id)
    moderation.decide(deps, image_id, Decision.APPROVE, "cli:ops", None)
    moderation.check_keyless_delivery(deps, image_id)


def test_with_moderation_off_nothing_is_queued_and_images_say_off(deps: ServiceDeps) -> None:
    off = replace(deps, moderation=ModerationSettings())
    image_id = _upload(off)
    assert _queue(deps).moderate == []
    assert queries.get_image(off, image_id, "alice").moderation["status"] == "off"
    moderation.check_keyless_delivery(off, image_id)
    assert moderation.reconcile(off) == 0
    # an admin may still decide on it
    view = moderation.decide(off, image_id, Decision.REJECT, "cli:ops", "reported")
    assert view.moderation["status"] == "rejected" and view.moderation["reason"] == "reported"


def test_under_serve_moderation_waits_for_a_lull_in_variant_jobs() -> None:
    import threading
    import time

    from imgpipe.container import VariantActivity

    activity = VariantActivity()
    assert activity.wait_for_lull(0.01)  # nothing running: at once
    release = threading.Event()

    def variant_job() -> None:
        with activity.running("img_1"):
            release.wait(5)

    worker = threading.Thread(target=variant_job)
    worker.start()
    time.sleep(0.05)
    assert not activity.wait_for_lull(0.05)  # a variant runs: moderation waits, bounded
    threading.Timer(0.1, release.set).start()
    started = time.monotonic()
    assert activity.wait_for_lull(5)  # and goes as soon as it ends
    assert time.monotonic() - started < 4
    worker.join()


def test_under_serve_moderation_waits_for_a_variant_job_handed_out_but_not_started() -> None:
    """An upload hands out its variant job, then its moderation job; the moderation
    worker may take its message first. It must still wait for those variants."""
    import threading
    import time

    from imgpipe.container import VariantActivity

    activity = VariantActivity()
    activity.expect("img_1")  # the upload handed its variant job to the queue
    assert not activity.wait_for_lull(0.05)  # not started yet: moderation still waits
    started = threading.Event()
    release = threading.Event()

    def variant_job() -> None:
        with activity.running("img_1"):
            started.set()
            release.wait(5)

    worker = threading.Thread(target=variant_job)
    worker.start()
    started.wait(5)
    assert not activity.wait_for_lull(0.05)  # now it runs: still waiting
    threading.Timer(0.1, release.set).start()
    begun = time.monotonic()
    assert activity.wait_for_lull(5)  # goes once the job that was handed out ends
    assert time.monotonic() - begun < 4
    worker.join()
    activity.expect("img_2")  # a job whose message is lost holds moderation up, bounded
    assert not activity.wait_for_lull(0.05)
