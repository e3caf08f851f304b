"""On-demand render options: parsed and validated at the edge into one immutable spec.

The query (in any order) becomes a ``RenderOptions``; its ``canonical_pairs`` list the
options that differ from their defaults in one fixed order, with one spelling per value.
That canonical form is what a signature covers (domain/signing.py) and what the cache key
is derived from, so ``w=300&h=200`` and ``h=200&w=300`` (unsigned mode) are one render.
Every refusal is a ``BadOption`` naming the option, what it accepts and what came.

Pure stdlib: the engine decides how the options become pixels (engine/render.py).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from imgpipe.domain.errors import BadRequest
from imgpipe.domain.media import ImageFormat

# Bumped whenever the engine's output for unchanged options changes: it is part of every
# render's cache key, so old keys are never reused for new bytes.
# (Whether renders read the render source is in the key too: services/render.py.)
RENDER_VERSION = 2  # 2: JPEGs scale on load straight to the render size

MAX_DIMENSION = 8192
DEFAULT_QUALITY = 80


class BadOption(BadRequest):
    """A render option that is unknown, repeated, malformed or out of range (400)."""

    code = "bad_option"
    title = "A render option is not valid"

    def __init__(self, option: str, expected: str, got: str | None) -> None:
        self.option = option
        self.expected = expected
        self.got = got
        came = "nothing" if got is None else repr(got[:64])
        super().__init__(f"Option {option!r} must be {expected}; got {came}.")


class Fit(StrEnum):
    INSIDE = "inside"  # fit inside the box, keep aspect ratio (default)
    COVER = "cover"  # fill the box exactly, cropping the overflow
    CONTAIN = "contain"  # fit inside, then pad to the box
    FILL = "fill"  # stretch to the box, ignoring aspect ratio


class CropMode(StrEnum):
    CENTRE = "centre"
    ATTENTION = "attention"
    ENTROPY = "entropy"
    FACE = "face"
    FOCAL = "fp"  # set by the fp=x,y option, never written as crop=fp


class OutputFormat(StrEnum):
    AUTO = "auto"
    WEBP = "webp"
    AVIF = "avif"
    JPEG = "jpeg"
    PNG = "png"

    @property
    def image_format(self) -> ImageFormat:
        if self is OutputFormat.AUTO:
            raise ValueError("auto is negotiated, not a format")
        return ImageFormat(self.value)


class Flip(StrEnum):
    H = "h"
    V = "v"
    HV = "hv"


class Position(StrEnum):
    NW = "nw"
    N = "n"
    NE = "ne"
    W = "w"
    C = "c"
    E = "e"
    SW = "sw"
    S = "s"
    SE = "se"


WATERMARK_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class Watermark:
    name: str
    position: Position = Position.SE
    opacity: float = 0.5

    def canonical(self) -> str:
        return f"{self.name},{self.position.value},{_num(self.opacity)}"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Everything that shapes a render's bytes, whatever order the query was written in."""

    width: int | None = None
    height: int | None = None
    fit: Fit = Fit.INSIDE
    crop: CropMode = CropMode.CENTRE
    focal: tuple[float, float] | None = None
    format: OutputFormat = OutputFormat.AUTO
    quality: int | None = None
    blur: float | None = None
    sharpen: float | None = None
    rotate: int = 0
    flip: Flip | None = None
    brightness: int = 0
    contrast: int = 0
    gray: bool = False
    watermark: Watermark | None = None
    # The format came from the path's extension (/v1/render/ID.webp), so the query omits it.
    format_in_path: bool = False

    def canonical_pairs(self) -> list[tuple[str, str]]:
        """Non-default options in the one fixed order (``OPTION_ORDER``), one spelling each."""
        values: dict[str, str | None] = {
            "w": _opt(self.width),
            "h": _opt(self.height),
            "fit": None if self.fit is Fit.INSIDE else self.fit.value,
            "crop": None if self.crop in (CropMode.CENTRE, CropMode.FOCAL) else self.crop.value,
            "fp": None if self.focal is None else f"{_num(self.focal[0])},{_num(self.focal[1])}",
            "format": None
            if self.format is OutputFormat.AUTO or self.format_in_path
            else self.format.value,
            "q": _opt(self.quality),
            "blur": None if self.blur is None else _num(self.blur),
            "sharpen": None if self.sharpen is None else _num(self.sharpen),
            "rotate": str(self.rotate) if self.rotate else None,
            "flip": None if self.flip is None else self.flip.value,
            "bri": str(self.brightness) if self.brightness else None,
            "con": str(self.contrast) if self.contrast else None,
            "gray": "1" if self.gray else None,
            "wm": None if self.watermark is None else self.watermark.canonical(),
        }
        return [(name, value) for name in OPTION_ORDER if (value := values[name]) is not None]

    def canonical(self) -> str:
        return "&".join(f"{k}={v}" for k, v in self.canonical_pairs())

    def cache_digest(self, fmt: str, extra: str = "") -> str:
        """Stable digest of (engine version, options, negotiated format, asset digests)."""
        options = replace(self, format_in_path=False).canonical()
        text = f"v{RENDER_VERSION}\n{options}\n{fmt}\n{extra}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def effective_quality(self) -> int:
        return self.quality if self.quality is not None else DEFAULT_QUALITY


