"""Pad to the box (fit=contain), and the background colour every step that fills uses."""

from __future__ import annotations

from typing import Any


def background(image: Any, colour: str | None) -> tuple[Any, list[int]]:
    """(image, fill) for ``colour`` (rrggbb or rrggbbaa; None: white, or transparent when
    the image has alpha). A translucent colour gives an opaque image an alpha band."""
    if colour is None:
        return image, [0, 0, 0, 0] if image.hasalpha() else [255, 255, 255]
    rgba = [int(colour[i : i + 2], 16) for i in range(0, len(colour), 2)]
    alpha = rgba[3] if len(rgba) == 4 else 255
    if alpha < 255 and not image.hasalpha():
        image = image.bandjoin(255)
    return image, [*rgba[:3], alpha] if image.hasalpha() else rgba[:3]


def pad(image: Any, size: tuple[int, int], colour: str | None) -> Any:
    """Centre the image on a canvas of ``size``."""
    image, fill = background(image, colour)
    left = (size[0] - image.width) // 2
    top = (size[1] - image.height) // 2
    return image.embed(left, top, size[0], size[1], extend="background", background=fill)
