"""The format registry, and sniffing generated from it: camera RAW told from TIFF by content."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgpipe.domain import formats
from imgpipe.domain.errors import UnsupportedType
from imgpipe.domain.formats import FORMATS, OUTPUT_FORMATS, ImageFormat, Loader
from imgpipe.domain.media import Limits
from imgpipe.engine import loaders
from imgpipe.engine.probe import probe
from imgpipe.engine.sniff import sniff_file, sniff_format
from rawimages import bayer, dng, plain_tiff, scene

LIMITS = Limits(max_upload_bytes=50 << 20, max_pixels=268_435_456, max_frames=500)


def test_every_format_has_one_entry_and_the_old_names_derive_from_it() -> None:
    assert set(FORMATS) == set(ImageFormat)
    assert ImageFormat.JPEG.media_type == "image/jpeg" and ImageFormat.JPEG.extension == "jpg"
    assert ImageFormat.DNG.extension == "dng" and ImageFormat.JXL.media_type == "image/jxl"
    assert {
        ImageFormat.WEBP,
        ImageFormat.AVIF,
        ImageFormat.JPEG,
        ImageFormat.PNG,
        ImageFormat.JXL,  # written through the jxl extra (engine/jxl.py)
    } == OUTPUT_FORMATS
    # Every libvips-decoded format names its loader, and only those are handed to libvips.
    vips = {f for f, spec in FORMATS.items() if spec.loader is Loader.VIPS}
    assert vips == set(loaders.VIPS_DECODED)
    assert all(FORMATS[f].vips_loader for f in vips)


def test_the_accepted_list_names_every_format_once() -> None:
    text = formats.accepted_formats()
    for spec in FORMATS.values():
        assert text.count(spec.name) >= 1, spec.name
    assert "imgpipe[jxl]" in text
    assert text.startswith("JPEG, PNG, WebP, GIF, TIFF, AVIF, HEIC, BMP")


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"FUJIFILMCCD-RAW 0201FF383501", ImageFormat.RAF),
        (b"IIRO\x08\x00\x00\x00" + b"\0" * 16, ImageFormat.ORF),
        (b"IIRS\x08\x00\x00\x00" + b"\0" * 16, ImageFormat.ORF),
        (b"IIU\x00\x18\x00\x00\x00" + b"\0" * 16, ImageFormat.RW2),
        (b"II*\x00\x10\x00\x00\x00CR\x02\x00" + b"\0" * 16, ImageFormat.CR2),
        (b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom", ImageFormat.CR3),
        (b"\xff\x0a\xfa\x7f", ImageFormat.JXL),
        (b"\x00\x00\x00\x0cJXL \r\n\x87\n\x00\x00\x00\x14ftypjxl ", ImageFormat.JXL),
        (b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf", ImageFormat.AVIF),
    ],
)
def test_magic_numbers_of_the_new_formats(head: bytes, expected: ImageFormat) -> None:
    assert sniff_format(head) is expected


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_a_dng_is_not_a_tiff_whichever_directory_holds_the_sensor(tmp_path: Path) -> None:
    cfa = bayer(scene(64, 48))
    bare = _write(tmp_path, "bare.tif", dng(cfa))
    previewed = _write(tmp_path, "p.tif", dng(cfa, preview=np.zeros((12, 16, 3), np.uint8)))
    assert sniff_file(bare) is ImageFormat.DNG
    assert sniff_file(previewed) is ImageFormat.DNG
    # The same bytes seen by their first 64 alone look like a TIFF: the directories decide.
    assert sniff_format(bare.read_bytes()[:64]) is ImageFormat.TIFF


def test_a_plain_tiff_stays_a_tiff_even_from_a_camera_maker(tmp_path: Path) -> None:
    scan = _write(tmp_path, "scan.tif", plain_tiff(np.zeros((20, 30, 3), np.uint8), "NIKON"))
    assert sniff_file(scan) is ImageFormat.TIFF
    assert probe(scan, LIMITS).format is ImageFormat.TIFF


def test_nef_and_arw_are_told_by_their_sensor_data_and_maker(tmp_path: Path) -> None:
    # A DNG-less TIFF/EP layout: preview in IFD0, CFA mosaic in a SubIFD, as NEF and ARW do.
    import io

    import tifffile

    def tiff_ep(make: str) -> bytes:
        out = io.BytesIO()
        with tifffile.TiffWriter(out) as tif:
            tif.write(
                np.zeros((12, 16, 3), np.uint8),
                photometric="rgb",
                subifds=1,
                extratags=[(271, "s", 0, make, True)],
            )
            tif.write(np.zeros((48, 64), np.uint16), photometric=32803)
        return out.getvalue()

    assert sniff_file(_write(tmp_path, "a", tiff_ep("NIKON CORPORATION"))) is ImageFormat.NEF
    assert sniff_file(_write(tmp_path, "b", tiff_ep("SONY"))) is ImageFormat.ARW
    # Sensor data from a camera the registry does not list is refused, not read as a TIFF
    # (which would give its preview).
    with pytest.raises(UnsupportedType, match="camera RAW from PENTAX"):
        sniff_file(_write(tmp_path, "c", tiff_ep("PENTAX")))


def test_a_dng_probe_reads_the_sensor_size_upright_without_demosaicing(tmp_path: Path) -> None:
    path = _write(tmp_path, "x.dng", dng(bayer(scene(64, 48)), orientation=6))
    facts = probe(path, LIMITS)
    assert facts.format is ImageFormat.DNG
    # LibRaw applies the flip itself: the probe gives the upright size, orientation 1.
    assert (facts.width, facts.height, facts.orientation) == (48, 64, 1)


def test_a_dng_over_the_pixel_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    from imgpipe.domain.errors import TooManyPixels

    path = _write(tmp_path, "x.dng", dng(bayer(scene(64, 48))))
    with pytest.raises(TooManyPixels):
        probe(path, Limits(max_upload_bytes=1 << 30, max_pixels=64 * 48 - 1, max_frames=1))


def test_a_truncated_dng_is_corrupt_not_a_crash(tmp_path: Path) -> None:
    from imgpipe.domain.errors import CorruptImage
    from imgpipe.engine.steps.decode import decode

    data = dng(bayer(scene(64, 48)))
    path = _write(tmp_path, "cut.dng", data[: len(data) // 2])
    with pytest.raises(CorruptImage):
        facts = probe(path, LIMITS)
        decode(path, facts, (facts.width, facts.height), all_frames=False)


@pytest.mark.parametrize(
    "data",
    [
        b"FUJIFILMCCD-RAW 0201" + b"\xa5" * 200,
        b"IIRO\x08\x00\x00\x00" + b"\x00" * 200,
        b"IIU\x00\x18\x00\x00\x00" + b"\xff" * 200,
        b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01crx isom" + b"\x00" * 200,
    ],
)
def test_garbage_behind_a_raw_magic_number_is_corrupt(tmp_path: Path, data: bytes) -> None:
    from imgpipe.domain.errors import CorruptImage

    with pytest.raises(CorruptImage):
        probe(_write(tmp_path, "x", data), LIMITS)


def test_a_dng_whose_directories_follow_its_pixels_is_still_a_dng(tmp_path: Path) -> None:
    # libtiff and others write IFD0 after the image data: the sniffer follows the offset.
    import struct

    data = bytearray(dng(bayer(scene(1600, 1400))))  # > 4 MB of sensor data
    (ifd0,) = struct.unpack_from("<I", data, 4)
    assert ifd0 == 8  # tifffile writes it first: move it behind the pixels
    moved = len(data)
    count = struct.unpack_from("<H", data, ifd0)[0]
    size = 2 + 12 * count + 4
    data += data[ifd0 : ifd0 + size]
    struct.pack_into("<I", data, 4, moved)
    path = _write(tmp_path, "late.dng", bytes(data))
    assert sniff_file(path) is ImageFormat.DNG
