"""Composite a watermark PNG onto the output: scaled to fit a quarter of it, placed by
compass position with a margin, at the given opacity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyvips

from imgpipe.domain.render_options import Position, Watermark

# The watermark may cover at most this fraction of the output's width and height.
MAX_FRACTION = 0.25
MARGIN_FRACTION = 0.02


def load_watermark(path: Path) -> Any:
    """An RGBA image from a PNG (named loader: never sniffed)."""
    mark = pyvips.Image.pngload(str(path), access="sequential")
    if mark.interpretation != "srgb" or mark.format != "uchar":
        mark = mark.colourspace("srgb").cast("uchar")
    if not mark.hasalpha():
        mark = mark.bandjoin(255)
    return mark.copy_memory()


def apply_watermark(image: Any, mark: Any, spec: Watermark) -> Any:
    scale = min(
        1.0, image.width * MAX_FRACTION / mark.width, image.height * MAX_FRACTION / mark.height
    )
    if scale < 1.0:
        mark = mark.premultiply().resize(scale, kernel="lanczos3").unpremultiply().cast("uchar")
    colour = mark.extract_band(0, n=3)
    alpha = (mark.extract_band(3) * spec.opacity).cast("uchar")
    mark = colour.bandjoin(alpha)
    margin = max(2, round(min(image.width, image.height) * MARGIN_FRACTION))
    left, top = _place(image.width, image.height, mark.width, mark.height, margin, spec.position)
    had_alpha = image.hasalpha()
    base = image if had_alpha else image.bandjoin(255)
    out = base.composite2(mark, "over", x=left, y=top).cast("uchar")
    return out if had_alpha else out.extract_band(0, n=3)


def _place(
    width: int, height: int, mw: int, mh: int, margin: int, position: Position
) -> tuple[int, int]:
    name = position.value
    if "w" in name:
        left = margin
    elif "e" in name:
        left = width - mw - margin
    else:
        left = (width - mw) // 2
    if name.startswith("n"):
        top = margin
    elif name.startswith("s"):
        top = height - mh - margin
    else:
        top = (height - mh) // 2
    return max(0, left), max(0, top)
