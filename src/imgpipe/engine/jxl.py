"""JPEG XL in, through the `jxl` extra (imagecodecs' libjxl), checked from the header first.

libvips here has no JXL loader, and imagecodecs offers no header-only read, so the size
is parsed by hand (ISO/IEC 18181-1): the codestream starts FF 0A, a SizeHeader, then the
ImageMetadata, read bit by bit (least significant bit first) as far as its orientation,
animation flag and first extra channel (alpha or not). A file in the ISO-BMFF container
(signature box `JXL `) keeps the codestream in one `jxlc` box or split over `jxlp` boxes;
the header is read from the first bytes of that codestream. The parse reads at most
``_HEAD_LIMIT`` bytes of codestream, so a hostile header cannot make it read far or loop.

libjxl applies the orientation when it decodes, so the probe reports the upright size.
Of an animation, only the first frame is decoded and used (as for multi-page TIFF).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgpipe.domain.errors import CorruptImage, EngineFailure, UnsupportedType
from imgpipe.domain.formats import JXL_CODESTREAM, JXL_CONTAINER
from imgpipe.domain.media import ImageFormat, ProbeResult

_HEAD_LIMIT = 4096
_MAX_BOXES = 64
# SizeHeader's ratio codes (xsize = ysize * a / b); 0 means xsize is coded.
_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}

MISSING_EXTRA = (
    "JPEG XL needs the optional decoder: install imgpipe with the `jxl` extra "
    "(pip install 'imgpipe[jxl]'), or upload another format."
)


@dataclass(frozen=True, slots=True)
class JxlHeader:
    width: int  # as stored, before orientation
    height: int
    orientation: int = 1  # EXIF-style, 1-8
    animated: bool = False
    alpha: bool = False  # the first extra channel is alpha

    @property
    def upright(self) -> tuple[int, int]:
        return (self.height, self.width) if self.orientation > 4 else (self.width, self.height)


class _Bits:
    """A JPEG XL bit reader: fields are packed from the least significant bit up."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def u(self, count: int) -> int:
        value = 0
        for i in range(count):
            byte = self._pos >> 3
            if byte >= len(self._data):
                raise CorruptImage("The JPEG XL header is truncated.")
            value |= ((self._data[byte] >> (self._pos & 7)) & 1) << i
            self._pos += 1
        return value

    def flag(self) -> bool:
        return self.u(1) == 1

    def u32(self, *dists: tuple[int, int]) -> int:
        """U32(...): a 2-bit selector, then (bits, offset) of the chosen distribution."""
        bits, offset = dists[self.u(2)]
        return self.u(bits) + offset


_SIZE_U32 = ((9, 1), (13, 1), (18, 1), (30, 1))
_PREVIEW_DIV8 = ((0, 16), (0, 32), (5, 1), (9, 33))
_PREVIEW_U32 = ((6, 1), (8, 65), (10, 321), (12, 1345))
# Val(n) is (0 bits, offset n); Bits(n) is (n, 0); BitsOffset(n, o) is (n, o).
_TPS_NUMERATOR = ((0, 100), (0, 1000), (10, 1), (30, 1))
_TPS_DENOMINATOR = ((0, 1), (0, 1001), (8, 1), (10, 1))
_NUM_LOOPS = ((0, 0), (3, 0), (16, 0), (32, 0))
_INT_BITS = ((0, 8), (0, 10), (0, 12), (6, 1))
_FLOAT_BITS = ((0, 32), (0, 16), (0, 24), (6, 1))
_NUM_EXTRA = ((0, 0), (0, 1), (4, 2), (12, 1))
_EXTRA_TYPE = ((0, 0), (0, 1), (4, 2), (6, 18))


def parse_codestream_header(code: bytes) -> JxlHeader:
    """SizeHeader and the start of ImageMetadata from the first bytes of a codestream."""
    if not code.startswith(JXL_CODESTREAM):
        raise CorruptImage("The JPEG XL codestream does not start with its signature.")
    bits = _Bits(code[2:])
    width, height = _size(bits, div8_dists=None)
    orientation, animated = 1, False
    alpha = False
    if not bits.flag():  # ImageMetadata.all_default
        if bits.flag():  # extra_fields
            orientation = 1 + bits.u(3)
            if bits.flag():  # have_intr_size: a SizeHeader, skipped
                _size(bits, div8_dists=None)
            if bits.flag():  # have_preview: a PreviewHeader, skipped
                _size(bits, div8_dists=_PREVIEW_DIV8)
            animated = bits.flag()
            if animated:  # AnimationHeader: ticks per second, loops, timecodes; skipped
                bits.u32(*_TPS_NUMERATOR)
                bits.u32(*_TPS_DENOMINATOR)
                bits.u32(*_NUM_LOOPS)
                bits.flag()
        # BitDepth, then modular_16bit_buffers, then the extra channels.
        if bits.flag():  # float samples
            bits.u32(*_FLOAT_BITS)
            bits.u(4)
        else:
            bits.u32(*_INT_BITS)
        bits.flag()
        for _ in range(bits.u32(*_NUM_EXTRA)):
            # ExtraChannelInfo: d_alpha (an alpha channel with every default), else its
            # type, where 0 is alpha. The rest of the entry is not needed.
            if bits.flag() or bits.u32(*_EXTRA_TYPE) == 0:
                alpha = True
            break
    return JxlHeader(width, height, orientation, animated, alpha)


