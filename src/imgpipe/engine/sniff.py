"""Decide an upload's type from its bytes, never from its name or declared type.

Two cheap reads: the first bytes (magic numbers) choose the format, and a walk over the
container's structure tells whether the file is complete (JPEG EOI after the scan, PNG
chunks up to IEND, RIFF length), so a truncated upload is refused at the door without
decoding a single pixel.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from imgpipe.domain.errors import CorruptImage, UnsupportedType
from imgpipe.domain.media import ImageFormat

HEAD_BYTES = 64

_HEIF_BRANDS_AVIF = {b"avif", b"avis"}
_HEIF_BRANDS_HEIC = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}


def sniff_format(head: bytes) -> ImageFormat:
    """The format named by the magic numbers in ``head``; UnsupportedType otherwise."""
    if head.startswith(b"\xff\xd8\xff"):
        return ImageFormat.JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return ImageFormat.PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ImageFormat.WEBP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return ImageFormat.GIF
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return ImageFormat.TIFF
    if head[:2] == b"BM" and len(head) >= 26:
        return ImageFormat.BMP
    if head[4:8] == b"ftyp":
        return _sniff_heif(head)
    if not head:
        raise UnsupportedType("The file is empty.")
    raise UnsupportedType(
        "The file is not an image imgpipe accepts: JPEG, PNG, WebP, GIF, TIFF, AVIF, HEIC or BMP."
    )


def _sniff_heif(head: bytes) -> ImageFormat:
    box_size = struct.unpack(">I", head[:4])[0]
    brands = [head[8:12]]
    end = min(box_size, len(head))
    brands += [head[i : i + 4] for i in range(16, end - 3, 4)]
    if any(b in _HEIF_BRANDS_AVIF for b in brands):
        return ImageFormat.AVIF
    if any(b in _HEIF_BRANDS_HEIC for b in brands):
        return ImageFormat.HEIC
    raise UnsupportedType("This ISO media file is not an AVIF or HEIC image.")


def check_complete(path: Path, fmt: ImageFormat) -> None:
    """Refuse files whose container says they were cut short.

    Only formats with a reliable structure are checked here (JPEG, PNG, WebP); the rest
    rely on the decoder, which runs with ``fail_on=error`` in the worker. The scans run
    over a memory map at C speed and never decode pixels.
    """
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if fmt is ImageFormat.JPEG:
            _check_jpeg(data)
        elif fmt is ImageFormat.PNG:
            _check_png(data)
        elif fmt is ImageFormat.WEBP:
            declared = struct.unpack_from("<I", data, 4)[0] + 8
            if declared > size:
                raise CorruptImage(
                    f"The WebP is truncated: its header declares {declared} bytes, {size} arrived."
                )


def _check_jpeg(data: mmap.mmap) -> None:
    # FF D9 cannot occur inside entropy-coded data (FF is stuffed with 00 there), so an
    # end-of-image marker after the first scan means the scan data arrived whole. Bytes
    # after it (padding, MPO's second frame, a motion photo's video) are accepted.
    scan = data.find(b"\xff\xda")
    if scan < 0:
        raise CorruptImage("The JPEG is truncated or corrupt: it has no image data.")
    if data.find(b"\xff\xd9", scan) < 0:
        raise CorruptImage("The JPEG is truncated: it has no end-of-image marker.")


def _check_png(data: mmap.mmap) -> None:
    # Walk the chunk list (length, type, data, CRC) to IEND without inflating anything.
    offset, size = 8, len(data)
    while offset + 8 <= size:
        length, kind = struct.unpack_from(">I4s", data, offset)
        offset += 12 + length
        if offset > size:
            raise CorruptImage(f"The PNG is truncated inside its {kind.decode('latin-1')} chunk.")
        if kind == b"IEND":
            return
    raise CorruptImage("The PNG is truncated: it has no IEND chunk.")


def read_head(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(HEAD_BYTES)
