"""Geometry: from the upright source size and a profile to exact output sizes.

Pure arithmetic, so the sizes are the same whichever decoder or path produced the
pixels, and every variant is derived from one decode without drifting by a pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from imgpipe.domain.profiles import Fit, Profile


def _round(value: float) -> int:
    """Round half up, as libvips does, never below one pixel."""
    return max(1, math.floor(value + 0.5))


@dataclass(frozen=True, slots=True)
class Geometry:
    """Resize the upright source to ``resize``, then crop the centre region ``crop``."""

    resize: tuple[int, int]
    crop: tuple[int, int]

    @property
    def scale_key(self) -> tuple[int, int]:
        return self.resize


def plan_geometry(source: tuple[int, int], profile: Profile) -> Geometry:
    """Exact output geometry; never upscales (a smaller image keeps its size)."""
    width, height = source
    if profile.fit is Fit.COVER:
        scale = min(1.0, max(profile.width / width, profile.height / height))
        resized = (_round(width * scale), _round(height * scale))
        return Geometry(resized, (min(profile.width, resized[0]), min(profile.height, resized[1])))
    scale = min(1.0, profile.width / width, profile.height / height)
    resized = (_round(width * scale), _round(height * scale))
    return Geometry(resized, resized)


def decode_size(source: tuple[int, int], geometries: list[Geometry]) -> tuple[int, int]:
    """The one size to decode to: the largest any variant needs."""
    return max((g.resize for g in geometries), key=lambda size: size[0] * size[1])