# The one order of the canonical form (and of signed URLs).
OPTION_ORDER = (
    "w",
    "h",
    "fit",
    "crop",
    "fp",
    "format",
    "q",
    "blur",
    "sharpen",
    "rotate",
    "flip",
    "bri",
    "con",
    "gray",
    "wm",
)
# Query parameters that are not render options: expiry and signature.
CONTROL_PARAMS = ("exp", "sig")


def parse_options(
    pairs: Iterable[tuple[str, str]], path_format: OutputFormat | None = None
) -> RenderOptions:
    """Build the spec from query pairs (any order); each option at most once.

    ``exp`` and ``sig`` are skipped here (signing.py owns them). ``path_format`` is the
    format named by an extension in the path (``/v1/render/ID.webp``).
    """
    seen: dict[str, str] = {}
    for name, value in pairs:
        if name in CONTROL_PARAMS:
            continue
        if name not in OPTION_ORDER:
            raise BadOption(name, f"one of the known options ({', '.join(OPTION_ORDER)})", value)
        if name in seen:
            raise BadOption(name, "given at most once", value)
        seen[name] = value

    fmt = _choice(seen, "format", OutputFormat, OutputFormat.AUTO, {"jpg": "jpeg"})
    if path_format is not None:
        if "format" in seen and fmt is not path_format:
            raise BadOption(
                "format", f"{path_format.value} (as the path's extension says)", seen["format"]
            )
        fmt = path_format
    crop = _choice(seen, "crop", CropMode, CropMode.CENTRE, {"center": "centre", "fp": "!"})
    focal = _focal(seen)
    if focal is not None:
        if "crop" in seen:
            raise BadOption("crop", "absent when fp (a focal point) is given", seen["crop"])
        crop = CropMode.FOCAL
    rotate = _integer(seen, "rotate", 0, 270) or 0
    if rotate % 90:
        raise BadOption("rotate", "0, 90, 180 or 270", seen["rotate"])
    gray_raw = seen.get("gray")
    if gray_raw not in (None, "0", "1", "true", "false"):
        raise BadOption("gray", "1 or 0", gray_raw)
    return RenderOptions(
        width=_integer(seen, "w", 1, MAX_DIMENSION),
        height=_integer(seen, "h", 1, MAX_DIMENSION),
        fit=_choice(seen, "fit", Fit, Fit.INSIDE, {}),
        crop=crop,
        focal=focal,
        format=fmt,
        quality=_integer(seen, "q", 1, 100),
        blur=_decimal(seen, "blur", 0.3, 100.0),
        sharpen=_decimal(seen, "sharpen", 0.3, 10.0),
        rotate=rotate,
        flip=_choice(seen, "flip", Flip, None, {"vh": "hv"}),
        brightness=_integer(seen, "bri", -100, 100) or 0,
        contrast=_integer(seen, "con", -100, 100) or 0,
        gray=gray_raw in ("1", "true"),
        watermark=_watermark(seen.get("wm")),
        format_in_path=path_format is not None,
    )


def _opt(value: int | None) -> str | None:
    return None if value is None else str(value)


