"""On-demand render: one image, one set of options, one output, from the same engine.

The planner fixes the order whatever order the query was written in:

    decode (shrink-on-load straight to the planned size, EXIF orientation, sRGB)
    -> rotate -> flip -> crop (cover: centre / attention / entropy / face / focal point)
    -> blur -> sharpen -> brightness and contrast -> grey -> pad (contain)
    -> watermark -> alpha for the format -> encode (metadata stripped)

Geometry is planned from header facts alone (``plan_render``), so the service can refuse
an oversized output before decoding anything, and always from the original's size: when
the pixels come from the image's render source (engine/render_source.py) the service
passes the original's plan, so the output is the same size either way. Animations render
their first frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyvips

from imgpipe.domain.errors import CorruptImage, EngineFailure, ImgpipeError
from imgpipe.domain.media import ImageFormat, ProbeResult
from imgpipe.domain.render_options import CropMode, Fit, RenderOptions
from imgpipe.engine import faces
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.encode import encode
from imgpipe.engine.steps import adjust, transform
from imgpipe.engine.steps.alpha import prepare_alpha
from imgpipe.engine.steps.decode import decode
from imgpipe.engine.steps.watermark import apply_watermark, load_watermark


def _round(value: float) -> int:
    return max(1, math.floor(value + 0.5))


@dataclass(frozen=True, slots=True)
class RenderGeometry:
    """Decode to ``resized`` (after rotation), crop to ``cropped``, pad to ``output``."""

    resized: tuple[int, int]
    cropped: tuple[int, int]
    output: tuple[int, int]


def plan_render(source: tuple[int, int], options: RenderOptions) -> RenderGeometry:
    """Exact sizes from the upright source size; only ``fill`` and ``contain`` padding
    ever exceed the source (neither enlarges pixels by a fit)."""
    width, height = source
    if options.rotate in (90, 270):
        width, height = height, width
    box_w, box_h = options.width, options.height
    if box_w is None and box_h is None:
        return RenderGeometry((width, height), (width, height), (width, height))
    if box_w is None or box_h is None or options.fit is Fit.INSIDE:
        scale = min(
            1.0,
            box_w / width if box_w else math.inf,
            box_h / height if box_h else math.inf,
        )
        size = (_round(width * scale), _round(height * scale))
        return RenderGeometry(size, size, size)
    if options.fit is Fit.FILL:
        return RenderGeometry((box_w, box_h), (box_w, box_h), (box_w, box_h))
    if options.fit is Fit.COVER:
        scale = min(1.0, max(box_w / width, box_h / height))
        size = (_round(width * scale), _round(height * scale))
        cropped = (min(box_w, size[0]), min(box_h, size[1]))
        return RenderGeometry(size, cropped, cropped)
    scale = min(1.0, box_w / width, box_h / height)  # contain
    size = (_round(width * scale), _round(height * scale))
    return RenderGeometry(size, size, (box_w, box_h))


def decode_size(geometry: RenderGeometry, options: RenderOptions) -> tuple[int, int]:
    """The size to decode the upright source to: the resized size before ``rotate``."""
    width, height = geometry.resized
    return (height, width) if options.rotate in (90, 270) else (width, height)


@dataclass(frozen=True, slots=True)
class RenderedImage:
    format: ImageFormat
    width: int
    height: int
    data: bytes
    # Where the crop fell in the resized image and which faces were found there (for the
    # face-crop measurement in bench/); None and () when there was no crop.
    crop_window: tuple[int, int, int, int] | None = None
    faces: tuple[faces.Box, ...] = ()
    resized: tuple[int, int] = (0, 0)


def render(
    path: Path,
    probe: ProbeResult,
    options: RenderOptions,
    fmt: ImageFormat | None,
    watermark_path: Path | None = None,
    deadline: Deadline | None = None,
    *,
    geometry: RenderGeometry | None = None,
    fast_shrink: bool = True,
) -> RenderedImage:
    """Render one output. ``fmt`` None means "JPEG, or PNG if the result has visible
    alpha" (format=auto for a client that takes neither AVIF nor WebP). ``geometry``:
    the plan, when it was made from another size than ``probe``'s (a render source).

    ``fast_shrink``: let libjpeg scale a JPEG all the way to the planned size while it
    decodes (steps/decode.py). Right for an original many times the output's size, where
    it saves most of the decode and Lanczos still does the last step. Wrong for the render
    source, often about twice the output's size: libjpeg's halving would then do the whole
    resize, with more aliasing than Lanczos (up to 0.05 less SSIM measured on the corpus
    photos, for 10-20 ms less CPU), so renders from it pass False."""
    deadline = deadline or Deadline(None)
    geometry = geometry or plan_render(probe.upright_size, options)
    try:
        return _render(path, probe, options, fmt, watermark_path, deadline, geometry, fast_shrink)
    except ImgpipeError:
        raise
    except pyvips.Error as exc:
        message = str(exc).lower()
        if any(w in message for w in ("premature", "truncat", "corrupt", "invalid", "read")):
            raise CorruptImage("The image data is corrupt or truncated.") from exc
        raise EngineFailure(f"libvips failed: {str(exc).splitlines()[0]}") from exc


def _render(
    path: Path,
    probe: ProbeResult,
    options: RenderOptions,
    fmt: ImageFormat | None,
    watermark_path: Path | None,
    deadline: Deadline,
    geometry: RenderGeometry,
    fast_shrink: bool,
) -> RenderedImage:
    deadline.check("decode")
    # Materialised: crop strategies and face detection read the pixels more than once.
    size = decode_size(geometry, options)
    image = decode(path, probe, size, all_frames=False, fast_shrink=fast_shrink).copy_memory()
    image = transform.rotate(image, options.rotate)
    image = transform.flip(image, options.flip)

    deadline.check("crop")
    image, window, found = _crop(image, geometry.cropped, options)

    deadline.check("adjust")
    image = adjust.blur(image, options.blur)
    image = adjust.sharpen(image, options.sharpen)
    image = adjust.brightness_contrast(image, options.brightness, options.contrast)
    image = adjust.gray(image, options.gray)
    if geometry.output != geometry.cropped:
        image = _pad(image, geometry.output)
    if options.watermark is not None and watermark_path is not None:
        image = apply_watermark(image, load_watermark(watermark_path), options.watermark)

    deadline.check("encode")
    out_format = fmt if fmt is not None else _legacy_format(image)
    image = prepare_alpha(image, out_format)
    data = _encode(image, out_format, options.effective_quality)
    return RenderedImage(
        out_format, image.width, image.height, data, window, tuple(found), geometry.resized
    )


def _crop(
    image: Any, size: tuple[int, int], options: RenderOptions
) -> tuple[Any, tuple[int, int, int, int] | None, list[faces.Box]]:
    width, height = size
    if (image.width, image.height) == (width, height):
        return image, None, []
    how = options.crop
    found: list[faces.Box] = []
    if how is CropMode.FACE:
        found = faces.detect_faces(image)
        if found:
            left, top = faces.window_around(found, (image.width, image.height), size)
            return image.crop(left, top, width, height), (left, top, width, height), found
        how = CropMode.ATTENTION  # no face (or no OpenCV): libvips' attention crop
    if how in (CropMode.ATTENTION, CropMode.ENTROPY):
        cropped, extra = image.smartcrop(
            width, height, interesting=how.value, attention_x=True, attention_y=True
        )
        # libvips reports the point of interest; the window it chose is clamped around it.
        left = max(0, min(image.width - width, extra["attention_x"] - width // 2))
        top = max(0, min(image.height - height, extra["attention_y"] - height // 2))
        return cropped, (left, top, width, height), found
    if how is CropMode.FOCAL and options.focal is not None:
        fx, fy = options.focal
        left = round(fx * image.width - width / 2)
        top = round(fy * image.height - height / 2)
    else:
        left = (image.width - width) // 2
        top = (image.height - height) // 2
    left = max(0, min(image.width - width, left))
    top = max(0, min(image.height - height, top))
    return image.crop(left, top, width, height), (left, top, width, height), found


def _pad(image: Any, size: tuple[int, int]) -> Any:
    """Centre the image on a canvas of ``size``: transparent if it has alpha, else white."""
    background = [0, 0, 0, 0] if image.hasalpha() else [255, 255, 255]
    left = (size[0] - image.width) // 2
    top = (size[1] - image.height) // 2
    return image.embed(left, top, size[0], size[1], extend="background", background=background)


# WebP effort for renders (0-6; libvips' default, used for profile variants, is 4). A
# render is made while a client waits: effort 2 encodes an 800x600 photo about 30% faster
# for files about 3% larger (bench/render_bench.py).
RENDER_WEBP_EFFORT = 2


def _encode(image: Any, fmt: ImageFormat, quality: int) -> bytes:
    if fmt is ImageFormat.WEBP:
        data: bytes = image.webpsave_buffer(Q=quality, keep="none", effort=RENDER_WEBP_EFFORT)
        return data
    return encode(image, fmt, quality)


def _legacy_format(image: Any) -> ImageFormat:
    """PNG where alpha matters (some pixel not fully opaque), else JPEG."""
    if image.hasalpha() and image.extract_band(image.bands - 1).min() < 255:
        return ImageFormat.PNG
    return ImageFormat.JPEG
