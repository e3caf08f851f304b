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

    JPEG (end marker after the scan, and enough scan data for the frame it declares),
    PNG (chunks up to IEND), WebP (RIFF length), HEIC and AVIF (top-level boxes inside
    the file), TIFF (the first image's strips or tiles inside the file) and GIF (blocks
    up to the trailer). Any cut these walks cannot see is left to the decoder, which
    fails on truncated data (docs/reliability.md, "No silent grey"). The scans run over a
    memory map and never decode pixels.
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
        elif fmt in (ImageFormat.HEIC, ImageFormat.AVIF):
            _check_boxes(data, fmt)
        elif fmt is ImageFormat.TIFF:
            _check_tiff(data)
        elif fmt is ImageFormat.GIF:
            _check_gif(data)


def _check_jpeg(data: mmap.mmap) -> None:
    # FF D9 cannot occur inside entropy-coded data (FF is stuffed with 00 there), so an
    # end-of-image marker after the first scan means the scan data arrived whole. Bytes
    # after it (padding, MPO's second frame, a motion photo's video) are accepted.
    scan = data.find(b"\xff\xda")
    if scan < 0:
        raise CorruptImage("The JPEG is truncated or corrupt: it has no image data.")
    end = data.find(b"\xff\xd9", scan)
    if end < 0:
        raise CorruptImage("The JPEG is truncated: it has no end-of-image marker.")
    frame = _jpeg_frame(data, scan)
    if frame is not None:
        blocks, kind = frame
        # Huffman coding spends at least one bit on every block's DC coefficient, so the
        # entropy-coded data cannot be shorter than blocks / 8 bytes. A frame header that
        # declares far more pixels than its data (a cut scan with an end marker appended,
        # or a forged size) would otherwise decode as flat grey.
        if (end - scan) * 8 < blocks:
            raise CorruptImage(
                f"The JPEG is truncated: its {kind} frame needs at least {blocks // 8} bytes "
                f"of image data, it has {end - scan}."
            )


# Start-of-frame markers of Huffman-coded JPEGs (baseline, extended, progressive,
# lossless); arithmetic coding can spend less than a bit on a block, so it is not checked.
_HUFFMAN_FRAMES = {0xC0: "baseline", 0xC1: "extended", 0xC2: "progressive"}


def _jpeg_frame(data: mmap.mmap, scan: int) -> tuple[int, str] | None:
    """(8x8 blocks over all components, frame kind) from the SOF segment before ``scan``."""
    offset = 2
    while offset + 4 <= scan:
        if data[offset] != 0xFF:
            return None
        marker = data[offset + 1]
        if marker == 0xFF:  # fill byte
            offset += 1
            continue
        (length,) = struct.unpack_from(">H", data, offset + 2)
        if marker in _HUFFMAN_FRAMES and offset + 10 <= scan:
            height, width, count = struct.unpack_from(">HHB", data, offset + 5)
            comps = [
                (data[offset + 11 + 3 * i] >> 4, data[offset + 11 + 3 * i] & 0x0F)
                for i in range(count)
                if offset + 12 + 3 * i <= scan
            ]
            if not comps or not width or not height:
                return None
            hmax = max(h for h, _ in comps) or 1
            vmax = max(v for _, v in comps) or 1
            blocks = sum(
                -(-width * h // (8 * hmax)) * -(-height * v // (8 * vmax)) for h, v in comps
            )
            return blocks, _HUFFMAN_FRAMES[marker]
        if 0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return None  # lossless or arithmetic-coded: no bound we can rely on
        offset += 2 + length
    return None


def _check_boxes(data: mmap.mmap, fmt: ImageFormat) -> None:
    # HEIF files are a list of boxes (size, type): a cut anywhere leaves the last box
    # shorter than it says. libheif decodes what is there of a cut `mdat` and pads the
    # rest (mostly flat green for HEVC), so this is the only reliable sign.
    offset, size = 0, len(data)
    while offset + 8 <= size:
        length, kind = struct.unpack_from(">I4s", data, offset)
        if length == 1:
            if offset + 16 > size:
                break
            (length,) = struct.unpack_from(">Q", data, offset + 8)
        elif length == 0:  # the last box, to the end of the file
            return
        if length < 8:
            raise CorruptImage(f"The {fmt.value.upper()} has a box of impossible size.")
        if offset + length > size:
            raise CorruptImage(
                f"The {fmt.value.upper()} is truncated inside its {kind.decode('latin-1')!r} box."
            )
        offset += length
    if offset != size:
        raise CorruptImage(f"The {fmt.value.upper()} is truncated inside a box header.")


def _check_gif(data: mmap.mmap) -> None:
    # A GIF cut between two frames decodes cleanly as a shorter animation, so only the
    # block structure shows it: every block must be whole and the trailer (3B) reached.
    size = len(data)
    offset = 13
    if size >= 13 and data[10] & 0x80:  # global colour table
        offset += 3 << ((data[10] & 0x07) + 1)
    while offset < size:
        kind = data[offset]
        if kind == 0x3B:
            return
        if kind == 0x21:  # extension: label, then data sub-blocks
            offset += 2
        elif kind == 0x2C:  # image: descriptor, local colour table, LZW code size
            if offset + 10 > size:
                break
            flags = data[offset + 9]
            offset += 10 + ((3 << ((flags & 0x07) + 1)) if flags & 0x80 else 0) + 1
        else:
            raise CorruptImage(f"The GIF is corrupt: unknown block 0x{kind:02x}.")
        while offset < size and data[offset]:  # sub-blocks until a zero length
            offset += data[offset] + 1
        offset += 1
    raise CorruptImage("The GIF is truncated: it ends before its trailer.")


_TIFF_DATA_TAGS = {273: 279, 324: 325}  # StripOffsets -> StripByteCounts, tile likewise
_TIFF_TYPE_SIZES = {1: 1, 3: 2, 4: 4, 16: 8}


def _check_tiff(data: mmap.mmap) -> None:
    """The first image's strips (or tiles) must lie inside the file."""
    size = len(data)
    endian = "<" if data[:2] == b"II" else ">"
    try:
        (ifd,) = struct.unpack_from(endian + "I", data, 4)
        (count,) = struct.unpack_from(endian + "H", data, ifd)
        tags: dict[int, list[int]] = {}
        for i in range(count):
            tag, kind, n = struct.unpack_from(endian + "HHI", data, ifd + 2 + 12 * i)
            if tag not in (273, 279, 324, 325) or kind not in (3, 4, 16):
                continue
            width = _TIFF_TYPE_SIZES[kind]
            where = ifd + 2 + 12 * i + 8
            if n * width > 4:
                (where,) = struct.unpack_from(endian + "I", data, where)
            if where + n * width > size:
                raise CorruptImage("The TIFF is truncated: a directory entry points past its end.")
            code = {3: "H", 4: "I", 16: "Q"}[kind]
            tags[tag] = list(struct.unpack_from(f"{endian}{n}{code}", data, where))
    except struct.error as exc:
        raise CorruptImage("The TIFF is truncated inside its first directory.") from exc
    for offsets_tag, counts_tag in _TIFF_DATA_TAGS.items():
        offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
        if offsets and counts and len(offsets) == len(counts):
            end = max(o + c for o, c in zip(offsets, counts, strict=True))
            if end > size:
                raise CorruptImage(
                    f"The TIFF is truncated: its image data runs to byte {end}, "
                    f"the file has {size}."
                )


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
