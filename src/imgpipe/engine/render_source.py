"""The render source: a high-quality intermediate that on-demand renders read instead of
the original, the way large image services keep a "mezzanine" copy.

A cold render of a 12-24 MP JPEG spends most of its CPU entropy-decoding the original,
whatever the output size: DCT scaling only skips the inverse transform, and a progressive
file is decoded in full. An 800x600 render needs a fraction of those pixels. So, for an
opaque still image much larger than the base box, the worker also keeps the base decode
it already holds (plan.BASE_BOX, upright, sRGB) as a JPEG at quality SOURCE_QUALITY
without chroma subsampling, and renders that fit inside it are made from that copy: about
a tenth of the pixels to decode (docs/render.md has the figures, in CPU and in SSIM). An
image with alpha gets a lossless PNG copy instead (JPEG has no alpha): larger, but still
a fraction of a large original's decode (a 16-bit interlaced PNG is decoded whole).

Renders too large for that copy (w=2400, say) may read a second, large copy
(``LARGE_BOX``, ``large_source_size``), made the same way at that size (a decode of its
own, which the worker makes after the image's job is settled: services/process.py):
``source_for`` names the smallest copy that holds a render, or None for the original.

The copy is a pure function of the original (``make_source`` is the same decode the
worker does), so a render made from a copy the worker wrote and one made from a copy the
render path had to make itself (an image processed before copies existed, or whose copy
was lost) are the same bytes: a URL keeps its bytes and its ETag. Geometry is always
planned from the original's size, never from the copy's, for the same reason.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from imgpipe.domain.media import ImageFormat, ProbeResult
from imgpipe.engine.deadline import Deadline
from imgpipe.engine.plan import base_size
from imgpipe.engine.steps.decode import decode

# Part of every render's cache key (services/render.py): changing how the copy is made
# (its box, its quality) changes render bytes, so it must change their keys too.
# 2: images with alpha have a copy too (PNG), so their renders' bytes changed.
SOURCE_VERSION = 2
# JPEG quality of the copy, with 4:4:4 chroma: 800x600 renders from it score an SSIM
# against a float Lanczos reference within 0.0004 of, or above, renders from the original
# on all 11 corpus photos (bench/render_bench.py, source_quality), for copies of
# 200-800 KB. Renders read it without libjpeg's scale-on-load (engine/render.py).
SOURCE_QUALITY = 92
# Only worth a copy when the original has at least this many times its pixels: below
# that, decoding the original costs about as much and loses nothing.
MIN_REDUCTION = 2.0
# The large copy, for renders that do not fit in the base one (w=2400, say): the original
# fitted inside this box. Such renders decode the original, and a large progressive JPEG
# is entropy-decoded in full whatever the scale: 290 ms of CPU for the corpus' 24 MP photo
# at w=2400, 65-96 ms from its 3240x2160 copy; a 12 MP one 218-229 ms against 67-87 ms
# (bench/large_render_bench.py). A baseline JPEG is scaled by libjpeg while decoding, so
# its copy pays only when the render would decode it at full scale: at w=2400, from under
# twice the render's width, hence a lower threshold than the base copy's.
LARGE_BOX = (3840, 2160)
LARGE_MIN_REDUCTION = 1.5
# zlib level of an alpha copy: lossless at any level; 3 encodes 1920x1080 RGBA in a
# fraction of level 6's time for files about 10% larger (bench/hostile_cost.py).
ALPHA_SOURCE_COMPRESSION = 3


def source_size(probe: ProbeResult) -> tuple[int, int] | None:
    """The copy's size for this original, or None when it gets no copy: animations (a
    render takes the first frame, but the copy would lose the rest for nothing) and
    originals not much larger than the copy."""
    if probe.animated:
        return None
    width, height = probe.upright_size
    size = base_size((width, height))
    if width * height < MIN_REDUCTION * size[0] * size[1]:
        return None
    return size


def large_source_size(probe: ProbeResult) -> tuple[int, int] | None:
    """The larger copy's size (the original fitted inside LARGE_BOX), or None when it
    gets none: animations, and originals that decode about as fast as it would. A
    progressive JPEG is entropy-decoded in full whatever the scale, so any one larger than
    the copy gets it; any other original, at LARGE_MIN_REDUCTION times its pixels."""
    if probe.animated:
        return None
    width, height = probe.upright_size
    scale = min(1.0, LARGE_BOX[0] / width, LARGE_BOX[1] / height)
    size = (max(1, math.floor(width * scale + 0.5)), max(1, math.floor(height * scale + 0.5)))
    if probe.format is ImageFormat.JPEG and probe.progressive and scale < 1.0:
        return size
    if width * height < LARGE_MIN_REDUCTION * size[0] * size[1]:
        return None
    return size


def source_for(probe: ProbeResult, decode_size: tuple[int, int]) -> tuple[int, int] | None:
    """The size of the smallest copy a render that decodes to ``decode_size`` can be made
    from (the base copy, else the large one), or None: it reads the original."""
    for size in (source_size(probe), large_source_size(probe)):
        if size is not None and serves(size, decode_size):
            return size
    return None


def serves(source: tuple[int, int], decode_size: tuple[int, int]) -> bool:
    """Whether a render that decodes to ``decode_size`` can be made from the copy: the
    copy must hold at least those pixels on both axes (a render never upscales it)."""
    return decode_size[0] <= source[0] and decode_size[1] <= source[1]


def encode_source(base: Any) -> bytes:
    """The copy's bytes from the base decode (upright, 8-bit sRGB): a JPEG, or a
    lossless PNG when the base has alpha."""
    data: bytes
    if base.hasalpha():
        data = base.pngsave_buffer(compression=ALPHA_SOURCE_COMPRESSION, keep="none")
    else:
        data = base.jpegsave_buffer(Q=SOURCE_QUALITY, keep="none", subsample_mode="off")
    return data


def make_source(
    path: Path, probe: ProbeResult, size: tuple[int, int], deadline: Deadline | None = None
) -> bytes:
    """Decode the original as the worker's base decode does, and encode the copy.
    ``deadline`` stops the decode where it is (``ProcessTimeout``) and changes no byte."""
    base = decode(path, probe, size, all_frames=False, deadline=deadline)
    if deadline is not None:
        deadline.check("render source")
    return encode_source(base)
