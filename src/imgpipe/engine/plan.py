"""The one planner: render options and the source's size become exact sizes and named steps.

Profiles and render URLs both arrive here as ``RenderOptions``; whatever order they were
written in, the steps run in one order (engine/runner.py executes them):

    decode (the whole upright source, sRGB, straight to the size the plan needs)
    -> region (a manual crop, in source pixels) -> resize (exact) -> rotate -> flip
    -> crop (cover: centre / attention / entropy / face / focal point)
    -> blur -> sharpen -> adjust (brightness, contrast) -> gray -> pad (contain)
    -> watermark -> alpha (for the format) -> encode (metadata stripped)

Pure arithmetic from header facts, so the service can refuse an oversized output before
decoding anything, and sizes are the same whichever decoder or copy produced the pixels
(the worker's base decode, the original, or the render source).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from imgpipe.domain.render_options import BadOption, Fit, Region, RenderOptions, Undersize

Size = tuple[int, int]
Box = tuple[int, int, int, int]  # left, top, width, height

STEP_ORDER = (
    "decode",
    "region",
    "resize",
    "rotate",
    "flip",
    "crop",
    "blur",
    "sharpen",
    "adjust",
    "gray",
    "pad",
    "watermark",
    "alpha",
    "encode",
)

# The one decode every still profile variant is derived from in the worker: the upright
# source fitted inside this box (never upscaled). A constant, not the largest profile in a
# batch, so that a variant's bytes depend only on the original and its own profile. It
# equals the `large` built-in. Changing it changes output bytes: bump OUTPUT_VERSION.
BASE_BOX = (1920, 1080)


def _round(value: float) -> int:
    """Round half up, as libvips does, never below one pixel."""
    return max(1, math.floor(value + 0.5))


@dataclass(frozen=True, slots=True)
class Plan:
    """Exact sizes of every stage, and the named steps that apply, in order.

    ``source``: the upright source's size; ``decode``: the whole upright source at this
    size; ``region``: the part of it kept (in decode pixels); ``resized``: that part's
    exact size before rotation; ``rotated``: after rotation; ``cropped``: after the cover
    crop; ``output``: after padding.
    """

    options: RenderOptions
    source: Size
    decode: Size
    region: Box | None
    resized: Size
    rotated: Size
    cropped: Size
    output: Size
    steps: tuple[str, ...]


def plan(options: RenderOptions, source: Size) -> Plan:
    """The plan for ``options`` over an upright source of ``source`` pixels. Only ``fill``
    and ``contain`` padding ever exceed the source (neither enlarges pixels by a fit)."""
    region = _clip(options.region, source)
    part = (region[2], region[3]) if region else source
    turned = _rotated_box(part, options.rotate)
    rotated, cropped, output = _fit(turned, options)
    resized = _unrotate(rotated, part, options.rotate)
    decode = source
    scaled_region: Box | None = None
    if region is not None:
        sx, sy = resized[0] / part[0], resized[1] / part[1]
        decode = (_round(source[0] * sx), _round(source[1] * sy))
        left = min(decode[0] - 1, math.floor(region[0] * sx))
        top = min(decode[1] - 1, math.floor(region[1] * sy))
        scaled_region = (
            left,
            top,
            max(1, min(decode[0] - left, _round(region[2] * sx))),
            max(1, min(decode[1] - top, _round(region[3] * sy))),
        )
    else:
        decode = resized
    active = {
        "decode": True,
        "region": scaled_region is not None,
        "resize": scaled_region is not None,
        "rotate": options.rotate != 0,
        "flip": options.flip is not None,
        "crop": cropped != rotated,
        "blur": options.blur is not None,
        "sharpen": options.sharpen is not None,
        "adjust": bool(options.brightness or options.contrast),
        "gray": options.gray,
        "pad": output != cropped,
        "watermark": options.watermark is not None,
        "alpha": True,
        "encode": True,
    }
    steps = tuple(name for name in STEP_ORDER if active[name])
    return Plan(options, source, decode, scaled_region, resized, rotated, cropped, output, steps)


def _clip(region: Region | None, source: Size) -> Box | None:
    """The region inside the source; a region wholly outside it is refused."""
    if region is None:
        return None
    left, top = min(region.left, source[0]), min(region.top, source[1])
    right = min(source[0], region.left + region.width)
    bottom = min(source[1], region.top + region.height)
    if right <= left or bottom <= top:
        raise BadOption(
            "region",
            f"a rectangle inside the image's {source[0]}x{source[1]} pixels",
            region.canonical(),
        )
    if (left, top, right - left, bottom - top) == (0, 0, *source):
        return None
    return left, top, right - left, bottom - top


def _rotated_box(size: Size, degrees: float) -> Size:
    if degrees % 180 == 0:
        return size
    if degrees % 90 == 0:
        return size[1], size[0]
    radians = math.radians(degrees)
    cos, sin = abs(math.cos(radians)), abs(math.sin(radians))
    return _round(size[0] * cos + size[1] * sin), _round(size[0] * sin + size[1] * cos)


def _unrotate(rotated: Size, part: Size, degrees: float) -> Size:
    """The size to resize to before a rotation that should end at ``rotated``."""
    if degrees % 180 == 0:
        return rotated
    if degrees % 90 == 0:
        return rotated[1], rotated[0]
    turned = _rotated_box(part, degrees)
    sx, sy = rotated[0] / turned[0], rotated[1] / turned[1]
    return _round(part[0] * sx), _round(part[1] * sy)


def _fit(size: Size, options: RenderOptions) -> tuple[Size, Size, Size]:
    """(resized, cropped, output) for the box and fit, from the (rotated) input size."""
    width, height = size
    box_w, box_h = options.width, options.height
    if box_w is None and box_h is None:
        return size, size, size
    if box_w is None or box_h is None or options.fit is Fit.INSIDE:
        scale = min(
            1.0,
            box_w / width if box_w else math.inf,
            box_h / height if box_h else math.inf,
        )
        fitted = (_round(width * scale), _round(height * scale))
        return fitted, fitted, fitted
    if options.fit is Fit.FILL:
        return (box_w, box_h), (box_w, box_h), (box_w, box_h)
    if options.fit is Fit.COVER:
        scale = min(1.0, max(box_w / width, box_h / height))
        fitted = (_round(width * scale), _round(height * scale))
        cropped = (min(box_w, fitted[0]), min(box_h, fitted[1]))
        if options.undersize is Undersize.CROP and cropped != (box_w, box_h):
            cropped = _box_shape(fitted, (box_w, box_h))
        return fitted, cropped, cropped
    scale = min(1.0, box_w / width, box_h / height)  # contain
    fitted = (_round(width * scale), _round(height * scale))
    return fitted, fitted, (box_w, box_h)


def _box_shape(size: Size, box: Size) -> Size:
    """The largest size with the box's aspect ratio inside ``size`` (no upscaling)."""
    if size[0] * box[1] >= size[1] * box[0]:  # wider than the box: the height decides
        return min(size[0], _round(size[1] * box[0] / box[1])), size[1]
    return size[0], min(size[1], _round(size[0] * box[1] / box[0]))


def base_size(source: Size) -> Size:
    """The worker's base decode of an upright source (see BASE_BOX)."""
    width, height = source
    scale = min(1.0, BASE_BOX[0] / width, BASE_BOX[1] / height)
    return _round(width * scale), _round(height * scale)
