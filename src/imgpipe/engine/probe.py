"""Validate an image by content and read its header facts, without a full decode.

This is the gate in front of everything: the API calls it on every upload and the
worker calls it again before decoding, so limits hold even for an original that was
stored before a limit was lowered.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from pathlib import Path

import pyvips

from imgpipe.domain.errors import (
    CorruptImage,
    ImgpipeError,
    TooManyFrames,
    TooManyPixels,
    UnsupportedType,
)
from imgpipe.domain.formats import CAMERA_RAW, FORMATS
from imgpipe.domain.media import ImageFormat, Limits, ProbeResult
from imgpipe.engine import loaders
from imgpipe.engine.jxl import probe_jxl
from imgpipe.engine.sniff import check_complete, sniff_file
from imgpipe.engine.tiffdir import count_directories

# Formats whose extra pages are frames of one animation; for TIFF, AVIF and HEIC only the
# first (primary) image is used, so only it counts.
_ANIMATED_FORMATS = frozenset(f for f, spec in FORMATS.items() if spec.animation)

_SAMPLE_BYTES = {"uchar": 1, "char": 1, "ushort": 2, "short": 2, "uint": 4, "int": 4}

# BMP is decoded whole by Pillow, whose RLE decoder is Python: a few megapixels a second.
# A BMP that declares far more pixels than its bytes can hold is refused before decoding:
# a 2 MB RLE BMP declaring 16384x16384 (a ratio of 400) took 26-30 s and 2.8 GB. Scans
# and screenshots stay far below (RLE BMPs of text 20-60); flat images small enough to
# decode quickly stay under the floor whatever their ratio. pi-heif decodes in C, and a
# flat HEIC photo may compress 200 to 1, so HEIC has only the memory budget (and the
# child process's limits, engine/isolated.py).
RATIO_FORMATS = frozenset({ImageFormat.BMP})
MAX_DECODE_RATIO = 100
DECODE_RATIO_FLOOR = 64 << 20  # decoded bytes below which any ratio is fine


def probe(path: Path, limits: Limits) -> ProbeResult:
    """Type by magic numbers, completeness by end markers, facts from the header.

    Raises UnsupportedType, CorruptImage, TooManyFrames or TooManyPixels, and nothing
    else for anything a file may contain: a decoder's own exception (pi-heif raises
    IndexError and SyntaxError, Pillow almost anything) is the file's fault, so it is
    ``corrupt_image``, never a 500.
    """
    fmt = sniff_file(path)
    if fmt is ImageFormat.TIFF:
        _check_directories(path, limits)
    try:
        check_complete(path, fmt)
        if fmt is ImageFormat.BMP:
            result = _probe_bmp(path)
        elif fmt is ImageFormat.HEIC:
            result = _probe_heic(path)
        elif fmt in CAMERA_RAW:
            from imgpipe.engine.raw import probe_raw  # rawpy and numpy: 0.3 s to import

            result = probe_raw(path, fmt)
        elif fmt is ImageFormat.JXL:
            result = probe_jxl(path)
        else:
            result = _probe_vips(path, fmt)
    except (ImgpipeError, MemoryError):
        raise
    except Exception as exc:
        raise CorruptImage(f"The {fmt.value.upper()} header could not be read.") from exc
    if fmt in CAMERA_RAW:  # LibRaw demosaics to 16 bits a sample
        result = replace(result, sample_bytes=2)
    check_limits(result, path.stat().st_size, limits)
    return result


def check_limits(result: ProbeResult, file_bytes: int, limits: Limits) -> None:
    """The checks ``probe`` makes from a header's facts and the file's size, for facts
    recorded earlier (a render applies limits lowered since upload without reading the
    file; services/render.py). A TIFF's page count is not among the facts: only
    ``probe`` checks it, from the file."""
    _check_limits(result, limits)
    _check_cost(result, file_bytes, limits)


def _check_directories(path: Path, limits: Limits) -> None:
    """Only a TIFF's first page is used, but libtiff walks every directory whenever the
    file is opened (engine/tiffdir.py): pages past MAX_FRAMES are refused as frames are."""
    pages = count_directories(path, limits.max_frames)
    if pages > limits.max_frames:
        raise TooManyFrames(
            f"The TIFF has more than {limits.max_frames} pages (image directories); "
            f"at most {limits.max_frames} are allowed."
        )


def _check_cost(result: ProbeResult, file_bytes: int, limits: Limits) -> None:
    """The decode budget: memory from the header (MAX_DECODE_BYTES), and, for decoders
    that work slowly in Python (Pillow's BMP RLE), the pixels each byte of the file declares."""
    need = result.decode_bytes
    if need > limits.max_decode_bytes:
        raise TooManyPixels(
            f"Decoding the image needs {need} bytes ({result.width}x{result.height}"
            + (f" x {result.frames} frames" if result.frames > 1 else "")
            + f" x {result.bands} bands x {result.sample_bytes} bytes a sample); "
            f"at most {limits.max_decode_bytes} are allowed (MAX_DECODE_BYTES)."
        )
    ratio = need / max(1, file_bytes)
    if result.format in RATIO_FORMATS and need > DECODE_RATIO_FLOOR and ratio > MAX_DECODE_RATIO:
        raise TooManyPixels(
            f"The {result.format.value.upper()} file of {file_bytes} bytes declares "
            f"{result.width}x{result.height} pixels, {ratio:.0f} times its size once "
            f"decoded; at most {MAX_DECODE_RATIO} times is allowed for this format "
            f"above {DECODE_RATIO_FLOOR >> 20} MiB decoded."
        )


def _check_limits(result: ProbeResult, limits: Limits) -> None:
    if result.frames > limits.max_frames:
        raise TooManyFrames(
            f"The animation has {result.frames} frames; at most {limits.max_frames} are allowed."
        )
    pixels = result.width * result.height * result.frames
    if result.progressive and pixels > limits.max_progressive_pixels:
        raise TooManyPixels(
            f"The progressive JPEG is {result.width}x{result.height} = {pixels} pixels; "
            f"progressive JPEGs need memory for the whole image while decoding, so at most "
            f"{limits.max_progressive_pixels} pixels are allowed (baseline JPEGs may have "
            f"up to {limits.max_pixels})."
        )
    if pixels > limits.max_pixels:
        raise TooManyPixels(
            f"The image is {result.width}x{result.height}"
            + (f" x {result.frames} frames" if result.frames > 1 else "")
            + f" = {pixels} pixels; at most {limits.max_pixels} are allowed."
        )


def _probe_vips(path: Path, fmt: ImageFormat) -> ProbeResult:
    try:
        header = loaders.load_header(path, fmt)
        width, height = header.width, header.height
        pages = header.get("n-pages") if header.get_typeof("n-pages") else 1
        frames = pages if fmt in _ANIMATED_FORMATS else 1
        if frames > 1:
            # An animation is loaded as one frame by default; its page height is the frame.
            height = header.get("page-height") if header.get_typeof("page-height") else height
        orientation = header.get("orientation") if header.get_typeof("orientation") else 1
        has_alpha = bool(header.hasalpha())
        bands = int(header.bands)
        sample_bytes = _SAMPLE_BYTES.get(str(header.format), 8)
        progressive = fmt is ImageFormat.JPEG and bool(
            header.get_typeof("interlaced") and header.get("interlaced")
        )
    except pyvips.Error as exc:
        raise CorruptImage(f"The {fmt.value.upper()} header could not be read.") from exc
    if width < 1 or height < 1:
        raise CorruptImage("The image declares no pixels.")
    return ProbeResult(
        format=fmt,
        width=width,
        height=height,
        frames=max(1, frames),
        orientation=orientation if 1 <= orientation <= 8 else 1,
        has_alpha=has_alpha,
        progressive=progressive,
        bands=bands,
        sample_bytes=sample_bytes,
    )


def _probe_bmp(path: Path) -> ProbeResult:
    """BITMAPCOREHEADER (12 bytes, 16-bit sizes) or BITMAPINFOHEADER and later (32-bit)."""
    with path.open("rb") as fh:
        head = fh.read(54)
    try:
        (dib_size,) = struct.unpack_from("<I", head, 14)
        if dib_size == 12:
            width, height = struct.unpack_from("<HH", head, 18)
            (bpp,) = struct.unpack_from("<H", head, 24)
        elif dib_size >= 40:
            width, height = struct.unpack_from("<ii", head, 18)
            (bpp,) = struct.unpack_from("<H", head, 28)
        else:
            raise CorruptImage(f"The BMP header has an unknown size ({dib_size} bytes).")
    except struct.error as exc:
        raise CorruptImage("The BMP header is truncated.") from exc
    height = abs(height)  # negative means rows are stored top-down
    if width < 1 or height < 1:
        raise CorruptImage("The BMP declares no pixels.")
    # Pillow decodes to RGB, or RGBA at 32 bits a pixel; its RLE decoder is Python, the
    # slow case the ratio check (_check_cost) is for.
    alpha = bpp == 32
    return ProbeResult(ImageFormat.BMP, width, height, has_alpha=alpha, bands=4 if alpha else 3)


def _probe_heic(path: Path) -> ProbeResult:
    try:
        heif = loaders.open_heif(path)
        width, height = heif.size
        has_alpha = "A" in heif.mode
    except ImportError as exc:  # pragma: no cover - pi-heif is a core dependency
        raise UnsupportedType("HEIC support is not installed.") from exc
    except Exception as exc:  # IndexError, SyntaxError ("Unsupported feature"), ValueError...
        raise CorruptImage("The HEIC container could not be read.") from exc
    # libheif applies the container's rotation and mirror on decode and reports the
    # displayed size, so no EXIF orientation is applied on top.
    return ProbeResult(
        ImageFormat.HEIC, width, height, has_alpha=has_alpha, bands=4 if has_alpha else 3
    )
