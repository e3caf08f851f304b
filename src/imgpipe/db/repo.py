"""Images', variants' and direct uploads' queries. Each function takes an open Session.

SQL is written only in ``db/``, one module per kind of row: this one (images, their
variants, owners' images, pHash lookups, direct uploads), ``jobs.py`` (job leases,
attempts, hand-outs), ``moderation.py``, ``webhooks.py``, ``dead_letters.py``, ``keys.py``
(API keys), ``idempotency.py`` and ``renders.py`` (the render lookup's one row, and the
back-fill of an original's header facts). Services open the transaction (``with
sessions.begin()``) and call these functions in it; they import no SQLAlchemy, and
import-linter keeps it so (pyproject.toml).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, union, update
from sqlalchemy.orm import Session

from imgpipe.db.schema import (
    DeadLetterRow,
    ImageRow,
    UploadRow,
    VariantRow,
    WebhookEventRow,
    utcnow,
)
from imgpipe.domain import similarity
from imgpipe.domain.states import ImageStatus, VariantStatus, rollup


def add_image(session: Session, image: ImageRow) -> None:
    """A new image (with its variant and moderation rows) in this transaction, flushed."""
    session.add(image)
    session.flush()


def purge_image(session: Session, image: ImageRow) -> None:
    """Delete the image's record and everything that hangs on it (the schema cascades)."""
    session.delete(image)


def get_image(session: Session, image_id: str, owner: str) -> ImageRow | None:
    """The owner's image; None for another owner's, a missing or a deleted one. One
    statement filters on every column, so another owner's image and a missing one take the
    same path (no row, no variants loaded) and the same time: the answer's timing does not
    tell which ids exist."""
    query = select(ImageRow).where(
        ImageRow.id == image_id, ImageRow.owner == owner, ImageRow.deleted_at.is_(None)
    )
    return session.scalars(query).one_or_none()


def get_deleted_image(session: Session, image_id: str) -> ImageRow | None:
    """An image DELETE hid (any owner), still waiting for its purge."""
    row = session.get(ImageRow, image_id)
    return row if row is not None and row.deleted_at is not None else None


