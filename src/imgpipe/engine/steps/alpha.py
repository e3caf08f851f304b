"""Alpha: kept for WebP, AVIF and PNG; flattened for JPEG (onto white, or ``bg``)."""

from __future__ import annotations

from typing import Any

from imgpipe.domain.media import ImageFormat


def prepare_alpha(image: Any, fmt: ImageFormat, colour: str | None = None) -> Any:
    if fmt is ImageFormat.JPEG and image.hasalpha():
        rgb = [255, 255, 255] if colour is None else [int(colour[i : i + 2], 16) for i in (0, 2, 4)]
        return image.flatten(background=rgb).cast("uchar")
    return image


def visible_alpha(image: Any) -> bool:
    """Whether some pixel is not fully opaque."""
    return bool(image.hasalpha() and image.extract_band(image.bands - 1).min() < 255)
