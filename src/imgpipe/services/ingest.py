"""Accept an upload: validate by content, store the original durably, record, enqueue.

The caller has already streamed the bytes to a staging file while counting and hashing
them; nothing here holds the upload in memory or decodes pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from imgpipe.db import repo
from imgpipe.db.schema import ImageRow, VariantRow, utcnow
from imgpipe.domain.access import check_idempotency_key
from imgpipe.domain.filenames import clean_filename
from imgpipe.domain.ids import new_image_id
from imgpipe.domain.media import probe_facts
from imgpipe.domain.profiles import Profile
from imgpipe.domain.states import ImageStatus, VariantStatus
from imgpipe.engine.probe import probe
from imgpipe.services import durability, idempotency, jobs, moderation, webhooks
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.queries import get_image
from imgpipe.services.views import ImageView, image_view
from imgpipe.telemetry import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StagedUpload:
    """An upload already on local disk, with the size and sha256 counted while streaming,
    and the file name the client gave (unsanitised; ``ingest`` cleans it)."""

    path: Path
    size: int
    sha256: str
    filename: str | None = None


def ingest(
    deps: ServiceDeps,
    staged: StagedUpload,
    owner: str,
    profile_names: list[str] | None = None,
    callback_url: str | None = None,
    image_id: str | None = None,
    idempotency_key: str | None = None,
) -> ImageView:
    """Returns the new image once its original is durably stored and verified.

    With an ``idempotency_key``, a retry of the same request returns the first image.
    """
    if idempotency_key is None:
        return _ingest(deps, staged, owner, profile_names, callback_url, image_id)
    key = check_idempotency_key(idempotency_key)
    digest = idempotency.request_hash(staged.sha256, profile_names, callback_url)
    first = idempotency.reserve(deps, owner, key, digest)
    if first is not None:
        staged.path.unlink(missing_ok=True)
        return get_image(deps, first, owner)
    try:
        view = _ingest(deps, staged, owner, profile_names, callback_url, image_id)
    except BaseException:
        idempotency.release(deps, owner, key)
        raise
    idempotency.complete(deps, owner, key, view.id, 202)
    return view


def _ingest(
    deps: ServiceDeps,
    staged: StagedUpload,
    owner: str,
    profile_names: list[str] | None,
    callback_url: str | None,
    image_id: str | None,
) -> ImageView:
    profiles = deps.profiles.select(profile_names)
    if callback_url is not None:
        webhooks.check_callback_url(deps, callback_url)
    facts = probe(staged.path, deps.limits)
    # Same bytes already stored: one original serves both (content-addressed).
    replicated = durability.store_original(
        deps, staged.path, staged.sha256, facts.format.media_type
    )

    now = utcnow()
    with deps.sessions.begin() as session:
        row = ImageRow(
            id=image_id or new_image_id(),
            owner=owner,
            sha256=staged.sha256,
            bytes=staged.size,
            format=facts.format.value,
            width=facts.width,
            height=facts.height,
            frames=facts.frames,
            # Every header fact, so renders from the render source never read the original.
            probe=probe_facts(facts),
            filename=clean_filename(staged.filename),
            status=ImageStatus.PENDING.value,
            callback_url=callback_url,
            image_metadata={},
            variants=_variant_rows(profiles),
            due_at=now,
            enqueued_at=now,
            replicated_at=now if replicated else None,
            moderation=moderation.new_row(deps, now),
        )
        repo.add_image(session, row)
        view = image_view(row)
    # After the commit, and never fatal to the upload: the original is durable and the
    # job is due in the database, which is the source of truth. If the broker does not
    # take (or later loses) the message, the reconciler hands the job out again.
    metrics.UPLOADS.labels("accepted", "").inc()
    metrics.UPLOAD_BYTES.inc(staged.size)
    log.info("upload accepted", extra={"image_id": view.id, "bytes": staged.size})
    jobs.hand_out(deps, view.id)
    if deps.moderation.enabled:  # its own job, in parallel with the variants
        moderation.hand_out(deps, view.id)
    return view


def _variant_rows(profiles: list[Profile]) -> list[VariantRow]:
    return [
        VariantRow(
            name=spec.name,
            profile=profile.name,
            profile_digest=profile.digest,
            format=spec.format.value,
            status=VariantStatus.PENDING.value,
            attempts=0,
        )
        for profile in profiles
        for spec in profile.variants()
    ]
