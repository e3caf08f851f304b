"""JPEG XL: the hand-written header parser on hand-built headers, and the extra's decode."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from imgpipe.domain.errors import CorruptImage, TooManyPixels, UnsupportedType
from imgpipe.domain.media import ImageFormat, Limits
from imgpipe.engine.jxl import JxlHeader, codestream_head, parse_codestream_header
from imgpipe.engine.probe import probe
from imgpipe.engine.steps.decode import decode
from rawimages import jxl

LIMITS = Limits(max_upload_bytes=50 << 20, max_pixels=268_435_456, max_frames=500)


class BitWriter:
    """Fields packed least significant bit first, as JPEG XL reads them."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, value: int, count: int) -> BitWriter:
        assert 0 <= value < 1 << count
        self.bits += [(value >> i) & 1 for i in range(count)]
        return self

    def u32(self, value: int, dists: list[tuple[int, int]]) -> BitWriter:
        for selector, (bits, offset) in enumerate(dists):
            if 0 <= value - offset < 1 << bits:
                return self.u(selector, 2).u(value - offset, bits)
        raise AssertionError(f"{value} does not fit")

    def bytes(self) -> bytes:
        padded = self.bits + [0] * (-len(self.bits) % 8)
        return bytes(
            sum(bit << i for i, bit in enumerate(padded[n : n + 8]))
            for n in range(0, len(padded), 8)
        )


SIZE = [(9, 1), (13, 1), (18, 1), (30, 1)]


def size_header(w: BitWriter, width: int, height: int, ratio: int = 0) -> BitWriter:
    small = width % 8 == 0 and height % 8 == 0 and width <= 256 and height <= 256
    w.u(int(small), 1)
    if small:
        w.u(height // 8 - 1, 5)
    else:
        w.u32(height, SIZE)
    w.u(ratio, 3)
    if ratio == 0:
        if small:
            w.u(width // 8 - 1, 5)
        else:
            w.u32(width, SIZE)
    return w


def codestream(
    width: int,
    height: int,
    *,
    ratio: int = 0,
    orientation: int | None = None,
    preview: bool = False,
    animated: bool = False,
    alpha: bool | None = None,  # None: no extra channel; else alpha or a depth channel
    float_samples: bool = False,
) -> bytes:
    w = size_header(BitWriter(), width, height, ratio)
    extra_fields = orientation is not None or preview or animated
    if not extra_fields and alpha is None and not float_samples:
        return b"\xff\x0a" + w.u(1, 1).bytes() + b"\0" * 8  # all_default
    w.u(0, 1).u(int(extra_fields), 1)  # not all_default; extra_fields
    if extra_fields:
        w.u((orientation or 1) - 1, 3)
        w.u(0, 1)  # no intrinsic size
        w.u(int(preview), 1)
        if preview:  # a PreviewHeader: div8, ysize_div8 = 16, ratio 0, xsize_div8 = 32
            w.u(1, 1).u(0, 2).u(0, 3).u(1, 2)
        w.u(int(animated), 1)
        if animated:  # AnimationHeader: 1000 ticks/s, 1/1, loops Bits(3) = 5, no timecodes
            w.u(1, 2).u(0, 2).u(1, 2).u(5, 3).u(0, 1)
    if float_samples:  # float, bits_per_sample Val(16), exp_bits - 1 = 4
        w.u(1, 1).u(1, 2).u(4, 4)
    else:  # integer, bits_per_sample BitsOffset(6, 1) = 16
        w.u(0, 1).u(3, 2).u(15, 6)
    w.u(1, 1)  # modular_16bit_buffers
    if alpha is None:
        w.u(0, 2)  # no extra channels
    else:
        w.u(1, 2)  # one extra channel
        if alpha:
            w.u(1, 1)  # d_alpha
        else:
            w.u(0, 1).u(1, 2)  # not default; type Val(1) = depth
    return b"\xff\x0a" + w.bytes() + b"\0" * 8


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (codestream(64, 48), JxlHeader(64, 48)),  # small: sizes in multiples of 8
        (codestream(1000, 700), JxlHeader(1000, 700)),  # 13-bit sizes
        (codestream(300_000, 1), JxlHeader(300_000, 1)),  # 30-bit width
        (codestream(0, 1080, ratio=5), JxlHeader(1920, 1080)),  # ratio 16:9
        (codestream(0, 1001, ratio=3), JxlHeader(1334, 1001)),  # 4:3, rounded down
        (codestream(640, 480, orientation=6), JxlHeader(640, 480, 6)),
        (codestream(640, 481, preview=True, animated=True), JxlHeader(640, 481, 1, True)),
        (codestream(64, 48, alpha=True), JxlHeader(64, 48, alpha=True)),
        (codestream(64, 48, alpha=False), JxlHeader(64, 48)),  # a depth channel is not alpha
        (codestream(99, 7, float_samples=True, alpha=True), JxlHeader(99, 7, alpha=True)),
        (
            codestream(640, 481, orientation=5, animated=True, alpha=True),
            JxlHeader(640, 481, 5, True, True),
        ),
    ],
)
def test_size_header(code: bytes, expected: JxlHeader) -> None:
    assert parse_codestream_header(code) == expected


def test_orientation_swaps_the_upright_size() -> None:
    assert JxlHeader(640, 480, 6).upright == (480, 640)
    assert JxlHeader(640, 480, 3).upright == (640, 480)


