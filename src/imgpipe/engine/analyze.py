"""Facts about an image for its resource: sanitised EXIF, palette, BlurHash, ThumbHash,
pHash and a quality score.

Computed from small copies of the already decoded pixels (64 px on the long side for
colours and BlurHash, 100 px for ThumbHash, 512 px for the quality measures) plus the
header, so analysis costs no extra decode.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyvips

from imgpipe.domain.media import ImageFormat
from imgpipe.engine import quality
from imgpipe.engine.loaders import VIPS_DECODED, load_header
from imgpipe.engine.palette import palette
from imgpipe.engine.placeholders import thumbhash

# EXIF fields safe to show: camera and exposure facts. GPS (IFD3), maker notes, serial
# numbers, owner names and thumbnails are never copied.
_SAFE_EXIF = {
    "exif-ifd0-Make": "Make",
    "exif-ifd0-Model": "Model",
    "exif-ifd0-Software": "Software",
    "exif-ifd0-Orientation": "Orientation",
    "exif-ifd2-DateTimeOriginal": "DateTimeOriginal",
    "exif-ifd2-ExposureTime": "ExposureTime",
    "exif-ifd2-FNumber": "FNumber",
    "exif-ifd2-ISOSpeedRatings": "ISOSpeedRatings",
    "exif-ifd2-FocalLength": "FocalLength",
    "exif-ifd2-FocalLengthIn35mmFilm": "FocalLengthIn35mmFilm",
    "exif-ifd2-LensModel": "LensModel",
    "exif-ifd2-Flash": "Flash",
}
# libvips renders a tag as "VALUE (DESCRIPTION, N components, M bytes)".
_VIPS_EXIF_SUFFIX = re.compile(r"\s*\((?:[^()]|\([^()]*\))*, \d+ components?, \d+ bytes\)\s*$")

_BLURHASH_CHARS = (
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~"
)


def sanitised_exif(header: Any) -> dict[str, str]:
    """Whitelisted EXIF fields as text, from a libvips header."""
    fields = set(header.get_fields())
    exif: dict[str, str] = {}
    for vips_name, name in _SAFE_EXIF.items():
        if vips_name in fields:
            value = _VIPS_EXIF_SUFFIX.sub("", str(header.get(vips_name))).strip()
            if value:
                exif[name] = value
    return exif


def analyze_pixels(image: Any) -> dict[str, Any]:
    """Palette, BlurHash, ThumbHash, pHash and pixel quality of an 8-bit sRGB image.

    ``quality`` here holds the pixel measures only; ``file_facts`` adds the JPEG quality
    and the score once the file's header has been read."""
    # The smaller copies come from the 512 px one: shrinking 512 px costs a tenth of
    # shrinking the base again.
    mid = _shrunk(image, quality.ANALYSIS_SIZE).copy_memory()
    rgb = _rgb_array(_shrunk(mid, 64))
    swatches = palette(rgb)
    measures = quality.measure_pixels(_rgb_array(mid))
    return {
        "dominant_colors": [s.hex for s in swatches],
        "palette": [{"hex": s.hex, "share": s.share} for s in swatches],
        "blurhash": blurhash(rgb),
        "thumbhash": thumbhash(_rgba_array(_shrunk(mid, 100))),
        "phash": phash(image),
        "quality": quality.quality_summary(measures, None),
    }


def _shrunk(image: Any, longest: int) -> Any:
    # Never enlarged: an upscaled icon would be measured as blurry, and its colours as
    # the interpolation's blends.
    return image.thumbnail_image(longest, height=longest, size="down")


def _rgb_array(small: Any) -> np.ndarray:
    if small.hasalpha():
        small = small.flatten(background=[255, 255, 255])
    small = small.extract_band(0, n=3) if small.bands >= 3 else small.bandjoin([small, small])
    return np.ndarray(
        buffer=small.cast("uchar").write_to_memory(),
        dtype=np.uint8,
        shape=(small.height, small.width, 3),
    )


def _rgba_array(small: Any) -> np.ndarray:
    """RGBA with straight (not premultiplied) alpha, as ThumbHash expects."""
    alpha = small.extract_band(small.bands - 1) if small.hasalpha() else None
    colour = small.extract_band(0, n=small.bands - 1) if alpha is not None else small
    colour = colour.extract_band(0, n=3) if colour.bands >= 3 else colour.bandjoin([colour] * 2)
    rgba = colour.bandjoin(alpha if alpha is not None else 255).cast("uchar")
    return np.ndarray(
        buffer=rgba.write_to_memory(), dtype=np.uint8, shape=(rgba.height, rgba.width, 4)
    )


