"""The format registry: one entry per image format imgpipe knows.

Each entry says what a user and every layer needs about a format: its media type and file
extensions, how its first bytes are recognised, whether it can hold alpha or an animation,
which decoder reads it and which encoder writes it. Sniffing (engine/sniff.py), the
decoders' dispatch (engine/loaders.py), the 415 message, the OpenAPI description of an
upload and the web page's hint are all generated from ``FORMATS``; adding a format is one
entry here plus its loader in the engine (docs/architecture.md, "Where a change goes").

Recognition is by bytes only. ``magic`` sees the first ``HEAD_BYTES`` of the file and,
for files with a TIFF header, the facts the engine read from the TIFF's directories
(``TiffFacts``): DNG, NEF and ARW are TIFF files that only their tags tell apart from a
scan. Entries are tried in order and the first match wins, so the specific entries (camera
RAW) come before the general one (TIFF).
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

HEAD_BYTES = 64


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    GIF = "gif"
    TIFF = "tiff"
    AVIF = "avif"
    HEIC = "heic"
    BMP = "bmp"
    JXL = "jxl"
    DNG = "dng"
    CR2 = "cr2"
    CR3 = "cr3"
    NEF = "nef"
    ARW = "arw"
    RAF = "raf"
    ORF = "orf"
    RW2 = "rw2"

    @property
    def spec(self) -> FormatSpec:
        return FORMATS[self]

    @property
    def media_type(self) -> str:
        return FORMATS[self].media_type

    @property
    def extension(self) -> str:
        return FORMATS[self].extensions[0]


class Loader(StrEnum):
    """Who decodes a format (engine/loaders.py routes on this)."""

    VIPS = "libvips"  # straight into libvips, shrink-on-load; FormatSpec.vips_loader names it
    PI_HEIF = "pi-heif"  # HEVC-coded HEIF: libheif with libde265, into memory
    PILLOW = "pillow"
    RAWPY = "rawpy"  # LibRaw: demosaic, white balance as shot, flip, 8-bit sRGB
    JXL = "jxl"  # libjxl through imagecodecs (the `jxl` extra)


class Family(StrEnum):
    """How a format is named to people: a camera RAW is one of a list."""

    IMAGE = "image"
    CAMERA_RAW = "camera RAW"


@dataclass(frozen=True, slots=True)
class TiffFacts:
    """What IFD0 (and its SubIFDs) of a TIFF-structured file say about it.

    Read by the engine from the file, since a TIFF's directories may sit anywhere in it.
    """

    make: str = ""  # IFD0 Make (0x010F), stripped
    dng_version: bool = False  # IFD0 carries DNGVersion (0xC612)
    # Some directory stores sensor data: PhotometricInterpretation CFA (32803) or
    # LinearRaw (34892), as camera RAW files do and scans never do.
    sensor_data: bool = False


@dataclass(frozen=True, slots=True)
class FormatSpec:
    format: ImageFormat
    name: str  # as people write it: "WebP", "JPEG XL"
    media_type: str
    extensions: tuple[str, ...]  # the first one names stored files
    magic: Callable[[bytes, TiffFacts | None], bool]
    loader: Loader
    vips_loader: str | None = None  # the libvips operation, for Loader.VIPS
    alpha: bool = False  # can carry an alpha channel
    animation: bool = False  # imgpipe keeps its frames as an animation (in or out)
    output: bool = False  # a variant may be written in it (profiles' `formats`, renders)
    family: Family = Family.IMAGE
    extra: str | None = None  # the pip extra that installs its loader, when not core
    # Output formats: the libvips saver and its settings (quality is added unless lossless).
    saver: str | None = None
    saver_options: tuple[tuple[str, str | int | bool], ...] = ()
    # Over saver_options when a client waits (on-demand renders): cheaper settings.
    fast_options: tuple[tuple[str, str | int | bool], ...] = ()
    # The saver's Q for a quality a user asks for, as (quality, Q) points, linear between
    # them, from quality 1 to 100: one quality means about the same SSIMULACRA2 in every
    # lossy format (WebP's Q scale). Empty: Q is the quality asked for.
    quality_map: tuple[tuple[int, int], ...] = ()
    lossless: bool = False

    def saver_quality(self, quality: int) -> int:
        """The saver's Q for ``quality`` (1-100), through ``quality_map``."""
        for (q0, v0), (q1, v1) in itertools.pairwise(self.quality_map):
            if q0 <= quality <= q1:
                return round(v0 + (quality - q0) * (v1 - v0) / (q1 - q0))
        return quality


def _is_tiff(head: bytes) -> bool:
    return head[:4] in (b"II*\x00", b"MM\x00*")


