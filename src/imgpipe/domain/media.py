"""What an image is, as far as the pipeline cares: its format and header facts."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from imgpipe.domain.formats import ANIMATED_OUTPUTS, OUTPUT_FORMATS, ImageFormat

# The format registry lives in domain/formats.py; these names stay importable from here.
__all__ = [
    "ANIMATED_OUTPUTS",
    "OUTPUT_FORMATS",
    "ImageFormat",
    "Limits",
    "ProbeCache",
    "ProbeResult",
]


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
    # One decoded image, width x height x bands x bytes per sample x frames (SPEC 7,
    # MAX_DECODE_BYTES): what the decoder may need in memory at once, whatever MAX_PIXELS says.
    max_decode_bytes: int = 1 << 30


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
    bands: int = 3  # as the decoder produces them, alpha included
    sample_bytes: int = 1  # bytes per sample as decoded: 2 for 16-bit PNG and TIFF

    @property
    def decode_bytes(self) -> int:
        """Memory for every decoded pixel of every frame (MAX_DECODE_BYTES counts this)."""
        return self.width * self.height * self.bands * self.sample_bytes * self.frames

    @property
    def upright_size(self) -> tuple[int, int]:
        """Width and height once EXIF orientation is applied."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height

    @property
    def animated(self) -> bool:
        return self.frames > 1


class ProbeCache:
    """Probe results of originals by sha256, bounded, most recently used kept.

    An original never changes under its sha256, so its header facts do not either; a
    render needs them on every cold render, and some headers are costly to read (a TIFF's
    directory chain, a HEIC's boxes). A refusal is kept too: a file the limits refuse is
    refused again without reading it. Built per ServiceDeps, so per process."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._items: OrderedDict[str, ProbeResult | Exception] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, sha256: str, probe: Callable[[], ProbeResult]) -> ProbeResult:
        """The cached facts, or ``probe()``'s (kept). ``probe`` raising an error whose
        ``retryable`` is false (the file's fault) is kept and raised again."""
        with self._lock:
            hit = self._items.get(sha256)
            if hit is not None:
                self._items.move_to_end(sha256)
        if isinstance(hit, ProbeResult):
            return hit
        if hit is not None:
            raise hit
        try:
            result: ProbeResult | Exception = probe()
        except Exception as exc:
            if getattr(exc, "retryable", True):
                raise
            result = exc
        with self._lock:
            self._items[sha256] = result
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        if isinstance(result, Exception):
            raise result
        return result

    def __len__(self) -> int:
        return len(self._items)
