"""Face detection for ``crop=face``: OpenCV's Haar cascade, which ships inside the wheel.

OpenCV is optional (the ``faces`` extra: ``pip install 'imgpipe[faces]'``). Without it, or
when no face is found, a face crop falls back to libvips' attention crop. The cascade runs
on a small greyscale copy (at most ``DETECT_LONG_SIDE`` px), which finds faces down to
about 3% of the image's long side in a few milliseconds.
"""

from __future__ import annotations

import threading
from typing import Any

Box = tuple[int, int, int, int]  # left, top, width, height

DETECT_LONG_SIDE = 800
_local = threading.local()  # a CascadeClassifier is not safe to share between threads


def available() -> bool:
    return _classifier() is not None


def _classifier() -> Any:
    cascade = getattr(_local, "cascade", False)
    if cascade is False:
        try:
            import cv2  # type: ignore[import-not-found,unused-ignore]
        except ImportError:
            cascade = None
        else:
            folder: str = cv2.data.haarcascades  # type: ignore[attr-defined,unused-ignore]
            path = folder + "haarcascade_frontalface_default.xml"
            cascade = cv2.CascadeClassifier(path)
            if cascade.empty():  # pragma: no cover - a broken OpenCV install
                cascade = None
        _local.cascade = cascade
    return cascade


def detect_faces(image: Any) -> list[Box]:
    """Face boxes in ``image``'s pixel coordinates, largest first; [] without OpenCV."""
    cascade = _classifier()
    if cascade is None:
        return []
    scale = min(1.0, DETECT_LONG_SIDE / max(image.width, image.height))
    small = image.resize(scale) if scale < 1.0 else image
    if small.hasalpha():
        small = small.flatten(background=[255, 255, 255])
    grey = small.colourspace("b-w").extract_band(0).cast("uchar")
    import numpy as np  # here, not at import: the batch CLI's start-up (0.3 s)

    pixels = np.ndarray(
        buffer=grey.write_to_memory(), dtype=np.uint8, shape=(grey.height, grey.width)
    )
    found = cascade.detectMultiScale(pixels, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24))
    boxes = [
        (round(x / scale), round(y / scale), round(w / scale), round(h / scale))
        for (x, y, w, h) in (found if len(found) else [])
    ]
    return sorted(boxes, key=lambda b: -b[2] * b[3])


def window_around(
    boxes: list[Box], size: tuple[int, int], window: tuple[int, int]
) -> tuple[int, int]:
    """Top-left of a ``window``-sized crop of a ``size`` image keeping the faces in view.

    Centred on the union of all boxes (it holds them all whenever they fit); if they do
    not fit, the largest face is kept whole instead.
    """
    left, top, right, bottom = _union(boxes)
    if right - left > window[0] or bottom - top > window[1]:
        left, top, right, bottom = _union(boxes[:1])
    cx, cy = (left + right) / 2, (top + bottom) / 2
    x = _clamp(round(cx - window[0] / 2), 0, size[0] - window[0])
    y = _clamp(round(cy - window[1] / 2), 0, size[1] - window[1])
    return x, y


def _union(boxes: list[Box]) -> tuple[int, int, int, int]:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[0] + b[2] for b in boxes),
        max(b[1] + b[3] for b in boxes),
    )


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))
