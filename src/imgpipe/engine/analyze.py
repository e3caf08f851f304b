"""Facts about an image for its resource: sanitised EXIF, dominant colours, BlurHash, pHash.

Computed from a tiny copy of the already decoded pixels (at most 64 px on the long side)
plus the header, so analysis costs no extra decode.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyvips

from imgpipe.domain.media import ImageFormat
from imgpipe.engine.loaders import load_header

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
    """Dominant colours, BlurHash and pHash of an 8-bit sRGB image (any size)."""
    small = image.thumbnail_image(64, height=64)
    if small.hasalpha():
        small = small.flatten(background=[255, 255, 255])
    small = small.extract_band(0, n=3) if small.bands >= 3 else small.bandjoin([small, small])
    rgb = np.ndarray(
        buffer=small.cast("uchar").write_to_memory(),
        dtype=np.uint8,
        shape=(small.height, small.width, 3),
    )
    return {
        "dominant_colors": dominant_colors(rgb),
        "blurhash": blurhash(rgb),
        "phash": phash(image),
    }


def dominant_colors(rgb: np.ndarray, count: int = 5) -> list[str]:
    """The most common colours after quantising to 4 bits a channel, as #rrggbb."""
    quantised = (rgb.reshape(-1, 3) >> 4).astype(np.int32)
    codes = quantised[:, 0] << 8 | quantised[:, 1] << 4 | quantised[:, 2]
    values, counts = np.unique(codes, return_counts=True)
    order = np.lexsort((values, -counts))[:count]  # ties broken by value: deterministic
    colours = []
    for code in values[order]:
        r, g, b = (int(code) >> 8 & 15), (int(code) >> 4 & 15), (int(code) & 15)
        colours.append(f"#{r * 17:02x}{g * 17:02x}{b * 17:02x}")
    return colours


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


def file_exif(path: Path, fmt: ImageFormat) -> dict[str, str]:
    """Sanitised EXIF straight from a file's header (no pixels decoded)."""
    if fmt is ImageFormat.BMP:
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
