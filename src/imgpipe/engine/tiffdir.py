"""Read the few TIFF tags that tell a camera RAW from a plain TIFF, without decoding.

DNG, NEF and ARW are TIFF files: the header alone says "TIFF". What differs is in the
image file directories: a DNG's IFD0 carries DNGVersion (0xC612), and a camera RAW keeps
its sensor data in a directory whose PhotometricInterpretation is CFA (32803) or
LinearRaw (34892), usually a SubIFD behind a small RGB preview in IFD0. Read as a plain
TIFF, such a file gives its preview (a few hundred pixels) or nothing at all, so the
sniffer must look at the directories. The walk is bounded (directories, entries per
directory, bytes per string), so a hostile file cannot make it loop or read much.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path

from imgpipe.domain.formats import TiffFacts

_MAKE = 0x010F
_PHOTOMETRIC = 0x0106
_SUB_IFDS = 0x014A
_EXIF_IFD = 0x8769
_DNG_VERSION = 0xC612
_SENSOR_PHOTOMETRIC = (32803, 34892)  # CFA, LinearRaw
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}

_MAX_DIRECTORIES = 16
_MAX_ENTRIES = 512


def read_tiff_facts(path: Path) -> TiffFacts:
    """IFD0's Make and DNGVersion, and whether any directory holds sensor data.

    The file is memory-mapped: directories may sit anywhere (libtiff writes IFD0 after the
    pixels), and only the pages the walk touches are read."""
    with path.open("rb") as fh:
        if os.fstat(fh.fileno()).st_size < 8:
            return TiffFacts()
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return tiff_facts(data)


def tiff_facts(data: bytes | mmap.mmap) -> TiffFacts:
    if data[:2] == b"II":
        order = "<"
    elif data[:2] == b"MM":
        order = ">"
    else:
        return TiffFacts()
    try:
        (ifd0,) = struct.unpack_from(order + "I", data, 4)
    except struct.error:
        return TiffFacts()
    make = ""
    dng = False
    sensor = False
    pending = [(ifd0, True)]
    seen: set[int] = set()
    while pending and len(seen) < _MAX_DIRECTORIES:
        offset, is_ifd0_chain = pending.pop(0)
        if offset in seen or not 8 <= offset < len(data):
            continue
        seen.add(offset)
        entries = _entries(data, order, offset)
        if entries is None:
            continue
        tags, next_ifd = entries
        if _PHOTOMETRIC in tags and tags[_PHOTOMETRIC][0] in _SENSOR_PHOTOMETRIC:
            sensor = True
        if offset == ifd0:
            dng = _DNG_VERSION in tags
            make = _ascii(data, order, tags.get(_MAKE))
        pending += [(sub, False) for sub in tags.get(_SUB_IFDS, ())]
        if is_ifd0_chain and next_ifd:
            pending.append((next_ifd, True))
    return TiffFacts(make=make, dng_version=dng, sensor_data=sensor)


# A tag's values as integers (offsets for SubIFDs, a code for Photometric); for ASCII, the
# pair (offset or -1 when inline, count) so ``_ascii`` can read the string.
_Tags = dict[int, tuple[int, ...]]


def _entries(data: bytes | mmap.mmap, order: str, offset: int) -> tuple[_Tags, int] | None:
    try:
        (count,) = struct.unpack_from(order + "H", data, offset)
        if count > _MAX_ENTRIES:
            return None
        tags: _Tags = {}
        for i in range(count):
            entry = offset + 2 + 12 * i
            tag, kind, n = struct.unpack_from(order + "HHI", data, entry)
            size = _TYPE_SIZES.get(kind, 0) * n
            value_at = entry + 8
            if size > 4:
                (value_at,) = struct.unpack_from(order + "I", data, value_at)
            if tag == _MAKE and kind == 2:
                tags[tag] = (value_at, n)
            elif tag in (_PHOTOMETRIC, _SUB_IFDS) and kind in (3, 4, 13) and n <= 16:
                fmt = "H" if kind == 3 else "I"
                tags[tag] = struct.unpack_from(f"{order}{n}{fmt}", data, value_at)
            elif tag in (_DNG_VERSION, _EXIF_IFD):
                tags[tag] = (n,)
        (next_ifd,) = struct.unpack_from(order + "I", data, offset + 2 + 12 * count)
    except struct.error:
        return None
    return tags, next_ifd


def _ascii(data: bytes | mmap.mmap, order: str, value: tuple[int, ...] | None) -> str:
    if value is None:
        return ""
    start, length = value
    raw = data[start : start + min(length, 64)]
    return raw.split(b"\0", 1)[0].decode("latin-1").strip()


def count_directories(path: Path, cap: int) -> int:
    """How many image directories the IFD0 chain holds, counting no further than ``cap`` + 1.

    libtiff walks the whole chain when libvips opens a TIFF (to know its page count), and
    checks each new directory against every one seen before: 200,000 directories in a
    few megabytes cost 10 s and more on every open. Counted here first, bounded, so such
    a file is refused before libvips sees it (engine/probe.py)."""
    with path.open("rb") as fh:
        if os.fstat(fh.fileno()).st_size < 8:
            return 0
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _count(data, cap)


def _count(data: bytes | mmap.mmap, cap: int) -> int:
    order = {b"II": "<", b"MM": ">"}.get(bytes(data[:2]))
    if order is None or data[2:4] not in (b"*\0", b"\0*"):
        return 0  # BigTIFF and anything else: libtiff's own checks apply
    seen: set[int] = set()
    (offset,) = struct.unpack_from(order + "I", data, 4)
    try:
        while 8 <= offset < len(data) and offset not in seen and len(seen) <= cap:
            seen.add(offset)
            (count,) = struct.unpack_from(order + "H", data, offset)
            (offset,) = struct.unpack_from(order + "I", data, offset + 2 + 12 * count)
    except struct.error:
        pass  # a chain that runs off the end stops there, as libtiff's does
    return len(seen)
