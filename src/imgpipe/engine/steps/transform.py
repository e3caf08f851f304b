"""Rotate by quarter turns and mirror: the caller's orientation, applied after EXIF's."""

from __future__ import annotations

from typing import Any

from imgpipe.domain.render_options import Flip

_ANGLES = {90: "d90", 180: "d180", 270: "d270"}


def rotate(image: Any, degrees: int) -> Any:
    if degrees == 0:
        return image
    return image.rot(_ANGLES[degrees])


def flip(image: Any, how: Flip | None) -> Any:
    if how in (Flip.H, Flip.HV):
        image = image.fliphor()
    if how in (Flip.V, Flip.HV):
        image = image.flipver()
    return image
