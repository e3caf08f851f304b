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


# The one decode every still variant is derived from: the upright source fitted inside
# this box (never upscaled). A constant, not the largest profile in a batch, so that a
# variant's bytes depend only on the original and its own profile: rendering `thumbnail`
# alone gives the same bytes as rendering it beside `large`. It equals the `large`
# built-in, so for the built-ins the base is the large variant itself. Changing it changes
# output bytes: bump RENDER_VERSION with it.
BASE_BOX = (1920, 1080)


def base_size(source: tuple[int, int]) -> tuple[int, int]:
    width, height = source
    scale = min(1.0, BASE_BOX[0] / width, BASE_BOX[1] / height)
    return _round(width * scale), _round(height * scale)


def derivable(geometry: Geometry, base: tuple[int, int]) -> bool:
    """Whether a variant can be resized down from the base instead of its own decode."""
    return geometry.resize[0] <= base[0] and geometry.resize[1] <= base[1]
