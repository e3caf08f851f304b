"""The read side: plain views of an image and its variants, built from rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from imgpipe.db.schema import ImageRow, ModerationRow, VariantRow
from imgpipe.domain.moderation import ModerationStatus


@dataclass(frozen=True, slots=True)
class VariantView:
    name: str
    status: str
    format: str
    width: int | None
    height: int | None
    bytes: int | None
    url: str
    error: dict[str, str] | None
    attempts: int
    # Under PUBLIC_BASE_URL, for variants that may be delivered without a key; else None.
    public_url: str | None = None


class PublicUrlMaker(Protocol):
    def for_variant(self, image: ImageRow, variant: VariantRow) -> str | None: ...


@dataclass(frozen=True, slots=True)
class OriginalView:
    sha256: str
    bytes: int
    format: str
    width: int
    height: int
    frames: int
    filename: str | None


@dataclass(frozen=True, slots=True)
class ImageView:
    id: str
    status: str
    original: OriginalView
    variants: dict[str, VariantView]
    metadata: dict[str, Any]
    moderation: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class ImagePage:
    items: list[ImageView] = field(default_factory=list)
    next_cursor: str | None = None


def variant_url(image_id: str, name: str) -> str:
    return f"/v1/images/{image_id}/variants/{name}"


def image_view(row: ImageRow, public: PublicUrlMaker | None = None) -> ImageView:
    metadata = dict(row.image_metadata or {})
    return ImageView(
        id=row.id,
        status=row.status,
        original=OriginalView(
            sha256=row.sha256,
            bytes=row.bytes,
            format=row.format,
            width=row.width,
            height=row.height,
            frames=row.frames,
            filename=row.filename,
        ),
        variants={
            v.name: _variant_view(row.id, v, public.for_variant(row, v) if public else None)
            for v in row.variants
        },
        metadata={
            "exif": metadata.get("exif", {}),
            "dominant_colors": metadata.get("dominant_colors", []),
            "palette": metadata.get("palette", []),
            "blurhash": metadata.get("blurhash"),
            "thumbhash": metadata.get("thumbhash"),
            "phash": metadata.get("phash"),
            "quality": metadata.get("quality"),
        },
        moderation=moderation_view(row.moderation),
        created_at=row.created_at,
        updated_at=row.updated_at,
        completed_at=row.completed_at,
    )


def _variant_view(image_id: str, row: VariantRow, public_url: str | None) -> VariantView:
    error = {"code": row.error_code, "message": row.error or ""} if row.error_code else None
    return VariantView(
        name=row.name,
        status=row.status,
        format=row.format,
        width=row.width,
        height=row.height,
        bytes=row.bytes,
        url=variant_url(image_id, row.name),
        error=error,
        attempts=row.attempts,
        public_url=public_url,
    )


def moderation_view(row: ModerationRow | None) -> dict[str, Any]:
    """``{status, labels, model, decided_by, reason, error}``; no row: uploaded while
    MODERATION was off."""
    if row is None:
        status, labels, model, decided_by, reason, error = (
            ModerationStatus.OFF.value,
            [],
            None,
            None,
            None,
            None,
        )
    else:
        status, labels, model = row.status, list(row.labels or []), row.model
        decided_by, reason = row.decided_by, row.reason
        error = {"code": row.error_code, "message": row.error or ""} if row.error_code else None
    return {
        "status": status,
        "labels": labels,
        "model": model,
        "decided_by": decided_by,
        "reason": reason,
        "error": error,
    }
