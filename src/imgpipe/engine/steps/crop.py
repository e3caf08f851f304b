"""Cut a resized image down to the profile's box (cover fit)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imgpipe.domain.profiles import Crop
from imgpipe.engine import faces


def crop(image: Any, size: tuple[int, int], how: Crop, found: Sequence[faces.Box] = ()) -> Any:
    """``found``: face boxes in ``image``'s coordinates, for ``Crop.FACE``.

    A face crop keeps every face in the box (or the largest whole, when they cannot all
    fit); with no face found, or without OpenCV (the ``faces`` extra), it falls back to
    libvips' attention crop, which favours skin tones, saturation and edges.
    """
    width, height = size
    if (image.width, image.height) == (width, height):
        return image
    if how is Crop.CENTRE:
        left = (image.width - width) // 2
        top = (image.height - height) // 2
        return image.crop(left, top, width, height)
    if how is Crop.FACE and found:
        left, top = faces.window_around(list(found), (image.width, image.height), size)
        return image.crop(left, top, width, height)
    return image.smartcrop(width, height, interesting="attention")


def scale_boxes(found: Sequence[faces.Box], factor: float) -> list[faces.Box]:
    """Face boxes found on one image, in the coordinates of a copy ``factor`` times its size."""
    return [
        (round(x * factor), round(y * factor), max(1, round(w * factor)), max(1, round(h * factor)))
        for x, y, w, h in found
    ]
