"""The reconciler: gives the broker every job it no longer holds a message for.

The database says which jobs are unfinished; the broker only carries reminders. Every
RECONCILE_S (in `imgpipe serve` and in each `imgpipe worker`'s main process) this hands
a job out again when:

- its lease expired (the worker died): the attempt is recorded as lost, and the job is
  retried or, with its attempts used up, failed and dead-lettered;
- it fell due (a retry's backoff ended) after its last message was sent, or its message
  never reached the broker;
- it has waited unclaimed for REQUEUE_AFTER_S after its message was sent, and the broker
  holds fewer messages than there are such jobs: the broker lost some (a Redis restart
  without persistence forgets its queue). Only that shortfall is handed out, oldest
  first, so a long but healthy backlog is not duplicated.

Everything it hands out goes to the broker's recovery queue, which workers drain before
new work: a job whose worker died waits for a free slot, not for the whole backlog.

Several reconcilers at once are harmless: each hand-out is a compare-and-set on
``enqueued_at``, and a duplicate message finds nothing to claim.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from imgpipe.db import jobs as jobs_db
from imgpipe.db import repo
from imgpipe.db.schema import utcnow
from imgpipe.services import jobs, webhooks
from imgpipe.services.deps import ServiceDeps
from imgpipe.telemetry import metrics

log = logging.getLogger(__name__)

BATCH = 500


@dataclass(frozen=True, slots=True)
class Report:
    lease_expired: int = 0
    due: int = 0
    lost_by_broker: int = 0


def reconcile(deps: ServiceDeps, now: datetime | None = None) -> Report:
    now = now or utcnow()
    report = Report(
        lease_expired=_expired_leases(deps, now),
        due=_due_jobs(deps, now),
        lost_by_broker=_lost_messages(deps, now),
    )
    if report != Report():
        log.info(
            "reconciled",
            extra={
                "lease_expired": report.lease_expired,
                "due": report.due,
                "lost_by_broker": report.lost_by_broker,
            },
        )
    return report


def recover_after_restart(deps: ServiceDeps) -> int:
    """On `serve` start: every lease is a dead process's and every queued message is gone.

    Only for the embedded queue, where this process was the only worker. Each lease
    counts as a lost attempt; every unfinished job is handed out.
    """
    now = utcnow()
    with deps.sessions() as session:
        image_ids = repo.unfinished_image_ids(session)
    for image_id in image_ids:
        _expire_and_hand_out(deps, image_id, now, force=True)
    return len(image_ids)


def _expired_leases(deps: ServiceDeps, now: datetime) -> int:
    with deps.sessions() as session:
        image_ids = jobs_db.expired_leases(session, now, BATCH)
    return sum(_expire_and_hand_out(deps, image_id, now) for image_id in image_ids)


def _expire_and_hand_out(
    deps: ServiceDeps, image_id: str, now: datetime, force: bool = False
) -> bool:
    with deps.sessions.begin() as session:
        image = jobs_db.locked_image(session, image_id)
        if image is None:
            return False
        expired = image.lease_owner is not None and (
            force or (image.due_at is not None and image.due_at <= now)
        )
        if expired:
            image.due_at = now
            jobs.expire_lease(deps, session, image, now)
        elif not force:
            return False  # renewed, or settled, since it was selected
        event_id = jobs.settle_if_done(deps, session, image)
        work_left = image.due_at is not None
        if work_left:
            image.enqueued_at = now
    if event_id is not None:
        webhooks.hand_out_first(deps, event_id)
    if work_left:
        jobs.hand_out(deps, image_id, recover=True)
    if expired:
        metrics.HANDED_OUT.labels("lease_expired").inc()
    return expired


def _due_jobs(deps: ServiceDeps, now: datetime) -> int:
    """Jobs that fell due after their last message: a retry whose backoff ended, or one
    whose enqueue failed."""
    with deps.sessions() as session:
        rows = jobs_db.due_unsent(session, now, BATCH)
    handed = 0
    for image_id, enqueued_at in rows:
        with deps.sessions.begin() as session:
            marked = jobs_db.mark_enqueued_if_unsent(session, image_id, now)
        if not marked:
            continue  # another reconciler handed it out first
        if not jobs.hand_out(deps, image_id, recover=True):
            break  # the broker is down: the rest wait for the next round
        reason = "not_enqueued" if enqueued_at is None else "retry_due"
        metrics.HANDED_OUT.labels(reason).inc()
        handed += 1
    return handed


def _lost_messages(deps: ServiceDeps, now: datetime) -> int:
    cutoff = now - timedelta(seconds=deps.jobs.requeue_after_s)
    with deps.sessions() as session:
        rows = jobs_db.sent_and_waiting(session, now, cutoff, BATCH)
    if not rows:
        return 0
    # None: the broker is unreachable (an enqueue would fail too) or is the in-process
    # queue, which loses messages only with this process (recover_after_restart).
    depth = deps.queue.depth()
    if depth is None:
        return 0
    missing = len(rows) - depth
    handed = 0
    for image_id, enqueued_at in rows[: max(missing, 0)]:
        with deps.sessions.begin() as session:
            marked = jobs_db.mark_enqueued_if_sent_at(session, image_id, enqueued_at, now)
        if not marked:
            continue  # another reconciler handed it out first
        if not jobs.hand_out(deps, image_id, recover=True):
            break
        metrics.HANDED_OUT.labels("lost_by_broker").inc()
        handed += 1
    if handed:
        log.warning(
            "broker lost messages; handed the jobs out again",
            extra={"jobs": handed, "queue_depth": depth},
        )
    return handed
