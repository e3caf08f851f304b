"""Moderation: a job of its own beside the variants, the verdict, and admins' decisions.

Started at upload, in parallel with the variants, on its own queue (``<QUEUE>.moderate``)
so it never takes a variant's slot. Its job lives in the ``moderations`` row the way an
image's lives in ``images``: claimed under a lease (``due_at`` pushed ahead under a fresh
``lease_owner``), settled only by the lease's holder, retried with backoff scheduled in
``due_at``, dead-lettered once ``MAX_ATTEMPTS`` are used up. A failure never touches the
image or its variants: the row says ``error`` with the reason and falls due again.

An admin's decision wins over a run still in flight (it clears the lease, so the run's
outcome is discarded) and every verdict, the model's or a person's, is recorded in
``moderation_decisions``.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from imgpipe.db import dead_letters as dead_letters_db
from imgpipe.db import moderation as moderation_db
from imgpipe.db import repo
from imgpipe.db.schema import ImageRow, ModerationRow, utcnow
from imgpipe.db.session import Session
from imgpipe.domain.errors import ImgpipeError, NotFound, UnexpectedFailure, WorkerLost
from imgpipe.domain.moderation import (
    HELD,
    Decision,
    Label,
    ModerationStatus,
    ModerationUnavailable,
    check_keyless,
    reported,
)
from imgpipe.domain.webhooks import EventType
from imgpipe.engine.moderation_input import moderation_input
from imgpipe.jobs.messages import ModerateImage
from imgpipe.services import webhooks
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.views import ImageView, image_view, moderation_view
from imgpipe.storage import keys
from imgpipe.telemetry.context import image_context

log = logging.getLogger(__name__)

BATCH = 500
DEAD_LETTER_NAME = "moderation"  # what a dead letter lists instead of variant names


# --- at upload -----------------------------------------------------------------------


def new_row(deps: ServiceDeps, now: datetime) -> ModerationRow | None:
    """The moderation row of a new image (None while MODERATION is off), due at once."""
    if not deps.moderation.enabled:
        return None
    return ModerationRow(
        status=ModerationStatus.PENDING.value,
        labels=[],
        attempts=0,
        due_at=now,
        enqueued_at=now,
        created_at=now,
        updated_at=now,
    )


def hand_out(deps: ServiceDeps, image_id: str) -> bool:
    """Give the job to the broker; on failure the reconciler sends it later."""
    queue = deps.moderation.queue
    if queue is None or not deps.moderation.enabled:
        return False
    try:
        queue.enqueue_moderation(ModerateImage(image_id))
        return True
    except Exception:  # any broker client error: the row is due, the reconciler resends
        log.warning("moderation enqueue failed; the reconciler will resend it", exc_info=True)
        return False


# --- the job -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claim:
    image_id: str
    sha256: str
    lease_owner: str
    attempts: int


def lease_s(deps: ServiceDeps) -> float:
    """A run holds its lease for at least twice its timeout: no heartbeat is needed."""
    return max(deps.jobs.lease_s, 2 * deps.moderation.timeout_s + 5)


def moderate_image(deps: ServiceDeps, message: ModerateImage) -> None:
    with image_context(message.image_id):
        claim = _claim(deps, message.image_id)
        if claim is None:
            return
        outcome = _run(deps, claim)
        _settle(deps, claim, outcome)


def _claim(deps: ServiceDeps, image_id: str) -> Claim | None:
    now = utcnow()
    with deps.sessions.begin() as session:
        row = moderation_db.locked(session, image_id)
        if row is None or row.due_at is None or row.due_at > now:
            return None  # off, settled, held by a live lease, or waiting for its retry
        if row.lease_owner is not None:
            _expire(deps, session, row, now)
            if row.due_at is None:
                return None
        image = repo.get_image_any_owner(session, image_id)
        if image is None:
            return None
        row.attempts += 1
        row.lease_owner = secrets.token_hex(16)
        row.due_at = now + timedelta(seconds=lease_s(deps))
        row.updated_at = now
        return Claim(image_id, image.sha256, row.lease_owner, row.attempts)


def _run(deps: ServiceDeps, claim: Claim) -> list[Label] | ImgpipeError:
    moderator = deps.moderation.moderator
    if moderator is None:
        return ModerationUnavailable("MODERATION is off in this worker.")
    started = time.monotonic()
    try:
        with deps.store.local_file(keys.original(claim.sha256)) as path:
            image = moderation_input(path, deps.limits, moderator.max_side)
        labels = moderator.classify(image)
    except ImgpipeError as exc:
        return exc
    except Exception as exc:  # unknown: retried like a transient failure, then dead-lettered
        log.exception("unexpected error while moderating")
        return UnexpectedFailure(f"{type(exc).__name__}: {exc}"[:500])
    elapsed = time.monotonic() - started
    if elapsed > deps.moderation.timeout_s:
        return ModerationUnavailable(
            f"Moderation took {elapsed:.1f} s, past MODERATION_TIMEOUT_S "
            f"({deps.moderation.timeout_s:g} s)."
        )
    return labels


def _settle(deps: ServiceDeps, claim: Claim, outcome: list[Label] | ImgpipeError) -> None:
    now = utcnow()
    event_id = None
    with deps.sessions.begin() as session:
        row = moderation_db.locked(session, claim.image_id)
        if row is None or row.lease_owner != claim.lease_owner:
            log.info("moderation outcome discarded: decided or re-claimed meanwhile")
            return
        row.lease_owner = None
        row.updated_at = now
        if isinstance(outcome, ImgpipeError):
            _record_failure(deps, session, row, outcome, now)
        else:
            moderator = deps.moderation.moderator
            model = moderator.model if moderator is not None else "unknown"
            status = deps.moderation.policy.verdict(outcome)
            event_id = _decide(
                deps, session, row, status, f"model:{model}", None, _labels(outcome), now
            )
            row.model = model
            row.due_at = None
    deps.render_runtime.forget_image(claim.image_id)  # renders here see the verdict at once
    if event_id is not None:
        webhooks.hand_out_first(deps, event_id)


def _labels(labels: list[Label]) -> list[dict[str, Any]]:
    return [{"name": x.name, "score": x.score, "category": x.category} for x in reported(labels)]


def _record_failure(
    deps: ServiceDeps, session: Session, row: ModerationRow, error: ImgpipeError, now: datetime
) -> None:
    policy = deps.jobs.retry
    row.status = ModerationStatus.ERROR.value
    row.error_code, row.error = error.code, error.detail
    if error.retryable and not policy.exhausted(row.attempts):
        row.due_at = now + timedelta(seconds=policy.delay_s(row.attempts))
        log.warning("moderation failed; retrying", extra={"code": error.code})
        return
    row.due_at = None
    if error.retryable:
        row.error = f"{error.detail} Gave up after {row.attempts} attempts; see `imgpipe dlq list`."
        _dead_letter(session, row, error, now)
    log.warning("moderation failed for good", extra={"code": error.code})


def _expire(deps: ServiceDeps, session: Session, row: ModerationRow, now: datetime) -> None:
    """The lease ran out: the worker died mid-run. Count the attempt as lost."""
    lost = WorkerLost("The worker stopped before it recorded the moderation outcome.")
    row.lease_owner = None
    _record_failure(deps, session, row, lost, now)
    if row.due_at is not None:
        row.due_at = now  # lost, not failed: no backoff


def _dead_letter(session: Session, row: ModerationRow, error: ImgpipeError, now: datetime) -> None:
    image = repo.get_image_any_owner(session, row.image_id)
    if image is None:
        return
    dead_letters_db.add(
        session,
        "dlq_" + secrets.token_hex(10),
        image,
        variants=[DEAD_LETTER_NAME],
        attempts=row.attempts,
        error_code=error.code,
        error=error.detail,
        created_at=now,
    )
    log.error("moderation dead-lettered", extra={"image_id": row.image_id, "code": error.code})


def reset_for_retry(session: Session, image_id: str, now: datetime) -> bool:
    """Fresh attempts for a dead-lettered moderation (``imgpipe dlq retry``)."""
    row = moderation_db.locked(session, image_id)
    if row is None or row.status != ModerationStatus.ERROR.value:
        return False
    row.attempts = 0
    row.lease_owner = None
    row.due_at = now
    row.enqueued_at = None  # the reconciler's next round sends it
    return True


def _decide(
    deps: ServiceDeps,
    session: Session,
    row: ModerationRow,
    status: ModerationStatus,
    decided_by: str,
    reason: str | None,
    labels: list[dict[str, Any]] | None,
    now: datetime,
) -> str | None:
    """Record a verdict; returns the ``image.flagged`` event to hand out, if any."""
    previous = row.status
    row.status = status.value
    row.decided_by = decided_by
    row.reason = reason
    row.error_code = row.error = None
    if labels is not None:
        row.labels = labels
    row.updated_at = now
    moderation_db.add_decision(
        session,
        image_id=row.image_id,
        status=status.value,
        previous_status=previous,
        decided_by=decided_by,
        reason=reason,
        labels=list(row.labels or []),
        created_at=now,
    )
    log.info("moderation verdict", extra={"status": status.value, "decided_by": decided_by})
    if status not in HELD or previous == status.value:
        return None
    session.flush()
    image = repo.get_image_any_owner(session, row.image_id)
    if image is None:
        return None
    return webhooks.record_event(deps, session, image, EventType.IMAGE_FLAGGED)


# --- the reconciler --------------------------------------------------------------------


def reconcile(deps: ServiceDeps, now: datetime | None = None) -> int:
    """Send again every moderation job that is due and has no live message: a retry
    whose backoff ended, an expired lease, an enqueue that failed, or a message unclaimed
    for REQUEUE_AFTER_S (resent at most once per that period; a duplicate finds the
    lease taken and does nothing)."""
    if not deps.moderation.enabled:
        return 0
    now = now or utcnow()
    stale = now - timedelta(seconds=deps.jobs.requeue_after_s)
    with deps.sessions() as session:
        ids = moderation_db.due_unsent(session, now, stale, BATCH)
    sent = 0
    for image_id in ids:
        with deps.sessions.begin() as session:
            row = moderation_db.locked(session, image_id)
            if row is None or row.due_at is None or row.due_at > now:
                continue
            row.enqueued_at = now
        if not hand_out(deps, image_id):
            break  # the broker is down: the rest wait for the next round
        sent += 1
    if sent:
        log.info("moderation jobs handed out", extra={"jobs": sent})
    return sent


def recover_after_restart(deps: ServiceDeps) -> int:
    """On `serve` start (embedded queue): every lease is a dead process's."""
    if not deps.moderation.enabled:
        return 0
    now = utcnow()
    with deps.sessions.begin() as session:
        for row in moderation_db.leased(session):
            _expire(deps, session, row, now)
        for row in moderation_db.scheduled(session):
            row.enqueued_at = None
    return reconcile(deps, now)


