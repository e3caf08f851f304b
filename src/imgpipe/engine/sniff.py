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

from imgpipe.domain import formats
from imgpipe.domain.errors import CorruptImage, UnsupportedType
from imgpipe.domain.formats import TiffFacts
from imgpipe.domain.media import ImageFormat
from imgpipe.engine.tiffdir import read_tiff_facts

HEAD_BYTES = formats.HEAD_BYTES


def sniff_file(path: Path) -> ImageFormat:
    """The file's format by content: magic numbers, and for a TIFF header its directories
    (a DNG, NEF or ARW is a TIFF underneath: engine/tiffdir.py)."""
    head = read_head(path)
    tiff = read_tiff_facts(path) if formats.is_tiff_structured(head) else None
    return sniff_format(head, tiff)


def sniff_format(head: bytes, tiff: TiffFacts | None = None) -> ImageFormat:
    """The format named by the magic numbers in ``head`` (and ``tiff``, the directories of
    a TIFF-structured file, when read); UnsupportedType otherwise. The registry
    (domain/formats.py) holds every format's test."""
    fmt = formats.identify(head, tiff)
    if fmt is ImageFormat.TIFF and tiff is not None and tiff.sensor_data:
        # Sensor data in a TIFF from a camera the registry does not list: read as a TIFF it
        # would give the embedded preview, which is never the image.
        raise UnsupportedType(
            f"The file is a camera RAW{f' from {tiff.make}' if tiff.make else ''} of a kind "
            f"imgpipe does not read; it accepts {formats.accepted_formats(conjunction='or')}."
        )
    if fmt is not None:
        return fmt
    if not head:
        raise UnsupportedType("The file is empty.")
    if formats.is_iso_media(head):
        brand = head[8:12].decode("latin-1").strip()
        raise UnsupportedType(
            f"This ISO media file (brand {brand!r}) is not an image imgpipe accepts: "
            f"{formats.accepted_formats(conjunction='or')}."
        )
    raise UnsupportedType(
        f"The file is not an image imgpipe accepts: {formats.accepted_formats(conjunction='or')}."
    )


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