def images_to_purge(session: Session, deleted_before: datetime, limit: int) -> list[ImageRow]:
    query = (
        select(ImageRow)
        .where(ImageRow.deleted_at.is_not(None), ImageRow.deleted_at < deleted_before)
        .order_by(ImageRow.deleted_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def sha_in_use(session: Session, sha256: str) -> bool:
    """Whether any record (a hidden one too, until it is purged) still names these bytes."""
    query = select(func.count()).select_from(ImageRow).where(ImageRow.sha256 == sha256)
    return bool(session.scalar(query))


def shas_recorded(session: Session, shas: Sequence[str]) -> set[str]:
    query = select(ImageRow.sha256).where(ImageRow.sha256.in_(list(shas))).distinct()
    return set(session.scalars(query))


def unreplicated(session: Session, limit: int) -> list[tuple[str, str]]:
    """(image id, sha256) of originals not yet known to be in the replica store."""
    query = (
        select(ImageRow.id, ImageRow.sha256)
        .where(ImageRow.replicated_at.is_(None))
        .order_by(ImageRow.id)
        .limit(limit)
    )
    return [(row.id, row.sha256) for row in session.execute(query)]


def mark_replicated(session: Session, sha256: str, when: datetime | None) -> None:
    session.execute(update(ImageRow).where(ImageRow.sha256 == sha256).values(replicated_at=when))


def recorded_originals(session: Session, after_sha: str, limit: int) -> list[str]:
    """Distinct sha256 of every recorded original, in order, a page at a time."""
    query = (
        select(ImageRow.sha256)
        .where(ImageRow.sha256 > after_sha)
        .distinct()
        .order_by(ImageRow.sha256)
        .limit(limit)
    )
    return list(session.scalars(query))


def image_formats(session: Session, shas: Sequence[str]) -> dict[str, str]:
    query = select(ImageRow.sha256, ImageRow.format).where(ImageRow.sha256.in_(list(shas)))
    return {row.sha256: row.format for row in session.execute(query)}


def get_image_any_owner(session: Session, image_id: str) -> ImageRow | None:
    return session.get(ImageRow, image_id)


def list_images(
    session: Session, owner: str, limit: int, before_id: str | None
) -> Sequence[ImageRow]:
    query = select(ImageRow).where(ImageRow.owner == owner, ImageRow.deleted_at.is_(None))
    if before_id:
        query = query.where(ImageRow.id < before_id)
    return session.scalars(query.order_by(ImageRow.id.desc()).limit(limit)).all()


def unfinished_image_ids(session: Session) -> list[str]:
    """Images with work left: what a restarted service must pick up again."""
    query = (
        select(ImageRow.id)
        .where(
            ImageRow.status.in_([ImageStatus.PENDING.value, ImageStatus.PROCESSING.value]),
            ImageRow.deleted_at.is_(None),  # a deleted image's work is abandoned
        )
        .order_by(ImageRow.id)
    )
    return list(session.scalars(query))


def count_unfinished(session: Session) -> int:
    unfinished = [ImageStatus.PENDING.value, ImageStatus.PROCESSING.value]
    query = (
        select(func.count())
        .select_from(ImageRow)
        .where(ImageRow.status.in_(unfinished), ImageRow.deleted_at.is_(None))
    )
    return int(session.scalar(query) or 0)


def variants_to_do(image: ImageRow) -> list[VariantRow]:
    """Pending variants, and processing ones whose worker died (failed is final until a
    reprocess sets it pending again)."""
    unfinished = (VariantStatus.PENDING.value, VariantStatus.PROCESSING.value)
    return [v for v in image.variants if v.status in unfinished]


def refresh_status(image: ImageRow, now: datetime | None = None) -> ImageStatus:
    """Roll the variants up into the image's status (the one rule in domain.states)."""
    status = rollup(VariantStatus(v.status) for v in image.variants)
    image.status = status.value
    now = now or utcnow()
    image.updated_at = now
    terminal = status in (ImageStatus.DONE, ImageStatus.PARTIAL, ImageStatus.FAILED)
    image.completed_at = now if terminal else None
    return status


def variant_by_name(image: ImageRow, name: str) -> VariantRow | None:
    return next((v for v in image.variants if v.name == name), None)


def image_ids_with_sha(session: Session, sha256: str) -> list[str]:
    return list(session.scalars(select(ImageRow.id).where(ImageRow.sha256 == sha256)))


def add_upload(
    session: Session,
    upload_id: str,
    owner: str,
    filename: str,
    content_type: str | None,
    declared_bytes: int,
    storage_key: str,
    expires_at: datetime,
) -> None:
    session.add(
        UploadRow(
            id=upload_id,
            owner=owner,
            filename=filename,
            content_type=content_type,
            declared_bytes=declared_bytes,
            storage_key=storage_key,
            expires_at=expires_at,
        )
    )


def get_upload(session: Session, upload_id: str) -> UploadRow | None:
    return session.get(UploadRow, upload_id)


def claim_upload(session: Session, upload_id: str, now: datetime, stale_before: datetime) -> bool:
    """Mark a direct upload as being completed by this caller: one conditional UPDATE, so
    of concurrent callers exactly one wins. A claim older than ``stale_before`` (its caller
    died) may be taken over."""
    result = session.execute(
        update(UploadRow)
        .where(
            UploadRow.id == upload_id,
            or_(UploadRow.completed_at.is_(None), UploadRow.completed_at < stale_before),
        )
        .values(completed_at=now)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def release_upload(session: Session, upload_id: str) -> None:
    session.execute(update(UploadRow).where(UploadRow.id == upload_id).values(completed_at=None))


def count_images(session: Session, owner: str) -> int:
    query = select(func.count()).select_from(ImageRow).where(ImageRow.owner == owner)
    return int(session.scalar(query) or 0)


def reassign_owner(session: Session, from_owner: str, to_owner: str) -> int:
    """Give every image of ``from_owner`` (and what hangs on it: direct uploads in flight,
    webhook events, dead letters) to ``to_owner``; the number of images moved."""
    moved = session.execute(
        update(ImageRow).where(ImageRow.owner == from_owner).values(owner=to_owner)
    )
    for table in (UploadRow, WebhookEventRow, DeadLetterRow):
        session.execute(update(table).where(table.owner == from_owner).values(owner=to_owner))
    return int(moved.rowcount or 0)  # type: ignore[attr-defined]


def set_phash(image: ImageRow, phash: object) -> None:
    """Record the image's pHash and its index bands (all None when it has none)."""
    value = similarity.parse(phash) if isinstance(phash, str) else None
    image.phash = phash if value is not None and isinstance(phash, str) else None
    parts = similarity.bands(value) if value is not None else (None,) * similarity.BANDS
    image.phash_b0, image.phash_b1, image.phash_b2, image.phash_b3 = parts


def phash_candidates(
    session: Session, owner: str, probes: Sequence[Sequence[int]]
) -> list[tuple[str, str]]:
    """(id, phash) of the owner's images with any band among that band's probe values:
    one index range scan per band (owner, band), deduplicated by UNION."""
    columns = (ImageRow.phash_b0, ImageRow.phash_b1, ImageRow.phash_b2, ImageRow.phash_b3)
    selects = [
        select(ImageRow.id, ImageRow.phash).where(ImageRow.owner == owner, column.in_(values))
        for column, values in zip(columns, probes, strict=True)
    ]
    return [(str(i), str(h)) for i, h in session.execute(union(*selects)) if h is not None]


def images_by_ids(session: Session, owner: str, ids: Sequence[str]) -> list[ImageRow]:
    if not ids:
        return []
    query = select(ImageRow).where(ImageRow.owner == owner, ImageRow.id.in_(ids))
    return list(session.scalars(query))
