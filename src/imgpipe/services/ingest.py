"""Accept an upload: validate by content, store the original durably, record, enqueue.

The caller has already streamed the bytes to a staging file while counting and hashing
them; nothing here holds the upload in memory or decodes pixels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from imgpipe.db.schema import ImageRow, VariantRow
from imgpipe.domain.ids import new_image_id
from imgpipe.domain.profiles import Profile
from imgpipe.domain.states import ImageStatus, VariantStatus
from imgpipe.engine.probe import probe
from imgpipe.jobs.messages import ProcessImage
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.views import ImageView, image_view
from imgpipe.storage import keys
from imgpipe.telemetry import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StagedUpload:
    """An upload already on local disk, with the size and sha256 counted while streaming."""

    path: Path
    size: int
    sha256: str


def ingest(
    deps: ServiceDeps,
    staged: StagedUpload,
    owner: str,
    profile_names: list[str] | None = None,
    callback_url: str | None = None,
    image_id: str | None = None,
) -> ImageView:
    """Returns the new image once its original is durably stored and verified."""
    profiles = deps.profiles.select(profile_names)
    facts = probe(staged.path, deps.limits)
    key = keys.original(staged.sha256)
    if deps.store.exists(key):
        staged.path.unlink(missing_ok=True)  # same bytes already stored: keep one original
    else:
        deps.store.put_file(key, staged.path, staged.sha256)

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
            status=ImageStatus.PENDING.value,
            callback_url=callback_url,
            image_metadata={},
            variants=_variant_rows(profiles),
        )
        session.add(row)
        session.flush()
        view = image_view(row)
    # After the commit, and never fatal to the upload: the original is durable and the
    # image is pending in the database, which is the source of truth. If the broker does
    # not take (or later loses) the message, the recovery sweep enqueues the image again.
    metrics.UPLOADS.labels("accepted", "").inc()
    metrics.UPLOAD_BYTES.inc(staged.size)
    log.info("upload accepted", extra={"image_id": view.id, "bytes": staged.size})
    try:
        deps.queue.enqueue(ProcessImage(view.id))
    except Exception:  # any broker client error; the adapter's types are not ours to name
        log.warning(
            "enqueue failed; the image stays pending", extra={"image_id": view.id}, exc_info=True
        )
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