# --- admins ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionView:
    status: str
    previous_status: str | None
    decided_by: str
    reason: str | None
    labels: list[dict[str, Any]]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ReviewItem:
    owner: str
    image: ImageView
    thumbnail: str | None  # the admin URL of the smallest done variant


@dataclass(frozen=True, slots=True)
class ReviewPage:
    items: list[ReviewItem]
    next_cursor: str | None


def review_queue(
    deps: ServiceDeps, status: ModerationStatus, limit: int, cursor: str | None
) -> ReviewPage:
    """Images with this moderation status, every owner's, oldest decision first (the
    queue's order); ``cursor`` is a previous page's ``next_cursor``."""
    with deps.read_sessions() as session:
        rows = moderation_db.images_with_status(session, status.value, cursor, limit + 1)
        items = [ReviewItem(r.owner, image_view(r), _thumbnail(r)) for r in rows[:limit]]
    next_cursor = items[-1].image.id if len(rows) > limit else None
    return ReviewPage(items, next_cursor)


def _thumbnail(image: ImageRow) -> str | None:
    done = [v for v in image.variants if v.status == "done" and v.width and v.height]
    if not done:
        return None
    smallest = min(done, key=lambda v: (v.width or 0) * (v.height or 0))
    return admin_variant_url(image.id, smallest.name)


