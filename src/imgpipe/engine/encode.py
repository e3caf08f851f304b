"""Write a libvips image in an output format, with every piece of metadata stripped.

``keep="none"`` drops EXIF (and with it GPS), XMP, IPTC and ICC: pixels are already
sRGB, which every browser assumes for an untagged image. Encoders are deterministic, so
the same pixels and settings give byte-identical files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyvips

from imgpipe.domain.formats import FORMATS
from imgpipe.domain.media import ImageFormat
from imgpipe.engine import jxl
from imgpipe.engine.plan import BASE_BOX

if TYPE_CHECKING:
    import numpy as np

# Each output format's saver and settings are in the registry (domain/formats.py).
AVIF_EFFORT = dict(FORMATS[ImageFormat.AVIF].saver_options)["effort"]

# quality="auto": the smallest file whose SSIM against the source stays at or above this.
AUTO_SSIM_TARGET = 0.985
AUTO_QUALITY_RANGE = (40, 92)


# Effort when a client waits (the registry's fast_options).
FAST_WEBP_EFFORT = dict(FORMATS[ImageFormat.WEBP].fast_options)["effort"]
FAST_AVIF_EFFORT = dict(FORMATS[ImageFormat.AVIF].fast_options)["effort"]
# A render larger than the render source's box is bound by its WebP encode, one thread:
# 2400x1800 takes 141-337 ms of CPU at effort 2, 89-186 ms at this effort, for files 17%
# larger (3-25%) at about the same SSIMULACRA2 (bench/large_render_bench.py --score).
LARGE_RENDER_PIXELS = BASE_BOX[0] * BASE_BOX[1]
LARGE_FAST_WEBP_EFFORT = 0


def encode(
    image: Any, fmt: ImageFormat, quality: int | str, *, fast: bool = False, animated: bool = False
) -> bytes:
    """``quality``: 1-100, or "auto" (the smallest file above a quality target).
    ``fast``: a client waits for it (on-demand renders); ``animated``: the image is a
    strip of frames (``page-height``) to write as one animation."""
    if quality == "auto":
        return _encode_auto(image, fmt, fast)
    assert isinstance(quality, int)
    if animated and fmt is ImageFormat.WEBP:
        # Mixed: each frame lossy or lossless, whichever is smaller. Flat-colour GIF
        # frames come out at half the bytes (bench/animated_sizes.py); min_size would
        # search keyframe spacing too, at 10-50x the time for 1% less.
        data: bytes = image.webpsave_buffer(Q=quality, keep="none", mixed=True)
        return data
    return _encode(image, fmt, quality, fast)


def _encode(image: Any, fmt: ImageFormat, quality: int, fast: bool = False) -> bytes:
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
    data: bytes = pyvips.Operation.call(f"{spec.saver}_buffer", image, **options)
    return data


def _encode_auto(image: Any, fmt: ImageFormat, fast: bool) -> bytes:
    """Bisect quality for the smallest file that keeps the SSIM target (PNG is lossless)."""
    if fmt is ImageFormat.PNG:
        return _encode(image, fmt, 100)
    reference = _luma(image)
    low, high = AUTO_QUALITY_RANGE
    best = _encode(image, fmt, high, fast)
    while low <= high:
        quality = (low + high) // 2
        candidate = _encode(image, fmt, quality, fast)
        decoded = pyvips.Image.new_from_buffer(candidate, "")
        if _ssim(reference, _luma(decoded)) >= AUTO_SSIM_TARGET:
            best = candidate if len(candidate) < len(best) else best
            high = quality - 1
        else:
            low = quality + 1
    return best


def _luma(image: Any) -> np.ndarray:
    import numpy as np  # only quality=auto needs it; not imported on every start-up

    if image.get_typeof("page-height") and image.get("page-height") < image.height:
        image = image.crop(0, 0, image.width, image.get("page-height"))
    if image.hasalpha():
        image = image.flatten(background=[255, 255, 255])
    grey = image.colourspace("b-w").extract_band(0).cast("float")
    return np.ndarray(
        buffer=grey.write_to_memory(), dtype=np.float32, shape=(grey.height, grey.width)
    )


def _ssim(a: np.ndarray, b: np.ndarray, block: int = 8) -> float:
    """Mean SSIM over non-overlapping 8x8 blocks: cheap, and enough to rank qualities."""
    h = (min(a.shape[0], b.shape[0]) // block) * block
    w = (min(a.shape[1], b.shape[1]) // block) * block
    if h == 0 or w == 0:
        return 1.0

    def blocks(x: np.ndarray) -> np.ndarray:
        return x[:h, :w].reshape(h // block, block, w // block, block).swapaxes(1, 2)

    xa, xb = blocks(a), blocks(b)
    mu_a, mu_b = xa.mean(axis=(2, 3)), xb.mean(axis=(2, 3))
    var_a, var_b = xa.var(axis=(2, 3)), xb.var(axis=(2, 3))
    cov = ((xa - mu_a[..., None, None]) * (xb - mu_b[..., None, None])).mean(axis=(2, 3))
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(ssim.mean())
