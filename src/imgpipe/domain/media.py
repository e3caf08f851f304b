"""What an image is, as far as the pipeline cares: its format and header facts."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    WEBP = "webp"
    GIF = "gif"
    TIFF = "tiff"
    AVIF = "avif"
    HEIC = "heic"
    BMP = "bmp"

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self]

    @property
    def extension(self) -> str:
        return "jpg" if self is ImageFormat.JPEG else self.value


_MEDIA_TYPES = {
    ImageFormat.JPEG: "image/jpeg",
    ImageFormat.PNG: "image/png",
    ImageFormat.WEBP: "image/webp",
    ImageFormat.GIF: "image/gif",
    ImageFormat.TIFF: "image/tiff",
    ImageFormat.AVIF: "image/avif",
    ImageFormat.HEIC: "image/heic",
    ImageFormat.BMP: "image/bmp",
}

# Formats a variant may be written in (SPEC §5 `formats`).
OUTPUT_FORMATS = frozenset({ImageFormat.WEBP, ImageFormat.AVIF, ImageFormat.JPEG, ImageFormat.PNG})
# Output formats that hold an animation as browsers play it. Not AVIF: this libvips writes
# an animation's frames as separate still items, not an image sequence (brand avis).
ANIMATED_OUTPUTS = frozenset({ImageFormat.WEBP})


@dataclass(frozen=True, slots=True)
class Limits:
    """Input limits, checked from the header before any full decode."""

    max_upload_bytes: int
    max_pixels: int
    max_frames: int
    # A progressive JPEG cannot be decoded in strips: libjpeg keeps every DCT coefficient
    # of the whole image (about 3.4 bytes a pixel: 879 MB for 20000x13000, against 122 MB
    # for the same pixels as a baseline JPEG), so it gets a budget of its own.
    max_progressive_pixels: int = 100_000_000


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Facts read from an image's header: nothing here needed a full decode.

    ``width``/``height`` are the stored dimensions of one frame, before EXIF orientation;
    ``orientation`` is the EXIF tag (1 when absent or invalid).
    """

    format: ImageFormat
    width: int
    height: int
    frames: int = 1
    orientation: int = 1
    has_alpha: bool = False
    progressive: bool = False  # a progressive (interlaced) JPEG

    @property
    def upright_size(self) -> tuple[int, int]:
        """Width and height once EXIF orientation is applied."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height

    @property
    def animated(self) -> bool:
        return self.frames > 1