def _box(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", 8 + len(body)) + kind + body


SIGNATURE = b"\x00\x00\x00\x0cJXL \r\n\x87\n"
FTYP = _box(b"ftyp", b"jxl \x00\x00\x00\x00jxl ")


def test_container_with_one_codestream_box() -> None:
    code = codestream(5000, 3000)
    data = SIGNATURE + FTYP + _box(b"Exif", b"\0" * 100) + _box(b"jxlc", code)
    assert parse_codestream_header(codestream_head(data)) == JxlHeader(5000, 3000)


def test_container_with_the_codestream_split_over_partial_boxes() -> None:
    code = codestream(5000, 3000, orientation=8)
    parts = [code[:3], code[3:5], code[5:]]
    boxes = b"".join(
        _box(b"jxlp", struct.pack(">I", i | (0x80000000 if i == 2 else 0)) + part)
        for i, part in enumerate(parts)
    )
    data = SIGNATURE + FTYP + boxes
    assert parse_codestream_header(codestream_head(data)) == JxlHeader(5000, 3000, 8)


def test_a_64_bit_box_size_and_a_last_box_to_the_end() -> None:
    code = codestream(7, 9)
    big = struct.pack(">I4sQ", 1, b"jxll", 16 + 1) + b"\x05"
    last = struct.pack(">I4s", 0, b"jxlc") + code
    assert parse_codestream_header(codestream_head(SIGNATURE + big + last)) == JxlHeader(7, 9)


@pytest.mark.parametrize(
    "data",
    [
        SIGNATURE + FTYP,  # no codestream box
        SIGNATURE + struct.pack(">I4s", 4, b"jxlc"),  # a box shorter than its header
        b"\xff\x0a",  # a codestream cut inside its SizeHeader
        SIGNATURE + _box(b"jxlc", b"\x00\x01"),  # a codestream without its signature
    ],
)
def test_broken_headers_are_corrupt(data: bytes) -> None:
    with pytest.raises(CorruptImage):
        parse_codestream_header(codestream_head(data))


def test_the_parser_agrees_with_libjxl(tmp_path: Path) -> None:
    # Small, 13-bit and ratio-coded sizes; effort 1 keeps the encoder fast.
    for size in [(91, 37), (1600, 900), (257, 2000)]:
        pixels = np.zeros((size[1], size[0], 3), np.uint8)
        data = jxl(pixels, effort=1)
        assert parse_codestream_header(codestream_head(data)).upright == size
        boxed = jxl(pixels, effort=1, usecontainer=True)
        assert boxed.startswith(SIGNATURE)
        assert parse_codestream_header(codestream_head(boxed)).upright == size


def test_with_the_extra_a_jxl_is_probed_and_decoded(tmp_path: Path) -> None:
    rgb = np.zeros((120, 200, 3), np.uint8)
    rgb[:, :100] = (220, 30, 30)
    path = tmp_path / "x.bin"
    path.write_bytes(jxl(rgb, lossless=True))
    facts = probe(path, LIMITS)
    assert (facts.format, facts.width, facts.height) == (ImageFormat.JXL, 200, 120)
    image = decode(path, facts, (100, 60), all_frames=False)
    assert (image.width, image.height, image.bands) == (100, 60, 3)
    assert image(10, 30) == [220.0, 30.0, 30.0] and image(90, 30) == [0.0, 0.0, 0.0]


def test_alpha_is_read_from_the_header_and_kept(tmp_path: Path) -> None:
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 20:, 3] = 255
    path = tmp_path / "a.jxl"
    path.write_bytes(jxl(rgba, effort=1, lossless=True))
    facts = probe(path, LIMITS)
    assert facts.has_alpha
    image = decode(path, facts, (40, 30), all_frames=False)
    assert image.hasalpha() and image(5, 5)[3] == 0 and image(30, 5)[3] == 255
    opaque = tmp_path / "o.jxl"
    opaque.write_bytes(jxl(rgba[..., :3], effort=1))
    assert not probe(opaque, LIMITS).has_alpha


def test_limits_are_checked_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "x.jxl"
    path.write_bytes(codestream(300_000, 300_000))  # a header alone: decoding would fail
    with pytest.raises(TooManyPixels):
        probe(path, LIMITS)


def test_without_the_extra_a_jxl_is_415_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # import fails as if not installed
    path = tmp_path / "x.jxl"
    path.write_bytes(codestream(64, 48))
    with pytest.raises(UnsupportedType, match=r"imgpipe\[jxl\]") as caught:
        probe(path, LIMITS)
    assert caught.value.code == "unsupported_type" and caught.value.status == 415


def test_an_animated_jxl_is_read_as_its_first_frame(tmp_path: Path) -> None:
    frames = np.zeros((3, 40, 60, 3), np.uint8)
    frames[0], frames[1], frames[2] = 40, 120, 200
    path = tmp_path / "a.jxl"
    path.write_bytes(jxl(frames, effort=1, lossless=True))
    assert parse_codestream_header(codestream_head(path.read_bytes())).animated
    facts = probe(path, LIMITS)
    assert (facts.width, facts.height, facts.frames) == (60, 40, 1)
    assert decode(path, facts, (60, 40), all_frames=False)(5, 5) == [40.0, 40.0, 40.0]
