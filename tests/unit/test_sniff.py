"""Type by content and completeness by structure, without decoding pixels."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from imgpipe.domain.errors import CorruptImage, UnsupportedType
from imgpipe.domain.media import ImageFormat
from imgpipe.engine.sniff import check_complete, sniff_format


def _encode(tmp_path: Path, fmt: str, name: str, **options: object) -> Path:
    path = tmp_path / name
    Image.new("RGB", (64, 48), (10, 200, 30)).save(path, format=fmt, **options)
    return path


@pytest.mark.parametrize(
    ("pil_format", "expected"),
    [
        ("JPEG", ImageFormat.JPEG),
        ("PNG", ImageFormat.PNG),
        ("WEBP", ImageFormat.WEBP),
        ("GIF", ImageFormat.GIF),
        ("TIFF", ImageFormat.TIFF),
        ("BMP", ImageFormat.BMP),
        ("AVIF", ImageFormat.AVIF),
    ],
)
def test_magic_numbers_decide_the_format_whatever_the_name(
    tmp_path: Path, pil_format: str, expected: ImageFormat
) -> None:
    path = _encode(tmp_path, pil_format, "misleading-name.svg")
    assert sniff_format(path.read_bytes()[:64]) is expected


def test_heic_is_told_apart_from_avif(tmp_path: Path) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    path = _encode(tmp_path, "HEIF", "photo.avif")
    assert sniff_format(path.read_bytes()[:64]) is ImageFormat.HEIC


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"hello, this is text named .jpg\n",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>',
        b"%PDF-1.7\n",
        b"PK\x03\x04" + b"\0" * 40,
        b"\x7fELF\x02\x01\x01" + b"\0" * 40,
    ],
)
def test_anything_else_is_unsupported(content: bytes) -> None:
    with pytest.raises(UnsupportedType):
        sniff_format(content[:64])


@pytest.mark.parametrize(
    ("pil_format", "fmt"),
    [("JPEG", ImageFormat.JPEG), ("PNG", ImageFormat.PNG), ("WEBP", ImageFormat.WEBP)],
)
def test_a_cut_file_is_corrupt(tmp_path: Path, pil_format: str, fmt: ImageFormat) -> None:
    path = tmp_path / "photo"
    Image.effect_noise((256, 256), 64).convert("RGB").save(path, format=pil_format)
    check_complete(path, fmt)  # whole: accepted
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    with pytest.raises(CorruptImage):
        check_complete(path, fmt)


def test_bytes_after_a_jpeg_end_marker_are_accepted(tmp_path: Path) -> None:
    # Motion photos append a video after the JPEG; that is a whole JPEG, not a broken one.
    path = _encode(tmp_path, "JPEG", "motion.jpg")
    path.write_bytes(path.read_bytes() + b"\x00\x00\x00\x18ftypmp42" + b"\x01" * 200_000)
    check_complete(path, ImageFormat.JPEG)


def test_a_png_chunk_claiming_more_bytes_than_the_file_has_is_corrupt(tmp_path: Path) -> None:
    path = _encode(tmp_path, "PNG", "x.png")
    data = bytearray(path.read_bytes())
    idat = data.index(b"IDAT")
    data[idat - 4 : idat] = (1 << 30).to_bytes(4, "big")
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptImage):
        check_complete(path, ImageFormat.PNG)
