"""Cut a resized image down to the profile's box (cover fit)."""

from __future__ import annotations

from typing import Any

from imgpipe.domain.profiles import Crop


def crop(image: Any, size: tuple[int, int], how: Crop) -> Any:
    width, height = size
    if (image.width, image.height) == (width, height):
        return image
    if how is Crop.CENTRE:
        left = (image.width - width) // 2
        top = (image.height - height) // 2
        return image.crop(left, top, width, height)
    # Face detection arrives with on-demand render; until then a face crop uses libvips'
    # attention strategy, which favours skin tones, saturation and edges.
    return image.smartcrop(width, height, interesting="attention")
