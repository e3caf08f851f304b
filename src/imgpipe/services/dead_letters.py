"""Dead letters: jobs whose variants ran out of attempts, with their history; retry them.

Written by services.jobs when a variant uses up MAX_ATTEMPTS on transient failures or
lost workers. Shown by `imgpipe dlq list` and GET /v1/admin/dead-letters; a retry gives
the variants fresh attempts, like Sidekiq's "retry now" or an SQS redrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from imgpipe.db import dead_letters as dead_letters_db
from imgpipe.db import jobs as jobs_db
from imgpipe.db.schema import DeadLetterRow, utcnow
from imgpipe.db.session import Session, SessionFactory
from imgpipe.domain.states import VariantStatus
from imgpipe.services import jobs, moderation

HISTORY_LIMIT = 50


@dataclass(frozen=True, slots=True)
class AttemptView:
    attempt: int
    worker: str
    variants: list[str]
    claimed_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error_code: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    id: str
    image_id: str
    owner: str
    variants: list[str]
    attempts: int
    error_code: str
    error: str
    created_at: datetime
    retried_at: datetime | None
    history: list[AttemptView]


@dataclass(frozen=True, slots=True)
class RetryResult:
    retried: list[DeadLetterView]
    unknown: list[str]

    @property
    def image_ids(self) -> list[str]:
        return sorted({d.image_id for d in self.retried})


def list_dead_letters(
    sessions: SessionFactory, include_retried: bool = False, limit: int = 100
) -> list[DeadLetterView]:
    """Newest first; retried ones only when asked."""
    with sessions() as session:
        rows = dead_letters_db.newest(session, include_retried, limit)
        return [_view(session, row) for row in rows]


def retry(
    sessions: SessionFactory, dead_letter_ids: list[str], enqueued: bool = False
) -> RetryResult:
    """Give each dead letter's failed variants fresh attempts and make the job due now.

    The caller hands the jobs out if it can reach the broker (then ``enqueued=True``);
    otherwise the reconciler does within RECONCILE_S.
    """
    now = utcnow()
    retried: list[DeadLetterView] = []
    unknown: list[str] = []
    for dead_letter_id in dict.fromkeys(dead_letter_ids):
        with sessions.begin() as session:
            row = dead_letters_db.get(session, dead_letter_id)
            image = jobs_db.locked_image(session, row.image_id) if row is not None else None
            if row is None or image is None:
                unknown.append(dead_letter_id)
                continue
            failed = {v.name for v in image.variants if v.status == VariantStatus.FAILED.value}
            names = [name for name in row.variants if name in failed]
            if names:
                jobs.reset_for_retry(session, image, names, now, enqueued=enqueued)
            if moderation.DEAD_LETTER_NAME in row.variants:  # sent by the reconciler
                moderation.reset_for_retry(session, image.id, now)
            row.retried_at = now
            session.flush()
            retried.append(_view(session, row))
    return RetryResult(retried, unknown)


def _view(session: Session, row: DeadLetterRow) -> DeadLetterView:
    # The history is this dead letter's own: the attempts since the image's previous
    # dead letter was retried (or since the beginning), up to this one.
    attempts = dead_letters_db.history(session, row, HISTORY_LIMIT)
    history = [
        AttemptView(
            attempt=a.attempt,
            worker=a.worker,
            variants=list(a.variants),
            claimed_at=a.claimed_at,
            finished_at=a.finished_at,
            outcome=a.outcome,
            error_code=a.error_code,
            error=a.error,
        )
        for a in reversed(attempts)
    ]
    return DeadLetterView(
        id=row.id,
        image_id=row.image_id,
        owner=row.owner,
        variants=list(row.variants),
        attempts=row.attempts,
        error_code=row.error_code,
        error=row.error,
        created_at=row.created_at,
        retried_at=row.retried_at,
        history=history,
    )