def _tiff_raw(*makes: str) -> Callable[[bytes, TiffFacts | None], bool]:
    """A TIFF-structured camera RAW: sensor data in its directories, from one of ``makes``."""

    def test(head: bytes, tiff: TiffFacts | None) -> bool:
        return (
            tiff is not None
            and tiff.sensor_data
            and not tiff.dng_version
            and tiff.make.upper().startswith(makes)
        )

    return test


def _ftyp_brands(head: bytes) -> set[bytes]:
    """The major and compatible brands of an ISO-BMFF `ftyp` box at the start of ``head``."""
    if head[4:8] != b"ftyp" or len(head) < 12:
        return set()
    box_size = struct.unpack(">I", head[:4])[0]
    end = min(box_size, len(head))
    return {head[8:12]} | {head[i : i + 4] for i in range(16, end - 3, 4)}


_HEIF_BRANDS_AVIF = {b"avif", b"avis"}
_HEIF_BRANDS_HEIC = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"}
# A JPEG XL file is a bare codestream (FF 0A) or an ISO-BMFF container whose first box is
# the 12-byte signature box `JXL `.
JXL_CODESTREAM = b"\xff\x0a"
JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n"


def _m(test: Callable[[bytes], bool]) -> Callable[[bytes, TiffFacts | None], bool]:
    return lambda head, _tiff: test(head)


