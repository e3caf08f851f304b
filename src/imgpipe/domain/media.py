"""What an image is, as far as the pipeline cares: its format and header facts."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from imgpipe.domain.formats import ANIMATED_OUTPUTS, OUTPUT_FORMATS, ImageFormat

# The format registry lives in domain/formats.py; these names stay importable from here.
__all__ = [
    "ANIMATED_OUTPUTS",
    "OUTPUT_FORMATS",
    "ImageFormat",
    "Limits",
    "ProbeCache",
    "ProbeResult",
    "probe_facts",
    "probe_from_facts",
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


_PROBE_FIELDS = frozenset(f.name for f in fields(ProbeResult))


def probe_facts(result: ProbeResult) -> dict[str, Any]:
    """Every field of ``result`` as JSON-ready values (the images row's ``probe``)."""
    facts = asdict(result)
    facts["format"] = result.format.value
    return facts


def probe_from_facts(facts: Mapping[str, Any] | None) -> ProbeResult | None:
    """The ``ProbeResult`` that ``probe_facts`` recorded, or None: nothing recorded, or
    a record that does not name exactly today's fields (written by another version):
    such a record is not trusted, and the caller probes the file as if there were none."""
    if not facts or set(facts) != _PROBE_FIELDS:
        return None
    try:
        values = {**facts, "format": ImageFormat(facts["format"])}
        result = ProbeResult(**values)
    except (TypeError, ValueError):
        return None
    ints = (result.width, result.height, result.frames, result.orientation, result.bands)
    if not all(type(v) is int and v >= 1 for v in (*ints, result.sample_bytes)):
        return None
    if type(result.has_alpha) is not bool or type(result.progressive) is not bool:
        return None
    return result


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

    def holds(self, sha256: str) -> bool:
        """Whether ``get`` would answer without calling its ``probe``."""
        with self._lock:
            return sha256 in self._items

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
