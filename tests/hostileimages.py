"""Small files that declare far more decode work than their bytes hold (issue 15, item 3):
shared by tests/unit/test_decode_cost.py and the upload tests."""

from __future__ import annotations

import struct
import zlib


def rle8_bmp(width: int, height: int, run: int) -> bytes:
    """An RLE8 BMP whose rows are runs of ``run`` pixels (2 bytes each), then end of line."""
    pairs = bytearray()
    for i in range(width // run):
        pairs += bytes((run, i % 256))
    if width % run:
        pairs += bytes((width % run, 0))
    row = bytes(pairs) + b"\x00\x00"
    data = row * height + b"\x00\x01"
    palette = b"".join(bytes((i, 255 - i, i // 2, 0)) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    head = b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset)
    return head + info + palette + data


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body)
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def png_header_only(width: int, height: int, bit_depth: int, colour: int, interlace: int) -> bytes:
    """A PNG whose IHDR declares the image and whose one IDAT holds a sliver of it."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, interlace)
    idat = zlib.compress(b"\x00" * 65536)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def tiff_with_directories(count: int) -> bytes:
    """A valid 1x1 grey TIFF whose first directory chains to ``count`` - 1 empty ones."""
    entries = [
        (256, 3, 1, 1),  # ImageWidth
        (257, 3, 1, 1),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: min-is-black
        (273, 4, 1, 8),  # StripOffsets: the pixel right after the header
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 3, 1, 1),  # RowsPerStrip
        (279, 4, 1, 1),  # StripByteCounts
    ]
    first = 12  # header (8) + one pixel, padded
    chain = first + 2 + 12 * len(entries) + 4
    body = struct.pack("<H", len(entries))
    for tag, kind, n, value in entries:
        packed = struct.pack("<H", value) + b"\0\0" if kind == 3 else struct.pack("<I", value)
        body += struct.pack("<HHI", tag, kind, n) + packed
    body += struct.pack("<I", chain if count > 1 else 0)
    empties = bytearray()
    for i in range(1, count):
        at = chain + 6 * (i - 1)
        empties += struct.pack("<HI", 0, at + 6 if i < count - 1 else 0)
    return b"II*\0" + struct.pack("<I", first) + b"\x80\0\0\0" + body + bytes(empties)
