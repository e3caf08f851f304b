"""Write a libvips image in an output format, with every piece of metadata stripped.

``keep="none"`` drops EXIF (and with it GPS), XMP, IPTC and ICC: pixels are already
sRGB, which every browser assumes for an untagged image. Encoders are deterministic, so
the same pixels and settings give byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyvips

from imgpipe.domain.formats import FORMATS
from imgpipe.domain.media import ImageFormat
from imgpipe.domain.render_options import AutoQuality
from imgpipe.engine import jxl
from imgpipe.engine.plan import BASE_BOX

# Each output format's saver and settings are in the registry (domain/formats.py).
AVIF_EFFORT = dict(FORMATS[ImageFormat.AVIF].saver_options)["effort"]


# Effort when a client waits (the registry's fast_options).
FAST_WEBP_EFFORT = dict(FORMATS[ImageFormat.WEBP].fast_options)["effort"]
FAST_AVIF_EFFORT = dict(FORMATS[ImageFormat.AVIF].fast_options)["effort"]
# A render larger than the render source's box is bound by its WebP encode, one thread:
# 2400x1800 takes 141-337 ms of CPU at effort 2, 89-186 ms at this effort, for files 17%
# larger (3-25%) at about the same SSIMULACRA2 (bench/large_render_bench.py --score).
LARGE_RENDER_PIXELS = BASE_BOX[0] * BASE_BOX[1]
LARGE_FAST_WEBP_EFFORT = 0
# Effort for quality=auto's trial encodes of its sample, the lowest: WebP's effort 0 takes
# a third of effort 4's time, AVIF's (libaom speed 9) a third of effort 2's; the
# predictions in engine/auto_quality.PREDICTIONS are fitted with these trials.
TRIAL_EFFORT = {ImageFormat.WEBP: 0, ImageFormat.AVIF: 0}


@dataclass(frozen=True, slots=True)
class Encoded:
    data: bytes
    quality: int | None  # the encoder quality used; None for a lossless format
    # auto: whether the level's target was reached (False: the encoder's best, which for
    # auto:best means no quality gets SSIM above 0.95); None for a fixed quality.
    target_met: bool | None = None


def encode(
    image: Any,
    fmt: ImageFormat,
    quality: int | AutoQuality,
    *,
    fast: bool = False,
    animated: bool = False,
) -> bytes:
    """``quality``: 1-100, or a level of auto (the fewest bytes that keep its target).
    ``fast``: a client waits for it (on-demand renders); ``animated``: the image is a
    strip of frames (``page-height``) to write as one animation."""
    return encode_detailed(image, fmt, quality, fast=fast, animated=animated).data


def encode_detailed(
    image: Any,
    fmt: ImageFormat,
    quality: int | AutoQuality,
    *,
    fast: bool = False,
    animated: bool = False,
) -> Encoded:
    """``encode``, saying which quality it used and whether auto met its target."""
    lossless = FORMATS[fmt].lossless
    if isinstance(quality, AutoQuality):
        # Imported here: its SSIMULACRA2 needs numpy, 85 ms of every batch start-up that
        # no fixed-quality profile uses.
        from imgpipe.engine import auto_quality

        if lossless:  # auto for PNG: lossless, as ever
            return Encoded(_encode(image, fmt, 100), None, True)

        def encode_at(pixels: Any, q: int, trial: bool = False) -> bytes:
            # A search's trials run at TRIAL_EFFORT: the predictions are fitted with
            # them (bench/quality_auto_bench.py --fit).
            return _encode(pixels, fmt, q, fast, trial)

        if animated:  # searched on the first frame, written as the whole animation
            first = image.crop(0, 0, image.width, image.get("page-height"))
            found = auto_quality.encode_auto(first, fmt, quality, encode_at, fast)
            return Encoded(
                _encode_fixed(image, fmt, found.quality, fast, animated), found.quality, found.met
            )
        found = auto_quality.encode_auto(image, fmt, quality, encode_at, fast)
        return Encoded(found.data, found.quality, found.met)
    assert isinstance(quality, int)
    return Encoded(
        _encode_fixed(image, fmt, quality, fast, animated), None if lossless else quality
    )


def _encode_fixed(image: Any, fmt: ImageFormat, quality: int, fast: bool, animated: bool) -> bytes:
    if animated and fmt is ImageFormat.WEBP:
        # Mixed: each frame lossy or lossless, whichever is smaller. Flat-colour GIF
        # frames come out at half the bytes (bench/animated_sizes.py); min_size would
        # search keyframe spacing too, at 10-50x the time for 1% less.
        data: bytes = image.webpsave_buffer(Q=quality, keep="none", mixed=True)
        return data
    return _encode(image, fmt, quality, fast)


def _encode(
    image: Any, fmt: ImageFormat, quality: int, fast: bool = False, trial: bool = False
) -> bytes:
    if fmt is ImageFormat.JXL:  # libvips here has no JXL saver: libjxl through imagecodecs
        return jxl.encode_jxl(image, quality, fast=fast)
    spec = FORMATS[fmt]
    if spec.saver is None:  # pragma: no cover - profiles are validated against OUTPUT_FORMATS
        raise ValueError(f"cannot encode {fmt}")
    options: dict[str, Any] = dict(spec.saver_options)
    if not spec.lossless:
        options["Q"] = spec.saver_quality(quality)
    if fast:
        options.update(spec.fast_options)
        if fmt is ImageFormat.WEBP and image.width * image.height > LARGE_RENDER_PIXELS:
            options["effort"] = LARGE_FAST_WEBP_EFFORT
    if trial and fmt in TRIAL_EFFORT:
        options["effort"] = TRIAL_EFFORT[fmt]
    data: bytes = pyvips.Operation.call(f"{spec.saver}_buffer", image, **options)
    return data
