"""An image's job in the database: claimed under a lease, kept alive, settled, retried.

The database, not the broker, decides who works on what (docs/reliability.md):

- ``images.due_at`` is when the job may next be claimed; None when nothing is left.
- ``claim`` takes the job only once it is due, counts an attempt for every variant it
  takes, and pushes ``due_at`` one lease ahead under a fresh ``lease_owner`` token. A
  duplicate message, or one for a job another worker holds, finds nothing to do.
- ``Heartbeat`` keeps pushing ``due_at`` while the work goes on, so a lease runs out only
  when its worker is gone; then ``expire_lease`` records the attempt as lost and the job
  falls due again (or fails with ``worker_lost`` once its attempts are used up).
- ``settle`` records the outcome only if the lease is still the caller's: a worker that
  lost its lease (too slow, cut off) cannot overwrite the attempt that replaced it.
  Transient failures come back after a backoff scheduled in ``due_at``, never in a
  broker countdown; permanent ones fail at once; used-up attempts become dead letters.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType

from imgpipe.db import dead_letters as dead_letters_db
from imgpipe.db import jobs as jobs_db
from imgpipe.db import repo
from imgpipe.db.schema import ImageRow, VariantRow, utcnow
from imgpipe.db.session import Session
from imgpipe.domain.errors import ImgpipeError, UnexpectedFailure, WorkerLost
from imgpipe.domain.media import ProbeResult, probe_facts
from imgpipe.domain.profiles import VariantSpec
from imgpipe.domain.states import ImageStatus, VariantStatus
from imgpipe.jobs.messages import ProcessImage
from imgpipe.services import webhooks
from imgpipe.services.deps import ServiceDeps

log = logging.getLogger(__name__)

_TERMINAL = (ImageStatus.DONE, ImageStatus.PARTIAL, ImageStatus.FAILED)


@dataclass(frozen=True, slots=True)
class Claim:
    image_id: str
    sha256: str
    lease_owner: str
    attempt_id: int
    specs: dict[str, VariantSpec]  # by variant name


@dataclass(frozen=True, slots=True)
class Stored:
    """A variant made and stored."""

    width: int
    height: int
    bytes: int
    storage_key: str


VariantResult = Stored | ImgpipeError


@dataclass(frozen=True, slots=True)
class Settled:
    status: ImageStatus | None  # None: the lease was lost, nothing was recorded
    event_id: str | None  # a webhook event to hand out now


def worker_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"[:200]


def hand_out(deps: ServiceDeps, image_id: str, recover: bool = False) -> bool:
    """Give the job to the broker; on failure leave it for the reconciler's next round.

    ``recover``: the job was handed out before (its worker died, a retry fell due, the
    broker lost it, a dead letter was retried): it goes ahead of new work, so how long
    it waits does not grow with the backlog."""
    try:
        deps.queue.enqueue(ProcessImage(image_id), recover=recover)
        return True
    except Exception:  # any broker client error; the adapter's types are not ours to name
        log.warning("enqueue failed; the reconciler will hand the job out", exc_info=True)
        _forget_enqueue(deps, image_id)
        return False


def _forget_enqueue(deps: ServiceDeps, image_id: str) -> None:
    try:
        with deps.sessions.begin() as session:
            jobs_db.forget_enqueued(session, image_id)
    except Exception:  # the database is down too: the reconciler notices the job later
        log.warning("could not mark the job for the reconciler", exc_info=True)


def claim(deps: ServiceDeps, image_id: str) -> tuple[Claim | None, str | None]:
    """Take the image's unfinished variants under a new lease, if the job is due.

    Returns the claim (None: nothing to do now) and a webhook event to hand out when the
    image settled here instead (attempts used up, or profiles no longer configured).
    """
    now = utcnow()
    with deps.sessions.begin() as session:
        image = jobs_db.locked_image(session, image_id)
        if image is None or image.due_at is None or image.due_at > now:
            return None, None  # deleted, finished, held by a live lease, or not yet due
        if image.deleted_at is not None:  # hidden by DELETE: no more work, until a restore
            image.due_at = None
            return None, None
        if image.lease_owner is not None:
            expire_lease(deps, session, image, now)
        specs: dict[str, VariantSpec] = {}
        for variant in repo.variants_to_do(image):
            spec = deps.profiles.variant(variant.name)
            if spec is None:
                _fail(variant, "unknown_profile", f"Profile of {variant.name!r} is gone.")
            else:
                specs[variant.name] = spec
        if not specs:
            image.due_at = None
            return None, settle_if_done(deps, session, image)
        claimed = [v for v in image.variants if v.name in specs]
        for variant in claimed:
            variant.status = VariantStatus.PROCESSING.value
            variant.attempts += 1
        token = secrets.token_hex(16)
        image.lease_owner = token
        image.due_at = now + timedelta(seconds=deps.jobs.lease_s)
        attempt = jobs_db.add_attempt(
            session,
            image_id=image.id,
            attempt=max(v.attempts for v in claimed),
            lease_owner=token,
            worker=worker_name(),
            variants=sorted(specs),
            claimed_at=now,
        )
        repo.refresh_status(image, now)
        session.flush()
        return Claim(image.id, image.sha256, token, attempt.id, specs), None


def expire_lease(deps: ServiceDeps, session: Session, image: ImageRow, now: datetime) -> None:
    """The lease ran out: its worker is gone. Record the attempt as lost; requeue or fail.

    The caller holds the image row (locked) in ``session`` and commits.
    """
    lost = WorkerLost(
        "The worker stopped (killed, crashed or out of memory) before it recorded an outcome."
    )
    for attempt in jobs_db.open_attempts(session, image.id):
        attempt.finished_at = now
        attempt.outcome = "lost"
        attempt.error_code, attempt.error = lost.code, lost.detail
    image.lease_owner = None
    exhausted: list[VariantRow] = []
    for variant in image.variants:
        if variant.status != VariantStatus.PROCESSING.value:
            continue
        if deps.jobs.retry.exhausted(variant.attempts):
            _fail(variant, lost.code, _gave_up(lost, variant.attempts))
            exhausted.append(variant)
        else:
            variant.status = VariantStatus.PENDING.value
    if exhausted:
        _dead_letter(session, image, exhausted, lost, now)
    work_left = bool(repo.variants_to_do(image))
    image.due_at = now if work_left else None
    log.warning(
        "lease expired", extra={"image_id": image.id, "failed": [v.name for v in exhausted]}
    )


def settle(
    deps: ServiceDeps,
    claim: Claim,
    results: dict[str, VariantResult],
    metadata: dict[str, object] | None = None,
    facts: ProbeResult | None = None,
) -> Settled:
    """Record each variant's outcome, schedule retries, and release the lease; and the
    original's header ``facts`` on a row that has none (uploaded before 0010)."""
    now = utcnow()
    policy = deps.jobs.retry
    with deps.sessions.begin() as session:
        image = jobs_db.locked_image(session, claim.image_id)
        if image is None:
            return Settled(None, None)  # deleted while it was being made
        if image.lease_owner != claim.lease_owner:
            log.warning("lease lost before the outcome was recorded; results discarded")
            return Settled(None, None)
        delays: list[float] = []
        exhausted: list[VariantRow] = []
        first_error: ImgpipeError | None = None
        for variant in image.variants:
            if variant.name not in claim.specs:
                continue
            result = results.get(variant.name) or UnexpectedFailure("No outcome was recorded.")
            if isinstance(result, Stored):
                variant.status = VariantStatus.DONE.value
                variant.width, variant.height = result.width, result.height
                variant.bytes, variant.storage_key = result.bytes, result.storage_key
                variant.error_code = variant.error = None
                continue
            first_error = first_error or result
            if result.retryable and not policy.exhausted(variant.attempts):
                variant.status = VariantStatus.PENDING.value
                delays.append(policy.delay_s(variant.attempts))
            elif result.retryable:
                _fail(variant, result.code, _gave_up(result, variant.attempts))
                exhausted.append(variant)
            else:
                _fail(variant, result.code, result.detail)
        if exhausted:
            assert first_error is not None
            _dead_letter(session, image, exhausted, first_error, now)
        if metadata:
            image.image_metadata = dict(metadata)
            repo.set_phash(image, metadata.get("phash"))
        if facts is not None and image.probe is None:
            image.probe = probe_facts(facts)
        image.lease_owner = None
        image.due_at = now + timedelta(seconds=min(delays)) if delays else None
        status = repo.refresh_status(image, now)
        attempt = jobs_db.get_attempt(session, claim.attempt_id)
        if attempt is not None:
            attempt.finished_at = now
            attempt.outcome = "retry" if delays else status.value
            if first_error is not None:
                attempt.error_code, attempt.error = first_error.code, first_error.detail
        event_id = settle_if_done(deps, session, image)
    return Settled(status, event_id)


