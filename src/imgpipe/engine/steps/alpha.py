"""Alpha: kept for WebP, AVIF and PNG; flattened onto white for JPEG."""

from __future__ import annotations

from typing import Any

from imgpipe.domain.media import ImageFormat


def prepare_alpha(image: Any, fmt: ImageFormat) -> Any:
    if fmt is ImageFormat.JPEG and image.hasalpha():
        return image.flatten(background=[255, 255, 255]).cast("uchar")
    return image
