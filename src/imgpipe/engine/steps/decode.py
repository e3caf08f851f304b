"""Decode to the size the caller asks for (the worker's base box, a render's planned size),
shrinking on load, upright and in sRGB.

libvips' thumbnail does shrink-on-load (JPEG DCT scaling, WebP and HEIF scaled decode),
applies EXIF orientation, and imports CMYK through the embedded or built-in CMYK profile.
RGB images are converted only when their embedded ICC profile is not sRGB: an sRGB to
sRGB transform would cost a pass over every pixel and change nothing.

For a JPEG, libvips' thumbnail lets libjpeg scale by 2, 4 or 8 while decoding, but only
down to twice the target (a margin for its Lanczos reduce). ``fast_shrink`` (on-demand
renders, where a client waits) takes libjpeg's scaling all the way to the target, as
sharp does by default (``fastShrinkOnLoad``): a 12 MP photo to 800x600 decodes at 1/4
instead of 1/2 scale, about 13% less CPU per render, at a cost in SSIM (against a full
decode resized with Lanczos) of 0.000-0.008 after WebP q80, which itself costs 0.04-0.12
(docs/render.md). Profile variants keep libvips' choice: their bytes must not change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyvips

from imgpipe.domain.errors import CorruptImage, ImgpipeError
from imgpipe.domain.media import ImageFormat, ProbeResult
from imgpipe.engine import loaders
from imgpipe.engine.colour import is_srgb_profile
from imgpipe.engine.deadline import Deadline


def needs_colour_transform(header: Any) -> bool:
    if header.interpretation == "cmyk":
        return True
    if not header.get_typeof("icc-profile-data"):
        return False
    return not is_srgb_profile(header.get("icc-profile-data"))


def decode(
    path: Path,
    probe: ProbeResult,
    size: tuple[int, int],
    *,
    all_frames: bool,
    fast_shrink: bool = False,
    deadline: Deadline | None = None,
) -> Any:
    """The upright image at exactly ``size`` (per frame), 8-bit sRGB, alpha kept; a still
    is decoded into memory.

    Decoded here, not lazily by the caller, so that whatever the decoder meets in the
    pixel data (a cut scan, a bad code word in a fax TIFF, a decoder's own exception) is
    ``corrupt_image`` wherever it is met: upload, worker or render. Decoders run with
    ``fail_on=warning`` (loaders.FAIL_ON): libjpeg reports a scan that ends early, and
    pads the rest with grey, only as a warning. ``deadline`` stops the decode where it
    is (engine/deadline.py): ``ProcessTimeout``, not ``corrupt_image``.
    """
    deadline = deadline or Deadline(None)
    try:
        return _decode(path, probe, size, all_frames, fast_shrink, loaders.FAIL_ON, deadline)
    except pyvips.Error as exc:
        if deadline.expired:
            raise deadline.error("decode") from exc
        if not loaders.harmless_warning(str(exc)):
            raise CorruptImage(
                f"The {probe.format.value.upper()} data is corrupt or truncated."
            ) from exc
    except (ImgpipeError, MemoryError):
        raise
    except Exception as exc:  # pi-heif and Pillow raise almost anything on a bad file
        raise CorruptImage(f"The {probe.format.value.upper()} data could not be decoded.") from exc
    try:
        return _decode(path, probe, size, all_frames, fast_shrink, "error", deadline)
    except pyvips.Error as exc:
        if deadline.expired:
            raise deadline.error("decode") from exc
        raise CorruptImage(f"The {probe.format.value.upper()} data is corrupt.") from exc


def _decode(
    path: Path,
    probe: ProbeResult,
    size: tuple[int, int],
    all_frames: bool,
    fast_shrink: bool,
    fail_on: str,
    deadline: Deadline,
) -> Any:
    width, height = size
    shrink = jpeg_shrink(probe, size) if fast_shrink else 1
    if shrink > 1:
        # Scaled by libjpeg while decoding; thumbnail_image then does what thumbnail
        # does after its own load: orientation, colour import, the exact Lanczos size.
        source = pyvips.Image.jpegload(
            str(path), shrink=shrink, access="sequential", fail_on=fail_on
        )
        options: dict[str, Any] = {"height": height, "size": "force"}
        if needs_colour_transform(source):
            options.update(export_profile="srgb", intent="perceptual")
        image = source.thumbnail_image(width, **options)
    elif probe.format in loaders.VIPS_DECODED:
        header = loaders.load_header(path, probe.format)
        options = {"height": height, "size": "force", "fail_on": fail_on}
        if needs_colour_transform(header):
            options.update(export_profile="srgb", intent="perceptual")
        source = loaders.vips_source(path, all_frames=all_frames)
        image = pyvips.Image.thumbnail(source, width, **options)
    else:
        full = loaders.decode_to_vips(
            path,
            probe.format,
            at_least=size,
            timeout_s=deadline.remaining(),
            decode_bytes=probe.decode_bytes,
        )
        options = {"height": height, "size": "force"}
        if needs_colour_transform(full):
            options.update(export_profile="srgb", intent="perceptual")
        image = full.thumbnail_image(width, **options)
    image = deadline.watch(to_srgb8(image))
    # A still is materialised here, inside the error mapping. All frames of an animation
    # would be frames x width x height x 4 bytes at once (960 MB for 500 at 800x600), so
    # they stay a lazy pipeline the encoder streams; its errors reach the pipeline's guard.
    return image if all_frames else image.copy_memory()


def jpeg_shrink(probe: ProbeResult, size: tuple[int, int]) -> int:
    """The largest JPEG scale-on-load factor (2, 4 or 8) that stays at or above ``size``
    on both axes, or 1 (not a JPEG, or not that much smaller)."""
    if probe.format is not ImageFormat.JPEG:
        return 1
    source_w, source_h = probe.upright_size
    factor = min(source_w / max(1, size[0]), source_h / max(1, size[1]))
    return next((s for s in (8, 4, 2) if factor >= s), 1)


def to_srgb8(image: Any) -> Any:
    """Grey, 16-bit and untagged images become 8-bit sRGB; alpha stays."""
    if image.interpretation not in ("srgb",) or image.format != "uchar":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    return image