def dominant_colors(rgb: np.ndarray, count: int = 5) -> list[str]:
    """The palette's colours, largest share first, as #rrggbb."""
    return [s.hex for s in palette(rgb, count)]


def phash(image: Any) -> str:
    """64-bit perceptual hash: DCT of a 32x32 grey image, low 8x8 against their median."""
    grey = image.colourspace("b-w").extract_band(0)
    grey = grey.thumbnail_image(32, height=32, size="force").cast("float")
    pixels = np.ndarray(buffer=grey.write_to_memory(), dtype=np.float32, shape=(32, 32))
    n = 32
    k = np.arange(n)
    basis = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))
    dct = basis @ pixels.astype(np.float64) @ basis.T
    low = dct[:8, :8].flatten()
    bits = low > np.median(low[1:])
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def blurhash(rgb: np.ndarray, x_components: int = 4, y_components: int = 3) -> str:
    """The BlurHash of an sRGB image (https://blurha.sh), 4x3 components."""
    height, width = rgb.shape[:2]
    linear = _srgb_to_linear(rgb.astype(np.float64) / 255.0)
    ys = np.arange(height)[:, None]
    xs = np.arange(width)[None, :]
    factors = []
    for j in range(y_components):
        for i in range(x_components):
            basis = np.cos(np.pi * i * xs / width) * np.cos(np.pi * j * ys / height)
            norm = 1.0 if (i == 0 and j == 0) else 2.0
            factor = norm * (linear * basis[:, :, None]).sum(axis=(0, 1)) / (width * height)
            factors.append(factor)
    dc, ac = factors[0], factors[1:]
    out = _b83((x_components - 1) + (y_components - 1) * 9, 1)
    max_ac = max((float(np.abs(a).max()) for a in ac), default=0.0)
    quantised_max = max(0, min(82, math.floor(max_ac * 166 - 0.5))) if ac else 0
    out += _b83(quantised_max, 1)
    ac_scale = (quantised_max + 1) / 166 if ac else 1.0
    r, g, b = (_linear_to_srgb8(c) for c in dc)
    out += _b83((r << 16) + (g << 8) + b, 4)
    for factor in ac:
        q = [max(0, min(18, math.floor(_sign_pow(c / ac_scale, 0.5) * 9 + 9.5))) for c in factor]
        out += _b83(q[0] * 19 * 19 + q[1] * 19 + q[2], 2)
    return out


def _srgb_to_linear(v: np.ndarray) -> np.ndarray:
    result: np.ndarray = np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)
    return result


def _linear_to_srgb8(value: float) -> int:
    v = max(0.0, min(1.0, value))
    s = v * 12.92 if v <= 0.0031308 else 1.055 * v ** (1 / 2.4) - 0.055
    return int(s * 255 + 0.5)


def _sign_pow(value: float, exp: float) -> float:
    return math.copysign(abs(value) ** exp, value)


def _b83(value: int, length: int) -> str:
    return "".join(_BLURHASH_CHARS[(value // 83 ** (length - i - 1)) % 83] for i in range(length))


def file_facts(path: Path, fmt: ImageFormat, analysis: dict[str, Any]) -> dict[str, Any]:
    """What the file's header adds to the pixel analysis: sanitised EXIF and, for a JPEG,
    the encoder's quality, which then enters the quality score."""
    facts: dict[str, Any] = {"exif": file_exif(path, fmt)}
    measured = analysis.get("quality")
    if isinstance(measured, dict):
        jpeg = quality.jpeg_quality(path) if fmt is ImageFormat.JPEG else None
        pixels = quality.PixelQuality(
            sharpness=measured["sharpness"],
            exposure=measured["exposure"],
            clipped_highlights=measured["clipped_highlights"],
            clipped_shadows=measured["clipped_shadows"],
            noise=measured["noise"],
        )
        facts["quality"] = quality.quality_summary(pixels, jpeg)
    return facts


def file_exif(path: Path, fmt: ImageFormat) -> dict[str, str]:
    """Sanitised EXIF straight from a file's header (no pixels decoded)."""
    if fmt is ImageFormat.BMP or (fmt is not ImageFormat.HEIC and fmt not in VIPS_DECODED):
        # No libvips loader reads these headers (camera RAW, JPEG XL): no EXIF is reported.
        return {}
    loader = "heifload" if fmt is ImageFormat.HEIC else None
    try:
        header = (
            pyvips.Operation.call(loader, str(path), access="sequential")
            if loader
            else load_header(path, fmt)
        )
        # Metadata is a courtesy: malformed EXIF in a hostile file must not fail an image
        # whose pixels decode, nor escape as an error imgpipe has no name for.
        return sanitised_exif(header)
    except Exception:
        return {}
