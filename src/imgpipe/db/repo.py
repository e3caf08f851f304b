"""Typed queries: the only place SQL is written. Each function takes an open Session."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from imgpipe.db.schema import ImageRow, VariantRow, utcnow
from imgpipe.domain.states import ImageStatus, VariantStatus, rollup


def get_image(session: Session, image_id: str, owner: str) -> ImageRow | None:
    """The owner's image; None for another owner's, a missing or a deleted one."""
    row = session.get(ImageRow, image_id)
    if row is None or row.owner != owner or row.deleted_at is not None:
        return None
    return row


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