def admin_variant_url(image_id: str, name: str) -> str:
    return f"/v1/admin/images/{image_id}/variants/{name}"


def decide(
    deps: ServiceDeps, image_id: str, decision: Decision, decided_by: str, reason: str | None
) -> ImageView:
    """An admin's approve or reject, for any owner's image; recorded with who and why."""
    now = utcnow()
    with deps.sessions.begin() as session:
        image = repo.get_image_any_owner(session, image_id)
        if image is None:
            raise NotFound(f"No image {image_id}.")
        row = moderation_db.locked(session, image_id)
        if row is None:  # uploaded while moderation was off: decided all the same
            row = ModerationRow(
                status=ModerationStatus.OFF.value,
                labels=[],
                attempts=0,
                created_at=now,
                updated_at=now,
            )
            image.moderation = row
            session.flush()
        row.lease_owner = None  # a run in flight cannot overwrite a person's decision
        row.due_at = None
        event_id = _decide(deps, session, row, decision.status, decided_by, reason, None, now)
        session.flush()
        session.refresh(image)
        view = image_view(image)
    deps.render_runtime.forget_image(image_id)  # renders here see the decision at once
    if event_id is not None:
        webhooks.hand_out_first(deps, event_id)
    return view


def history(deps: ServiceDeps, image_id: str) -> tuple[dict[str, Any], list[DecisionView]]:
    """The image's moderation as the resource shows it, and every decision, oldest first."""
    with deps.read_sessions() as session:
        image = repo.get_image_any_owner(session, image_id)
        if image is None:
            raise NotFound(f"No image {image_id}.")
        decisions = moderation_db.decisions(session, image_id)
        return moderation_view(image.moderation), [
            DecisionView(
                d.status, d.previous_status, d.decided_by, d.reason, list(d.labels), d.created_at
            )
            for d in decisions
        ]


def open_variant_as_admin(deps: ServiceDeps, image_id: str, name: str) -> Any:
    """Any owner's variant, for the review queue (admins act across owners)."""
    from imgpipe.services import queries

    with deps.read_sessions() as session:
        image = repo.get_image_any_owner(session, image_id)
        owner = image.owner if image is not None else None
    if owner is None:
        raise NotFound(f"No image {image_id}.")
    return queries.open_variant(deps, image_id, owner, name)


# --- delivery ------------------------------------------------------------------------


def status_of(deps: ServiceDeps, image_id: str) -> str | None:
    """The image's moderation status; None when it has no row (moderation was off)."""
    with deps.read_sessions() as session:
        return moderation_db.status_of(session, image_id)


def check_keyless_delivery(deps: ServiceDeps, image_id: str) -> None:
    """Raise unless an output of this image may go to a request without an API key
    (signed render URLs here; public and signed variant URLs must call this too)."""
    check_keyless(status_of(deps, image_id), deps.moderation.enabled)