def _size(bits: _Bits, div8_dists: tuple[tuple[int, int], ...] | None) -> tuple[int, int]:
    """A SizeHeader (``div8_dists`` None) or a PreviewHeader: (xsize, ysize)."""
    if div8_dists is None:
        small = bits.flag()
        height = (bits.u(5) + 1) * 8 if small else bits.u32(*_SIZE_U32)
    else:
        small = bits.flag()  # div8
        height = bits.u32(*div8_dists) * 8 if small else bits.u32(*_PREVIEW_U32)
    ratio = bits.u(3)
    if ratio:
        num, den = _RATIOS[ratio]
        width = height * num // den
    elif div8_dists is None:
        width = (bits.u(5) + 1) * 8 if small else bits.u32(*_SIZE_U32)
    else:
        width = bits.u32(*div8_dists) * 8 if small else bits.u32(*_PREVIEW_U32)
    return width, height


def codestream_head(data: bytes) -> bytes:
    """The first bytes of the codestream, from a bare codestream or the container."""
    if data.startswith(JXL_CODESTREAM):
        return data[:_HEAD_LIMIT]
    if not data.startswith(JXL_CONTAINER):
        raise CorruptImage("The file is not a JPEG XL codestream or container.")
    head = bytearray()
    offset = 0
    for _ in range(_MAX_BOXES):
        if offset + 8 > len(data) or len(head) >= _HEAD_LIMIT:
            break
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:
            if offset + 16 > len(data):
                break
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:  # the last box runs to the end of the file
            size = len(data) - offset
        if size < header:
            raise CorruptImage("The JPEG XL container has a box shorter than its header.")
        body = data[offset + header : offset + size]
        if kind == b"jxlc":
            return bytes(body[:_HEAD_LIMIT])
        if kind == b"jxlp":
            head += body[4:]  # after the partial box's 4-byte index
        offset += size
    if not head:
        raise CorruptImage("The JPEG XL container holds no codestream.")
    return bytes(head[:_HEAD_LIMIT])


# The container's header boxes are small; a codestream box within this many bytes of
# the start is normal (signature, ftyp, level, Exif or XMP come first).
_READ_BYTES = 1 << 20


def read_header(path: Path) -> JxlHeader:
    with path.open("rb") as fh:
        data = fh.read(_READ_BYTES)
    return parse_codestream_header(codestream_head(data))


def available() -> bool:
    try:
        import imagecodecs
    except ImportError:
        return False
    return bool(imagecodecs.JPEGXL.available)


def probe_jxl(path: Path) -> ProbeResult:
    """The upright size from the header; 415 naming the extra when it is not installed."""
    if not available():
        raise UnsupportedType(MISSING_EXTRA)
    header = read_header(path)
    width, height = header.upright
    if width < 1 or height < 1:
        raise CorruptImage("The JPEG XL declares no pixels.")
    return ProbeResult(ImageFormat.JXL, width, height, has_alpha=header.alpha)


def decode_jxl(path: Path) -> Any:
    """The first frame, oriented, as an 8-bit libvips image (alpha kept)."""
    import imagecodecs
    import numpy as np

    from imgpipe.engine.raw import array_to_vips

    if not available():
        raise UnsupportedType(MISSING_EXTRA)
    try:
        array = imagecodecs.jpegxl_decode(path.read_bytes(), index=0, keeporientation=False)
    except imagecodecs.JpegxlError as exc:
        raise CorruptImage("The JPEG XL data could not be decoded.") from exc
    if array.dtype != np.uint8:
        # 16-bit and float samples come as their nominal range; 8 bits is what variants use.
        scale = 255.0 if array.dtype.kind == "f" else 255.0 / np.iinfo(array.dtype).max
        array = np.clip(np.rint(array * scale), 0, 255).astype(np.uint8)
    return array_to_vips(array)


# libjxl effort (1-9) for a client that waits, and for variants: effort 3 encodes an
# 800x600 photo in about 0.1 s, 15% smaller than WebP at the same quality number; the
# default (7) takes four times as long for 10% fewer bytes.
FAST_EFFORT = 3
EFFORT = 7


def encode_jxl(image: Any, quality: int, *, fast: bool) -> bytes:
    """An 8-bit sRGB libvips image (alpha kept) as a bare JPEG XL codestream, no metadata."""
    import numpy as np

    if not available():
        raise EngineFailure("JPEG XL output needs the `jxl` extra (pip install 'imgpipe[jxl]').")
    import imagecodecs

    array = np.ndarray(
        buffer=image.write_to_memory(),
        dtype=np.uint8,
        shape=(image.height, image.width, image.bands),
    )
    data = imagecodecs.jpegxl_encode(array, level=quality, effort=FAST_EFFORT if fast else EFFORT)
    return bytes(data)