_ENTRIES = (
    FormatSpec(
        ImageFormat.JPEG, "JPEG", "image/jpeg", ("jpg", "jpeg"),
        _m(lambda h: h.startswith(b"\xff\xd8\xff")),
        Loader.VIPS, "jpegload", output=True,
        saver="jpegsave",
        saver_options=(("keep", "none"), ("optimize_coding", True), ("interlace", True)),
    ),
    FormatSpec(
        ImageFormat.PNG, "PNG", "image/png", ("png",),
        _m(lambda h: h.startswith(b"\x89PNG\r\n\x1a\n")),
        Loader.VIPS, "pngload", alpha=True, output=True,
        saver="pngsave", saver_options=(("keep", "none"), ("compression", 6)), lossless=True,
    ),
    FormatSpec(
        ImageFormat.WEBP, "WebP", "image/webp", ("webp",),
        _m(lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP"),
        Loader.VIPS, "webpload", alpha=True, animation=True, output=True,
        saver="webpsave", saver_options=(("keep", "none"),),
        # When a client waits: effort 2 of 0-6 (libvips' default, for profile variants, is
        # 4) encodes an 800x600 photo about 30% faster for files about 3% larger
        # (bench/render_bench.py).
        fast_options=(("effort", 2),),
    ),
    FormatSpec(
        ImageFormat.GIF, "GIF", "image/gif", ("gif",),
        _m(lambda h: h[:6] in (b"GIF87a", b"GIF89a")),
        Loader.VIPS, "gifload", alpha=True, animation=True,
    ),
    # Camera RAW before TIFF: most of them are TIFF files underneath.
    FormatSpec(
        ImageFormat.DNG, "DNG", "image/x-adobe-dng", ("dng",),
        lambda h, t: _is_tiff(h) and t is not None and t.dng_version,
        Loader.RAWPY, family=Family.CAMERA_RAW,
    ),
    FormatSpec(
        ImageFormat.CR2, "CR2", "image/x-canon-cr2", ("cr2",),
        _m(lambda h: _is_tiff(h) and h[8:10] == b"CR"),
        Loader.RAWPY, family=Family.CAMERA_RAW,
    ),
    FormatSpec(
        ImageFormat.CR3, "CR3", "image/x-canon-cr3", ("cr3",),
        _m(lambda h: b"crx " in _ftyp_brands(h)),
        Loader.RAWPY, family=Family.CAMERA_RAW,
    ),
    FormatSpec(
        ImageFormat.NEF, "NEF", "image/x-nikon-nef", ("nef",),
        _tiff_raw("NIKON"), Loader.RAWPY, family=Family.CAMERA_RAW,
    ),
    FormatSpec(
        ImageFormat.ARW, "ARW", "image/x-sony-arw", ("arw",),
        _tiff_raw("SONY"), Loader.RAWPY, family=Family.CAMERA_RAW,
    ),
    FormatSpec(
        ImageFormat.RAF, "RAF", "image/x-fuji-raf", ("raf",),
        _m(lambda h: h.startswith(b"FUJIFILMCCD-RAW")),
        Loader.RAWPY, family=Family.CAMERA_RAW,
    ),
    FormatSpec(
        ImageFormat.ORF, "ORF", "image/x-olympus-orf", ("orf",),
        _m(lambda h: h[:4] in (b"IIRO", b"IIRS", b"MMOR")),
        Loader.RAWPY, family=Family.CAMERA_RAW,
    ),
    FormatSpec(
        ImageFormat.RW2, "RW2", "image/x-panasonic-rw2", ("rw2",),
        _m(lambda h: h[:4] == b"IIU\x00"),
        Loader.RAWPY, family=Family.CAMERA_RAW,
    ),
    FormatSpec(
        ImageFormat.TIFF, "TIFF", "image/tiff", ("tiff", "tif"),
        _m(_is_tiff), Loader.VIPS, "tiffload", alpha=True,
    ),
    FormatSpec(
        ImageFormat.AVIF, "AVIF", "image/avif", ("avif",),
        _m(lambda h: bool(_ftyp_brands(h) & _HEIF_BRANDS_AVIF)),
        Loader.VIPS, "heifload", alpha=True, output=True,
        # libvips' default effort (4) costs seconds per megapixel: profile variants use 2,
        # a waiting client 0 (libaom speed 9), which makes an 800x600 render from the
        # render source in 62 ms of CPU median, 84 ms p99 (effort 2: 194 / 381) for files
        # 12% larger at equal SSIMULACRA2. No chroma subsampling, as sharp's default: at
        # equal SSIMULACRA2, smaller on 10 of the 11 corpus photos, up to 7% on text.
        # quality_map: the AVIF Q at which the median corpus photo scores what WebP
        # scores at that quality (bench/avif_settings_bench.py, docs/render.md).
        saver="heifsave",
        saver_options=(
            ("compression", "av1"), ("effort", 2), ("subsample_mode", "off"), ("keep", "none"),
        ),
        fast_options=(("effort", 0),),
        quality_map=((1, 1), (50, 45), (65, 50), (80, 58), (90, 73), (100, 100)),
    ),
    FormatSpec(
        ImageFormat.HEIC, "HEIC", "image/heic", ("heic", "heif"),
        _m(lambda h: bool(_ftyp_brands(h) & _HEIF_BRANDS_HEIC)),
        Loader.PI_HEIF, alpha=True,
    ),
    FormatSpec(
        ImageFormat.BMP, "BMP", "image/bmp", ("bmp",),
        _m(lambda h: h[:2] == b"BM" and len(h) >= 26),
        Loader.PILLOW, alpha=True,
    ),
    FormatSpec(
        ImageFormat.JXL, "JPEG XL", "image/jxl", ("jxl",),
        _m(lambda h: h.startswith((JXL_CODESTREAM, JXL_CONTAINER))),
        Loader.JXL, alpha=True, extra="jxl", output=True,  # written by engine/jxl.py
    ),
)  # fmt: skip

FORMATS: dict[ImageFormat, FormatSpec] = {spec.format: spec for spec in _ENTRIES}

# Formats a variant may be written in (SPEC §5 `formats`).
OUTPUT_FORMATS = frozenset(spec.format for spec in _ENTRIES if spec.output)
# Output formats that hold an animation as browsers play it. Not AVIF: this libvips writes
# an animation's frames as separate still items, not an image sequence (brand avis).
ANIMATED_OUTPUTS = frozenset(spec.format for spec in _ENTRIES if spec.output and spec.animation)
CAMERA_RAW = frozenset(spec.format for spec in _ENTRIES if spec.family is Family.CAMERA_RAW)


def identify(head: bytes, tiff: TiffFacts | None = None) -> ImageFormat | None:
    """The first format whose magic matches, or None."""
    return next((spec.format for spec in _ENTRIES if spec.magic(head, tiff)), None)


def is_tiff_structured(head: bytes) -> bool:
    """Whether telling the format apart needs the TIFF directories (``TiffFacts``)."""
    return _is_tiff(head)


def is_iso_media(head: bytes) -> bool:
    return head[4:8] == b"ftyp"


def _listing(names: list[str], last: str) -> str:
    return ", ".join(names[:-1]) + f" {last} " + names[-1] if len(names) > 1 else names[0]


def accepted_formats(*, conjunction: str = "and") -> str:
    """The accepted inputs in one phrase, for messages, the API schema and the web page:
    "JPEG, PNG, ..., JPEG XL (with imgpipe[jxl]) and camera RAW (DNG, CR2, ...)"."""
    plain = [
        spec.name + (f" (with imgpipe[{spec.extra}])" if spec.extra else "")
        for spec in _ENTRIES
        if spec.family is Family.IMAGE
    ]
    raw = [spec.name for spec in _ENTRIES if spec.family is Family.CAMERA_RAW]
    return _listing([*plain, f"camera RAW ({', '.join(raw)})"], conjunction)


def upload_extensions() -> tuple[str, ...]:
    """Every extension of an accepted format, for a file picker's `accept` list."""
    return tuple(f".{ext}" for spec in _ENTRIES for ext in spec.extensions)