def _num(value: float) -> str:
    """One spelling per number: up to 3 decimals, no trailing zeros."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


_INT = re.compile(r"^-?(0|[1-9][0-9]{0,5})$")
_DEC = re.compile(r"^-?(0|[1-9][0-9]{0,5})(\.[0-9]{1,3})?$")


def _integer(seen: dict[str, str], name: str, low: int, high: int) -> int | None:
    raw = seen.get(name)
    if raw is None:
        return None
    if not _INT.match(raw) or not low <= int(raw) <= high:
        raise BadOption(name, f"an integer from {low} to {high}", raw)
    return int(raw)


def _decimal(seen: dict[str, str], name: str, low: float, high: float) -> float | None:
    raw = seen.get(name)
    if raw is None:
        return None
    if not _DEC.match(raw) or not low <= float(raw) <= high:
        raise BadOption(
            name, f"a number from {_num(low)} to {_num(high)} (3 decimals at most)", raw
        )
    return float(_num(float(raw)))


def _choice(
    seen: dict[str, str],
    name: str,
    enum: type[StrEnum],
    default: StrEnum | None,
    aliases: dict[str, str],
) -> Any:
    raw = seen.get(name)
    if raw is None:
        return default
    try:
        return enum(aliases.get(raw, raw))
    except ValueError:
        allowed = ", ".join(m.value for m in enum if m.value != "fp")
        raise BadOption(name, f"one of {allowed}", raw) from None


def _focal(seen: dict[str, str]) -> tuple[float, float] | None:
    raw = seen.get("fp")
    if raw is None:
        return None
    parts = raw.split(",")
    expected = "x,y with each between 0 and 1 (fractions of the width and height)"
    if len(parts) != 2 or not all(_DEC.match(p) for p in parts):
        raise BadOption("fp", expected, raw)
    x, y = (float(p) for p in parts)
    if not (0 <= x <= 1 and 0 <= y <= 1) or math.isnan(x + y):
        raise BadOption("fp", expected, raw)
    return float(_num(x)), float(_num(y))


def _watermark(raw: str | None) -> Watermark | None:
    if raw is None:
        return None
    expected = (
        "NAME[,POSITION[,OPACITY]]: a watermark's name, one of "
        + "/".join(p.value for p in Position)
        + ", and an opacity from 0 to 1"
    )
    parts = raw.split(",")
    if not 1 <= len(parts) <= 3 or not WATERMARK_NAME.match(parts[0]):
        raise BadOption("wm", expected, raw)
    position = Position.SE
    opacity = 0.5
    if len(parts) >= 2:
        try:
            position = Position(parts[1])
        except ValueError:
            raise BadOption("wm", expected, raw) from None
    if len(parts) == 3:
        if not _DEC.match(parts[2]) or not 0 < float(parts[2]) <= 1:
            raise BadOption("wm", expected, raw)
        opacity = float(_num(float(parts[2])))
    return Watermark(parts[0], position, opacity)


def format_from_extension(ext: str) -> OutputFormat:
    """The format an extension in the render path names (``.webp``, ``.jpg``...)."""
    aliases = {"jpg": "jpeg"}
    try:
        fmt = OutputFormat(aliases.get(ext.lower(), ext.lower()))
    except ValueError:
        fmt = OutputFormat.AUTO
    if fmt is OutputFormat.AUTO:
        raise BadOption("format", "a path extension of .webp, .avif, .jpg, .jpeg or .png", ext)
    return fmt


@dataclass(frozen=True, slots=True)
class RenderConfig:
    """Render settings the service enforces (built from config.py by the container)."""

    # Keys accepted for signatures besides ServiceDeps.signing_key (which also signs):
    # the previous ones, kept for a while after a rotation.
    previous_keys: tuple[bytes, ...] = ()
    allow_unsigned: bool = False
    max_output_pixels: int = 16_777_216
    watermarks_dir: Path | None = None
    # Cold renders running at once in this process; more wait their turn.
    max_in_flight: int = 2
    # Render from the image's render source (a 1920x1080 copy) where it holds enough
    # pixels, instead of from the original (engine/render_source.py).
    intermediate: bool = True


def split_render_path(path: str) -> tuple[str, OutputFormat | None]:
    """``/v1/render/ID`` or ``/v1/render/ID.EXT`` to the id and the extension's format."""
    prefix = "/v1/render/"
    if not path.startswith(prefix) or "/" in path[len(prefix) :]:
        raise BadRequest(f"A render path looks like {prefix}IMAGE_ID[.webp]; got {path!r}.")
    name = path[len(prefix) :]
    image_id, dot, ext = name.partition(".")
    if not image_id:
        raise BadRequest(f"A render path looks like {prefix}IMAGE_ID[.webp]; got {path!r}.")
    return image_id, format_from_extension(ext) if dot else None
