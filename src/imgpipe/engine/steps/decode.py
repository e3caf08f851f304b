"""Decode once, shrinking on load, upright and in sRGB, to the largest size any variant needs.

libvips' thumbnail does shrink-on-load (JPEG DCT scaling, WebP and HEIF scaled decode),
applies EXIF orientation, and imports CMYK through the embedded or built-in CMYK profile.
RGB images are converted only when their embedded ICC profile is not sRGB: an sRGB to
sRGB transform would cost a pass over every pixel and change nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyvips

from imgpipe.domain.errors import CorruptImage
from imgpipe.domain.media import ProbeResult
from imgpipe.engine import loaders
from imgpipe.engine.colour import is_srgb_profile


def needs_colour_transform(header: Any) -> bool:
    if header.interpretation == "cmyk":
        return True
    if not header.get_typeof("icc-profile-data"):
        return False
    return not is_srgb_profile(header.get("icc-profile-data"))


def decode(path: Path, probe: ProbeResult, size: tuple[int, int], *, all_frames: bool) -> Any:
    """The upright image at exactly ``size`` (per frame), 8-bit sRGB, alpha kept."""
    width, height = size
    try:
        if probe.format in loaders.VIPS_DECODED:
            header = loaders.load_header(path, probe.format)
            options: dict[str, Any] = {
                "height": height,
                "size": "force",
                "fail_on": loaders.FAIL_ON,
            }
            if needs_colour_transform(header):
                options.update(export_profile="srgb", intent="perceptual")
            source = loaders.vips_source(path, all_frames=all_frames)
            image = pyvips.Image.thumbnail(source, width, **options)
        else:
            full = loaders.decode_to_vips(path, probe.format)
            options = {"height": height, "size": "force"}
            if needs_colour_transform(full):
                options.update(export_profile="srgb", intent="perceptual")
            image = full.thumbnail_image(width, **options)
        return to_srgb8(image)
    except pyvips.Error as exc:
        raise CorruptImage(f"The {probe.format.value.upper()} data could not be decoded.") from exc
    except (OSError, ValueError, RuntimeError) as exc:
        raise CorruptImage(f"The {probe.format.value.upper()} data could not be decoded.") from exc


def to_srgb8(image: Any) -> Any:
    """Grey, 16-bit and untagged images become 8-bit sRGB; alpha stays."""
    if image.interpretation not in ("srgb",) or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image
