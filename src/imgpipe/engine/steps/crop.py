"""Cut an image: a manual region, or the cover crop to the planned size."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from imgpipe.domain.render_options import Crop
from imgpipe.engine import faces

Window = tuple[int, int, int, int]


def region(image: Any, box: Window) -> Any:
    """A manual crop, in this image's pixels (the plan scaled it from the source's)."""
    return image.crop(*box)


def cut(image: Any, window: Window) -> Any:
    return image.crop(*window)


def crop_window(
    image: Any,
    size: tuple[int, int],
    how: Crop,
    focal: tuple[float, float] | None = None,
    found: Sequence[faces.Box] | None = None,
) -> tuple[Any, Window | None, list[faces.Box]]:
    """The cover crop of ``image`` to ``size``: (pixels, the window, faces found).

    ``found``: face boxes already known in ``image``'s coordinates (the worker finds them
    once on its base decode); None finds them here. A face crop keeps every face in the
    box (or the largest whole, when they cannot all fit); with no face found, or without
    OpenCV (the ``faces`` extra), it is libvips' attention crop, which favours skin
    tones, saturation and edges.
    """
    width, height = size
    if (image.width, image.height) == (width, height):
        return image, None, []
    boxes: list[faces.Box] = []
    if how is Crop.FACE:
        boxes = list(found) if found is not None else faces.detect_faces(image)
        if boxes:
            left, top = faces.window_around(boxes, (image.width, image.height), size)
            return image.crop(left, top, width, height), (left, top, width, height), boxes
        how = Crop.ATTENTION
    if how in (Crop.ATTENTION, Crop.ENTROPY):
        cropped, extra = image.smartcrop(
            width, height, interesting=how.value, attention_x=True, attention_y=True
        )
        # libvips reports the point of interest; its window is clamped around it.
        left = max(0, min(image.width - width, extra["attention_x"] - width // 2))
        top = max(0, min(image.height - height, extra["attention_y"] - height // 2))
        return cropped, (left, top, width, height), boxes
    if how is Crop.FOCAL and focal is not None:
        left = round(focal[0] * image.width - width / 2)
        top = round(focal[1] * image.height - height / 2)
    else:
        left = (image.width - width) // 2
        top = (image.height - height) // 2
    left = max(0, min(image.width - width, left))
    top = max(0, min(image.height - height, top))
    return image.crop(left, top, width, height), (left, top, width, height), boxes


def scale_boxes(found: Sequence[faces.Box], factor: float) -> list[faces.Box]:
    """Face boxes found on one image, in the coordinates of a copy ``factor`` times its size."""
    return [
        (round(x * factor), round(y * factor), max(1, round(w * factor)), max(1, round(h * factor)))
        for x, y, w, h in found
    ]
