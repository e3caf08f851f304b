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

The copy is a pure function of the original (``make_source`` is the same decode the
worker does), so a render made from a copy the worker wrote and one made from a copy the
render path had to make itself (an image processed before copies existed, or whose copy
was lost) are the same bytes: a URL keeps its bytes and its ETag. Geometry is always
planned from the original's size, never from the copy's, for the same reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgpipe.domain.media import ProbeResult
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


def serves(source: tuple[int, int], decode_size: tuple[int, int]) -> bool:
    """Whether a render that decodes to ``decode_size`` can be made from the copy: the
    copy must hold at least those pixels on both axes (a render never upscales it)."""
    return decode_size[0] <= source[0] and decode_size[1] <= source[1]


def size_to_read(probe: ProbeResult, decode_size: tuple[int, int]) -> tuple[int, int] | None:
    """The size of the copy a render that decodes to ``decode_size`` reads, or None: it
    reads the original (no copy for this image, or the copy is too small)."""
    size = source_size(probe)
    return size if size is not None and serves(size, decode_size) else None


def encode_source(base: Any) -> bytes:
    """The copy's bytes from the base decode (upright, 8-bit sRGB): a JPEG, or a
    lossless PNG when the base has alpha."""
    data: bytes
    if base.hasalpha():
        data = base.pngsave_buffer(compression=ALPHA_SOURCE_COMPRESSION, keep="none")
    else:
        data = base.jpegsave_buffer(Q=SOURCE_QUALITY, keep="none", subsample_mode="off")
    return data


def make_source(path: Path, probe: ProbeResult, size: tuple[int, int]) -> bytes:
    """Decode the original as the worker's base decode does, and encode the copy."""
    return encode_source(decode(path, probe, size, all_frames=False))
