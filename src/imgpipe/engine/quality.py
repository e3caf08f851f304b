"""How good a photo looks, measured: sharpness, exposure, noise, JPEG quality, one score.

Every pixel measure runs on one grey copy at most 512 px on its long side, taken from the
pixels the worker already decoded, so the figures do not depend on the original's size
and cost no extra decode. docs/architecture.md says how each is computed and why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ANALYSIS_SIZE = 512
# Below this long side a Laplacian says more about the resize than about focus.
_MIN_SHARPNESS_SIZE = 128

# IJG (libjpeg) base tables at quality 50, natural (row-major) order, as Pillow reports them.
_IJG_LUMA = np.array(
    [
        16, 11, 10, 16, 24, 40, 51, 61,
        12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56,
        14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77,
        24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101,
        72, 92, 95, 98, 112, 100, 103, 99,
    ],
    dtype=np.float64,
)  # fmt: skip
_IJG_CHROMA = np.full(64, 99.0)
_IJG_CHROMA[[0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 24, 25, 27]] = [
    17,
    18,
    24,
    47,
    18,
    21,
    26,
    66,
    24,
    26,
    56,
    47,
    66,
    99,
]


@dataclass(frozen=True, slots=True)
class PixelQuality:
    sharpness: float | None  # 0-1, 1 = crisp; None when too small or too flat to tell
    exposure: float  # 0-1, 1 = nothing clipped
    clipped_highlights: float  # share of channel values at 253-255
    clipped_shadows: float  # share of pixels black in every channel (0-5)
    noise: float  # estimated standard deviation of the noise, in 8-bit levels


def measure_pixels(rgb: np.ndarray) -> PixelQuality:
    """The pixel measures of an 8-bit sRGB image (H, W, 3) at most ANALYSIS_SIZE wide."""
    grey = rgb.astype(np.float32) @ np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
    # Highlights clip channel by channel: a blown channel loses its detail and shifts the
    # hue (an overexposed blue sky turns cyan), so every channel value at 253 or above
    # counts. Shadows count only where all three channels are black: saturated colours
    # (a red sign, a blue sky) legitimately have a channel near zero.
    highlights = float((rgb >= 253).mean())
    shadows = float((rgb.max(axis=2) <= 5).mean())
    return PixelQuality(
        sharpness=_sharpness(grey),
        exposure=round(_exposure(highlights, shadows), 3),
        clipped_highlights=round(highlights, 4),
        clipped_shadows=round(shadows, 4),
        noise=round(_noise_sigma(grey), 2),
    )


def _sharpness(grey: np.ndarray) -> float | None:
    if max(grey.shape) < _MIN_SHARPNESS_SIZE or min(grey.shape) < 3:
        return None
    if float(grey.std()) < 2.0:  # a flat image has no edge to be sharp or soft
        return None
    lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
    lap = lap - 4 * grey[1:-1, 1:-1]
    # Variance of the Laplacian (Pech-Pacheco et al.), over the image's own contrast, so
    # brightening or a low-contrast scene does not pass for focus. Calibrated on the
    # corpus photos: in-focus ones measure 0.6-1.5, a 2 px blur at 512 px about 0.15.
    ratio = float(lap.std()) / (float(grey.std()) + 1.0)
    return round(1.0 - math.exp(-ratio / 0.35), 3)


def _exposure(highlights: float, shadows: float) -> float:
    # A few clipped pixels are normal (speculars, a black frame), and night scenes have
    # black areas by nature, so only clipping past 1 % of highlights and 5 % of shadows
    # costs; blown highlights cost twice as much, being the loss viewers notice first.
    clipped = 2.0 * max(0.0, highlights - 0.01) + max(0.0, shadows - 0.05)
    return max(0.0, 1.0 - clipped)


def _noise_sigma(grey: np.ndarray) -> float:
    """Immerkær's fast noise estimate: the mean absolute response of a 3x3 mask that
    cancels any locally planar image, scaled to a Gaussian sigma."""
    if min(grey.shape) < 3:
        return 0.0
    g = grey
    mask = (
        g[:-2, :-2] - 2 * g[:-2, 1:-1] + g[:-2, 2:]
        - 2 * g[1:-1, :-2] + 4 * g[1:-1, 1:-1] - 2 * g[1:-1, 2:]
        + g[2:, :-2] - 2 * g[2:, 1:-1] + g[2:, 2:]
    )  # fmt: skip
    return float(math.sqrt(math.pi / 2) * np.abs(mask).mean() / 6)


def jpeg_quality(path: Path) -> int | None:
    """The IJG quality (1-100) whose scaled standard tables are nearest to the file's own
    quantisation tables, read from the header only; None when they cannot be read."""
    # imgpipe's own MAX_PIXELS was enforced from the header already; Pillow's separate
    # bomb guard (a lower default) must not turn an accepted image into a failure (as in
    # engine/loaders.py). Only the header is read here.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path, formats=["JPEG"]) as image:
            tables = getattr(image, "quantization", None) or {}
    except Exception:  # an optional estimate: a header Pillow dislikes must not fail the image
        return None
    luma = tables.get(0)
    if luma is None or len(luma) != 64:
        return None
    chroma = tables.get(1)
    actual = [np.log(np.asarray(luma, dtype=np.float64))]
    bases = [_IJG_LUMA]
    if chroma is not None and len(chroma) == 64:
        actual.append(np.log(np.asarray(chroma, dtype=np.float64)))
        bases.append(_IJG_CHROMA)
    best, best_error = 100, math.inf
    for quality in range(1, 101):
        scale = 5000 / quality if quality < 50 else 200 - 2 * quality
        error = 0.0
        for table, base in zip(actual, bases, strict=True):
            expected = np.clip(np.floor((base * scale + 50) / 100), 1, 255)
            error += float(np.abs(table - np.log(expected)).sum())
        if error < best_error:
            best, best_error = quality, error
    return best


def score(pixels: PixelQuality, jpeg: int | None) -> int:
    """One 0-100 figure: a weighted geometric mean of the parts, so a single bad part
    (blur, clipping, heavy compression) pulls the whole down."""
    parts: list[tuple[float, float]] = [(pixels.exposure, 0.25)]
    if pixels.sharpness is not None:
        parts.append((pixels.sharpness, 0.4))
    # Sensor noise of a good photo at 512 px is 1-3 levels; 12 is very grainy.
    parts.append((math.exp(-max(0.0, pixels.noise - 2.0) / 12.0), 0.15))
    if jpeg is not None:
        # Quality 90 and above is visually lossless; 50 shows artefacts at full size.
        parts.append((min(1.0, 0.2 + 0.8 * jpeg / 90), 0.2))
    weight = sum(w for _, w in parts)
    log_mean = sum(w * math.log(max(v, 1e-3)) for v, w in parts) / weight
    return round(100 * math.exp(log_mean))


def quality_summary(pixels: PixelQuality, jpeg: int | None) -> dict[str, object]:
    """metadata.quality: {score, sharpness, exposure, noise, jpeg_quality}."""
    return {
        "score": score(pixels, jpeg),
        "sharpness": pixels.sharpness,
        "exposure": pixels.exposure,
        "clipped_highlights": pixels.clipped_highlights,
        "clipped_shadows": pixels.clipped_shadows,
        "noise": pixels.noise,
        "jpeg_quality": jpeg,
    }
