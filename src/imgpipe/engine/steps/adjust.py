"""Filters: blur, sharpen, brightness and contrast, greyscale. Alpha is never touched."""

from __future__ import annotations

from typing import Any


def _split_alpha(image: Any) -> tuple[Any, Any | None]:
    if image.hasalpha():
        return image.extract_band(0, n=image.bands - 1), image.extract_band(image.bands - 1)
    return image, None


def _join_alpha(colour: Any, alpha: Any | None) -> Any:
    colour = colour.cast("uchar")  # vips_cast clips to 0-255
    return colour if alpha is None else colour.bandjoin(alpha)


def blur(image: Any, sigma: float | None) -> Any:
    if sigma is None:
        return image
    colour, alpha = _split_alpha(image)
    return _join_alpha(colour.gaussblur(sigma, precision="integer"), alpha)


def sharpen(image: Any, sigma: float | None) -> Any:
    if sigma is None:
        return image
    colour, alpha = _split_alpha(image)
    return _join_alpha(colour.sharpen(sigma=sigma).colourspace("srgb"), alpha)


def brightness_contrast(image: Any, brightness: int, contrast: int) -> Any:
    """``out = (in - 128) * (1 + contrast/100) + 128 + brightness * 2.55`` per colour band.

    Both run from -100 to 100: contrast -100 is flat grey, 100 doubles the spread;
    brightness -100 is black, 100 white.
    """
    if brightness == 0 and contrast == 0:
        return image
    factor = 1 + contrast / 100
    offset = 128 * (1 - factor) + brightness * 2.55
    colour, alpha = _split_alpha(image)
    bands = colour.bands
    return _join_alpha(colour.linear([factor] * bands, [offset] * bands), alpha)


def gray(image: Any, enabled: bool) -> Any:
    """Luminance only, kept as three sRGB bands so later steps see one layout."""
    if not enabled:
        return image
    colour, alpha = _split_alpha(image)
    grey = colour.colourspace("b-w").colourspace("srgb")
    return _join_alpha(grey, alpha)