def renew(deps: ServiceDeps, claim: Claim) -> bool:
    """Push the lease one period ahead; False if it is no longer this claim's."""
    due = utcnow() + timedelta(seconds=deps.jobs.lease_s)
    with deps.sessions.begin() as session:
        return jobs_db.renew_lease(session, claim.image_id, claim.lease_owner, due)


@dataclass
class Heartbeat:
    """Renews a claim's lease every third of the lease, on a thread, while work goes on."""

    deps: ServiceDeps
    claim: Claim
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Heartbeat:
        self._thread = threading.Thread(target=self._run, name="imgpipe-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.deps.jobs.lease_s / 3):
            try:
                if not renew(self.deps, self.claim):
                    log.warning("lease taken over; this attempt's results will be discarded")
                    return
            except Exception:  # a database blip: the next beat may get through
                log.warning("heartbeat failed", exc_info=True)


def reset_for_retry(
    session: Session, image: ImageRow, names: list[str], now: datetime, enqueued: bool = True
) -> None:
    """Make the named variants pending again with fresh attempts (reprocess, dlq retry).

    ``enqueued=False`` leaves the hand-out to the reconciler's next round (for callers
    with no broker connection, such as the CLI).
    """
    for variant in image.variants:
        if variant.name in names:
            variant.status = VariantStatus.PENDING.value
            variant.attempts = 0
            variant.error_code = variant.error = None
    image.lease_owner = None  # a worker still on the old job cannot record over this one
    image.due_at = now
    image.enqueued_at = now if enqueued else None
    repo.refresh_status(image, now)


def _fail(variant: VariantRow, code: str, detail: str) -> None:
    variant.status = VariantStatus.FAILED.value
    variant.error_code, variant.error = code, detail
    log.warning("variant failed", extra={"variant": variant.name, "code": code})


def _gave_up(error: ImgpipeError, attempts: int) -> str:
    return f"{error.detail} Gave up after {attempts} attempts; see `imgpipe dlq list`."


def _dead_letter(
    session: Session,
    image: ImageRow,
    variants: list[VariantRow],
    error: ImgpipeError,
    now: datetime,
) -> None:
    dead_letters_db.add(
        session,
        "dlq_" + secrets.token_hex(10),
        image,
        variants=sorted(v.name for v in variants),
        attempts=max(v.attempts for v in variants),
        error_code=error.code,
        error=error.detail,
        created_at=now,
    )
    log.error(
        "dead-lettered",
        extra={"image_id": image.id, "code": error.code, "variants": [v.name for v in variants]},
    )


def settle_if_done(deps: ServiceDeps, session: Session, image: ImageRow) -> str | None:
    """Roll up; if the image just settled, add its webhook event to this transaction."""
    status = repo.refresh_status(image)
    if status not in _TERMINAL:
        return None
    image.due_at = None
    return webhooks.record_event(deps, session, image)
