"""Public response models: the API's shape, apart from database rows and service views."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from imgpipe.services.views import ImagePage, ImageView


class VariantError(BaseModel):
    code: str
    message: str


class VariantOut(BaseModel):
    status: str
    format: str
    width: int | None
    height: int | None
    bytes: int | None
    url: str
    error: VariantError | None
    attempts: int
    # Only under PUBLIC_BASE_URL (SPEC §7), and only for variants deliverable without a key;
    # left out rather than null otherwise, so with the setting unset nothing changes.
    public_url: str | None = Field(default=None, exclude_if=lambda value: value is None)


class OriginalOut(BaseModel):
    sha256: str
    bytes: int
    format: str
    width: int
    height: int
    frames: int


class ImageMetadataOut(BaseModel):
    exif: dict[str, str]
    dominant_colors: list[str]
    blurhash: str | None
    phash: str | None


class ModerationOut(BaseModel):
    status: str
    scores: dict[str, float]


class ImageOut(BaseModel):
    id: str
    status: str
    original: OriginalOut
    variants: dict[str, VariantOut]
    metadata: ImageMetadataOut
    moderation: ModerationOut
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, view: ImageView) -> ImageOut:
        data: dict[str, Any] = asdict(view)
        for variant in data["variants"].values():
            variant.pop("name")
        return cls.model_validate(data)


class ImagePageOut(BaseModel):
    items: list[ImageOut]
    next_cursor: str | None

    @classmethod
    def of(cls, page: ImagePage) -> ImagePageOut:
        return cls(items=[ImageOut.of(v) for v in page.items], next_cursor=page.next_cursor)


class ReprocessIn(BaseModel):
    profiles: list[str] | None = None


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str] = {}
    # What each store keeps beyond one copy (S3 versioning, object lock), checked at start.
    details: dict[str, str] = {}
