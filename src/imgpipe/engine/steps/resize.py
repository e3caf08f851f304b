"""Resize to an exact size from an already decoded image, alpha premultiplied."""

from __future__ import annotations

from typing import Any


def resize(image: Any, size: tuple[int, int]) -> Any:
    width, height = size
    if (image.width, image.height) == (width, height):
        return image
    hscale = width / image.width
    vscale = height / image.height
    if not image.hasalpha():
        return image.resize(hscale, vscale=vscale, kernel="lanczos3")
    # Resampling straight alpha bleeds the colour of transparent pixels into the edges.
    out = image.premultiply().resize(hscale, vscale=vscale, kernel="lanczos3")
    return out.unpremultiply().cast("uchar")
