"""Public response models: the API's shape, apart from database rows and service views."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, JsonValue

from imgpipe.domain.formats import FORMATS, OUTPUT_FORMATS
from imgpipe.services.similar import SimilarImage
from imgpipe.services.views import ImagePage, ImageView


class VariantError(BaseModel):
    code: str
    message: str


# Format names in the schema come from the registry (domain/formats.py).
_INPUT_NAMES: list[JsonValue] = [f.value for f in FORMATS]
_OUTPUT_NAMES: list[JsonValue] = [f.value for f in FORMATS if f in OUTPUT_FORMATS]


class VariantOut(BaseModel):
    status: str
    format: str = Field(
        description="The variant's format.", json_schema_extra={"enum": _OUTPUT_NAMES}
    )
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
    format: str = Field(
        description="The original's format, decided by its bytes.",
        json_schema_extra={"enum": _INPUT_NAMES},
    )
    width: int
    height: int
    frames: int
    filename: str | None = Field(
        description="The uploaded file's name, sanitised; null when none was given."
    )


class SwatchOut(BaseModel):
    hex: str
    share: float


class QualityOut(BaseModel):
    score: int
    sharpness: float | None
    exposure: float
    clipped_highlights: float
    clipped_shadows: float
    noise: float
    jpeg_quality: int | None


class ImageMetadataOut(BaseModel):
    exif: dict[str, str]
    dominant_colors: list[str]
    palette: list[SwatchOut]
    blurhash: str | None
    thumbhash: str | None
    phash: str | None
    quality: QualityOut | None


class ModerationLabelOut(BaseModel):
    name: str
    score: float
    category: str


class ModerationOut(BaseModel):
    status: str
    labels: list[ModerationLabelOut]
    model: str | None
    decided_by: str | None
    reason: str | None
    error: VariantError | None


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


class SimilarOut(BaseModel):
    distance: int
    image: ImageOut


class SimilarPageOut(BaseModel):
    image_id: str
    max_distance: int
    items: list[SimilarOut]

    @classmethod
    def of(cls, image_id: str, max_distance: int, found: list[SimilarImage]) -> SimilarPageOut:
        items = [SimilarOut(distance=s.distance, image=ImageOut.of(s.image)) for s in found]
        return cls(image_id=image_id, max_distance=max_distance, items=items)


class ReprocessIn(BaseModel):
    profiles: list[str] | None = None


class HealthOut(BaseModel):
    status: str
    checks: dict[str, str] = {}
    # What each store keeps beyond one copy (S3 versioning, object lock), checked at start.
    details: dict[str, str] = {}
