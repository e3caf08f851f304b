"""Camera RAW and JPEG XL fixtures, generated: a DNG is a TIFF with DNG tags around a Bayer
mosaic (tifffile writes it), a JPEG XL comes from imagecodecs' libjxl encoder."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import tifffile

from extras import require

LinearRGB = tuple[float, float, float]

# XYZ (D65) to linear sRGB: as a DNG's ColorMatrix1, it says "this sensor sees sRGB".
_XYZ_TO_SRGB = (
    (3.2406, -1.5372, -0.4986),
    (-0.9689, 1.8758, 0.0415),
    (0.0557, -0.2040, 1.0570),
)
WHITE_LEVEL = 4095
RED_PATCH: LinearRGB = (0.8, 0.05, 0.05)
GREY: LinearRGB = (0.2, 0.2, 0.2)


def scene(width: int, height: int, patch: float = 0.25) -> np.ndarray:
    """A linear-light scene: mid grey with a red patch in the top-left corner."""
    rgb = np.empty((height, width, 3), np.float32)
    rgb[:] = GREY
    rgb[: int(height * patch), : int(width * patch)] = RED_PATCH
    return rgb


def bayer(rgb: np.ndarray) -> np.ndarray:
    """The RGGB mosaic a sensor behind a Bayer filter records of ``rgb``, 12-bit."""
    cfa = np.empty(rgb.shape[:2], np.float32)
    cfa[0::2, 0::2] = rgb[0::2, 0::2, 0]
    cfa[0::2, 1::2] = rgb[0::2, 1::2, 1]
    cfa[1::2, 0::2] = rgb[1::2, 0::2, 1]
    cfa[1::2, 1::2] = rgb[1::2, 1::2, 2]
    return np.rint(cfa * WHITE_LEVEL).astype(np.uint16)


def _srational(matrix: tuple[tuple[float, ...], ...]) -> list[int]:
    return [v for row in matrix for x in row for v in (round(x * 10000), 10000)]


def dng(
    cfa: np.ndarray,
    *,
    orientation: int = 1,
    preview: np.ndarray | None = None,
    make: str = "imgpipe",
) -> bytes:
    """A DNG: the mosaic in IFD0 (bare sensor), or behind an RGB ``preview`` in IFD0 with
    the mosaic in a SubIFD, the layout cameras and converters write."""
    ifd0_tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50708, "s", 0, "imgpipe test camera", True),  # UniqueCameraModel
        (50721, "2i", 9, _srational(_XYZ_TO_SRGB), True),  # ColorMatrix1
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral: white balance as shot
        (274, "H", 1, orientation, True),
        (271, "s", 0, make, True),
    ]
    raw_tags = [
        (33421, "H", 2, (2, 2), False),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), False),  # CFAPattern: RGGB
        (50717, "I", 1, WHITE_LEVEL, False),  # WhiteLevel
    ]
    out = io.BytesIO()
    with tifffile.TiffWriter(out) as tif:
        if preview is None:
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=ifd0_tags + raw_tags)
        else:
            tif.write(preview, photometric="rgb", subfiletype=1, subifds=1, extratags=ifd0_tags)
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=raw_tags)
    return out.getvalue()


def plain_tiff(rgb8: np.ndarray, make: str = "") -> bytes:
    out = io.BytesIO()
    tags = [(271, "s", 0, make, True)] if make else []
    tifffile.imwrite(out, rgb8, photometric="rgb", extratags=tags)
    return out.getvalue()


def require_imagecodecs() -> None:
    """imagecodecs is the `jxl` extra: skip without it on a laptop, fail in CI."""
    require("imagecodecs", "jxl")


def jxl(rgb8: np.ndarray, **options: Any) -> bytes:
    require_imagecodecs()
    import imagecodecs

    return bytes(imagecodecs.jpegxl_encode(rgb8, **options))
