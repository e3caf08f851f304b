"""Typed queries: the only place SQL is written. Each function takes an open Session."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from imgpipe.db.schema import ImageRow, UploadRow, VariantRow, utcnow
from imgpipe.domain.states import ImageStatus, VariantStatus, rollup


def get_image(session: Session, image_id: str, owner: str) -> ImageRow | None:
    """The owner's image, or None. One statement filters on both columns, so another
    owner's image and a missing one take the same path (no row, no variants loaded) and
    the same time: the answer's timing does not tell which ids exist."""
    query = select(ImageRow).where(ImageRow.id == image_id, ImageRow.owner == owner)
    return session.scalars(query).one_or_none()


def get_image_any_owner(session: Session, image_id: str) -> ImageRow | None:
    return session.get(ImageRow, image_id)


def list_images(
    session: Session, owner: str, limit: int, before_id: str | None
) -> Sequence[ImageRow]:
    query = select(ImageRow).where(ImageRow.owner == owner)
    if before_id:
        query = query.where(ImageRow.id < before_id)
    return session.scalars(query.order_by(ImageRow.id.desc()).limit(limit)).all()


def unfinished_image_ids(session: Session) -> list[str]:
    """Images with work left: what a restarted service must pick up again."""
    query = (
        select(ImageRow.id)
        .where(ImageRow.status.in_([ImageStatus.PENDING.value, ImageStatus.PROCESSING.value]))
        .order_by(ImageRow.id)
    )
    return list(session.scalars(query))


def count_unfinished(session: Session) -> int:
    unfinished = [ImageStatus.PENDING.value, ImageStatus.PROCESSING.value]
    query = select(func.count()).select_from(ImageRow).where(ImageRow.status.in_(unfinished))
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
