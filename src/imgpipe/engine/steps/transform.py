"""Rotate by any angle and mirror: the caller's orientation, applied after EXIF's."""

from __future__ import annotations

from typing import Any

from imgpipe.domain.render_options import Flip
from imgpipe.engine.steps.pad import background

_QUARTERS = {90: "d90", 180: "d180", 270: "d270"}


def rotate(image: Any, degrees: float, size: tuple[int, int], colour: str | None) -> Any:
    """Clockwise. Quarter turns are exact; other angles are resampled, the corners filled
    with ``colour``, and the result centred on exactly the planned ``size``."""
    if degrees == 0:
        return image
    if degrees in _QUARTERS:
        return image.rot(_QUARTERS[int(degrees)])
    image, fill = background(image, colour)
    turned = image.rotate(degrees, background=fill)
    if (turned.width, turned.height) == size:
        return turned
    left = (size[0] - turned.width) // 2
    top = (size[1] - turned.height) // 2
    return turned.embed(left, top, size[0], size[1], extend="background", background=fill)


def flip(image: Any, how: Flip | None) -> Any:
    if how in (Flip.H, Flip.HV):
        image = image.fliphor()
    if how in (Flip.V, Flip.HV):
        image = image.flipver()
    return image
