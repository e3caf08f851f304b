"""Camera RAW through LibRaw (rawpy): header facts without demosaicing, then a full decode.

``probe_raw`` opens the file (LibRaw's identify: it parses the container and metadata,
reads no sensor data) for the size the decode will have, so the pixel limits hold before
anything large is allocated. ``decode_raw`` then unpacks and demosaics the sensor data
(AHD at full size, or 2x2 cells when half the size is enough: see there), applies the
white balance the camera recorded, LibRaw's flip (the orientation), and converts to 8-bit
sRGB with the sRGB tone curve. The embedded previews many RAW files carry are never used:
they are small, and a different rendering of the scene.

LibRaw's default automatic brightening (the brightest 1% of pixels clipped, as dcraw
does) is kept: a demosaiced RAW without it looks a stop or more darker than the camera's
own JPEG, and the result is still a pure function of the file's bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyvips
import rawpy

from imgpipe.domain.errors import CorruptImage
from imgpipe.domain.media import ImageFormat, ProbeResult

# LibRaw's flip is a bit set: 1 mirror left-right, 2 upside down, 4 transpose. With 4 the
# axes swap (EXIF orientations 5 to 8 are flips 4, 6, 7 and 5).
_TRANSPOSE = 4
# sRGB's tone curve as LibRaw's (power, toe slope); its default is BT.709's (2.222, 4.5).
_SRGB_GAMMA = (2.4, 12.92)


def probe_raw(path: Path, fmt: ImageFormat) -> ProbeResult:
    """Width and height of the demosaiced, upright image; no sensor data is read."""
    try:
        with rawpy.RawPy() as raw:
            raw.open_file(str(path))
            sizes = raw.sizes
    except (rawpy.LibRawError, OSError) as exc:
        raise CorruptImage(
            f"The {fmt.spec.name} file could not be read as a camera RAW: {_reason(exc)}."
        ) from exc
    width, height = output_size(
        sizes.width, sizes.height, float(sizes.pixel_aspect), int(sizes.flip)
    )
    if width < 1 or height < 1:
        raise CorruptImage(f"The {fmt.spec.name} file declares no pixels.")
    # The flip is applied by the decode, so the size above is already upright.
    return ProbeResult(fmt, width, height)


def output_size(width: int, height: int, pixel_aspect: float, flip: int) -> tuple[int, int]:
    """The size LibRaw's postprocess gives: non-square sensor pixels are stretched square
    (libraw ``stretch()``), then the flip may swap the axes."""
    if pixel_aspect < 1:
        height = int(height / pixel_aspect + 0.5)
    elif pixel_aspect > 1:
        width = int(width * pixel_aspect + 0.5)
    return (height, width) if flip & _TRANSPOSE else (width, height)


def decode_raw(path: Path, fmt: ImageFormat, at_least: tuple[int, int] | None = None) -> Any:
    """The demosaiced, white-balanced, upright image as an 8-bit sRGB libvips image.

    With ``at_least`` (the upright size the caller will shrink to) no larger than half the
    sensor on both axes, each 2x2 Bayer cell becomes one pixel (LibRaw's half-size mode)
    instead of an AHD demosaic at full size: every pixel then has its own measured red,
    green and blue, no interpolation, and a 24 MP RAW takes a fraction of the time and
    memory. The variants are the same size either way, from the same sensor data.
    """
    try:
        with rawpy.RawPy() as raw:
            raw.open_file(str(path))
            sizes = raw.sizes
            full = output_size(
                sizes.width, sizes.height, float(sizes.pixel_aspect), int(sizes.flip)
            )
            raw.unpack()
            rgb = raw.postprocess(
                use_camera_wb=True,
                output_color=rawpy.ColorSpace.sRGB,
                output_bps=8,
                gamma=_SRGB_GAMMA,
                half_size=half_size_suffices(full, at_least),
            )
    except (rawpy.LibRawError, OSError) as exc:
        raise CorruptImage(
            f"The {fmt.spec.name} sensor data could not be decoded: {_reason(exc)}."
        ) from exc
    return array_to_vips(rgb)


def half_size_suffices(full: tuple[int, int], at_least: tuple[int, int] | None) -> bool:
    """Whether a half-size decode of a ``full``-size RAW still covers ``at_least``."""
    if at_least is None:
        return False
    return full[0] // 2 >= at_least[0] and full[1] // 2 >= at_least[1]


def array_to_vips(array: np.ndarray[Any, Any]) -> Any:
    """An 8-bit H x W (x bands) array as a libvips image, tagged sRGB (or grey)."""
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    height, width, bands = array.shape
    data = np.ascontiguousarray(array, dtype=np.uint8)
    # new_from_memory keeps a reference to ``data`` instead of copying 3 bytes a pixel.
    image = pyvips.Image.new_from_memory(data.data, width, height, bands, "uchar")
    return image.copy(interpretation="srgb" if bands >= 3 else "b-w")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().rstrip(".")
    return text or type(exc).__name__
