"""Render options: the one vocabulary of what an output looks like.

A render URL's query and a profile's table both become a ``RenderOptions`` (a profile is
a named set of render options plus its output formats, domain/profiles.py), so every
option works in both, and one planner (engine/plan.py) turns it into steps.

The query (in any order) becomes a ``RenderOptions``; its ``canonical_pairs`` list the
options that differ from their defaults in one fixed order, with one spelling per value.
That canonical form is what a signature covers (domain/signing.py) and what cache keys
and profile digests are derived from, so ``w=300&h=200`` and ``h=200&w=300`` are one
render. Every refusal is a ``BadOption`` naming the option, what it accepts and what came.

Pure stdlib: the engine decides how the options become pixels (engine/plan.py).
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
from imgpipe.domain.media import OUTPUT_FORMATS, ImageFormat

# The one version of the engine's output bytes: part of every render's cache key and of
# every profile's digest (so of every variant's storage key). Bump it whenever the output
# for unchanged options changes, so old keys are never reused for new bytes; stored
# variants keep the keys their rows name. (Whether renders read the render source is in
# the render key too: services/render.py.)
# 3: one engine for profiles and renders; cover keeps the box's shape (undersize=crop).
# 4: AVIF: q on WebP's scale (formats.quality_map), 4:4:4, effort 0 for renders; WebP
#    renders larger than the render source's box at effort 0 (engine/encode.py).
OUTPUT_VERSION = 4
# The version of quality=auto's search (engine/auto_quality.py: its levels' targets, its
# predictor and its calibration). Only keys of auto-quality outputs carry it
# (``RenderOptions.key_text``), so retuning auto moves those keys and no others.
# 2: SSIMULACRA2-calibrated levels (auto:best, auto:good, auto:eco) replace block SSIM 0.985.
# 3: eco and good checked with SSIMULACRA2 itself on the whole image (engine/ssimulacra2.py).
# 4: eco and good (WebP, AVIF, JPEG) predicted from a 5x5 sample, then confirmed on the whole image,
#    stepping up only (about half the CPU of 3).
# 5: the prediction stands when its encode's own sample tiles keep a fitted gate; the whole
#    image is checked only when they do not (about 2 encodes of CPU for WebP, from 3.7);
#    renders have predictions of their own, fitted on their lower-effort encodes.
AUTO_QUALITY_VERSION = 5

MAX_DIMENSION = 8192
DEFAULT_QUALITY = 80  # renders; profiles say theirs (85 for the built-ins)


class AutoQuality(StrEnum):
    """quality=auto's levels: the fewest bytes that keep a perceptual target, searched per
    image by the engine (engine/auto_quality.py, targets and calibration there).

    ``best``: SSIM against the resized source above 0.95 (the design's quality floor), or
    the encoder's best where no quality reaches it; ``good`` (``auto`` alone): not told
    from quality 85 at normal viewing, about 70 on SSIMULACRA2's scale; ``eco``: fewer
    bytes still, about 60. PNG is lossless at every level."""

    BEST = "auto:best"
    GOOD = "auto:good"
    ECO = "auto:eco"

    @property
    def canonical(self) -> str:
        """One spelling per level: ``auto`` for the default, so URLs signed with
        ``q=auto`` before the levels existed keep their signatures."""
        return AUTO_WORD if self is AutoQuality.GOOD else self.value


AUTO_WORD = "auto"
AUTO = AutoQuality.GOOD  # what ``auto`` alone means
Quality = int | AutoQuality | None  # 1-100, a level of auto, or None for the context's default


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
    INSIDE = "inside"  # fit inside the box, keep aspect ratio (default; "fit" in profiles)
    COVER = "cover"  # fill the box exactly, cropping the overflow
    CONTAIN = "contain"  # fit inside, then pad to the box
    FILL = "fill"  # stretch to the box, ignoring aspect ratio


class Crop(StrEnum):
    CENTRE = "centre"
    ATTENTION = "attention"
    ENTROPY = "entropy"
    FACE = "face"
    FOCAL = "fp"  # set by the fp=x,y option, never written as crop=fp


class Undersize(StrEnum):
    """What ``cover`` does with a source smaller than the box on some axis (it never
    upscales): ``crop`` cuts it to the box's aspect ratio at the largest size that needs
    no upscaling (150x103 into 150x150 gives 103x103), so a grid of thumbnails keeps one
    shape; ``keep`` keeps what fits of the source (150x103)."""

    CROP = "crop"
    KEEP = "keep"


class Animated(StrEnum):
    KEEP = "keep"  # an animated source stays animated where the format can hold it
    FIRST_FRAME = "first-frame"


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
class Region:
    """A rectangle of the upright source, in its pixels (after EXIF orientation)."""

    left: int
    top: int
    width: int
    height: int

    def canonical(self) -> str:
        return f"{self.left},{self.top},{self.width},{self.height}"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Everything that shapes an output's bytes, whatever order it was written in."""

    width: int | None = None
    height: int | None = None
    fit: Fit = Fit.INSIDE
    crop: Crop = Crop.CENTRE
    focal: tuple[float, float] | None = None
    region: Region | None = None
    undersize: Undersize = Undersize.CROP
    format: ImageFormat | None = None  # None: negotiated from Accept (format=auto)
    quality: Quality = None
    blur: float | None = None
    sharpen: float | None = None
    rotate: float = 0  # degrees clockwise, [0, 360)
    background: str | None = None  # rrggbb or rrggbbaa: rotate corners, contain padding, JPEG
    flip: Flip | None = None
    brightness: int = 0
    contrast: int = 0
    gray: bool = False
    watermark: Watermark | None = None
    animated: Animated = Animated.KEEP
    # The format came from the path's extension (/v1/render/ID.webp), so the query omits it.
    format_in_path: bool = False

    def canonical_pairs(self) -> list[tuple[str, str]]:
        """Non-default options in the one fixed order (``OPTION_ORDER``), one spelling each."""
        values: dict[str, str | None] = {
            "w": _opt(self.width),
            "h": _opt(self.height),
            "fit": None if self.fit is Fit.INSIDE else self.fit.value,
            "crop": None if self.crop in (Crop.CENTRE, Crop.FOCAL) else self.crop.value,
            "fp": None if self.focal is None else f"{_num(self.focal[0])},{_num(self.focal[1])}",
            "region": None if self.region is None else self.region.canonical(),
            "undersize": None if self.undersize is Undersize.CROP else self.undersize.value,
            "format": None if self.format is None or self.format_in_path else self.format.value,
            "q": _quality_text(self.quality),
            "blur": None if self.blur is None else _num(self.blur),
            "sharpen": None if self.sharpen is None else _num(self.sharpen),
            "rotate": _num(self.rotate) if self.rotate else None,
            "bg": self.background,
            "flip": None if self.flip is None else self.flip.value,
            "bri": str(self.brightness) if self.brightness else None,
            "con": str(self.contrast) if self.contrast else None,
            "gray": "1" if self.gray else None,
            "wm": None if self.watermark is None else self.watermark.canonical(),
            "anim": None if self.animated is Animated.KEEP else self.animated.value,
        }
        return [(name, value) for name in OPTION_ORDER if (value := values[name]) is not None]

    def canonical(self) -> str:
        return "&".join(f"{k}={v}" for k, v in self.canonical_pairs())

    def key_text(self) -> str:
        """The canonical form plus the auto-quality search's version when quality is auto:
        what cache keys and profile digests are made from (a signature covers only the
        canonical form)."""
        text = self.canonical()
        if isinstance(self.quality, AutoQuality):
            text += f"\nauto-quality={AUTO_QUALITY_VERSION}"
        return text

    def cache_digest(self, fmt: str, extra: str = "") -> str:
        """Stable digest of (output version, options, negotiated format, asset digests)."""
        options = replace(self, format_in_path=False).key_text()
        text = f"v{OUTPUT_VERSION}\n{options}\n{fmt}\n{extra}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    @property
    def quarter_turns(self) -> bool:
        return self.rotate % 90 == 0


# The one order of the canonical form (and of signed URLs).
OPTION_ORDER = (
    "w",
    "h",
    "fit",
    "crop",
    "fp",
    "region",
    "undersize",
    "format",
    "q",
    "blur",
    "sharpen",
    "rotate",
    "bg",
    "flip",
    "bri",
    "con",
    "gray",
    "wm",
    "anim",
)
# Query parameters that are not render options: expiry and signature.
CONTROL_PARAMS = ("exp", "sig")
# How the same options are spelled in a profile's TOML table (the rest as in a URL).
PROFILE_KEYS = {
    "width": "w",
    "height": "h",
    "quality": "q",
    "brightness": "bri",
    "contrast": "con",
    "watermark": "wm",
    "animated": "anim",
    "background": "bg",
}


def output_format_names() -> str:
    return ", ".join(sorted(f.value for f in OUTPUT_FORMATS))


def parse_options(
    pairs: Iterable[tuple[str, str]], path_format: ImageFormat | None = None
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

    fmt = _format(seen.get("format"))
    if path_format is not None:
        if "format" in seen and fmt is not path_format:
            raise BadOption(
                "format", f"{path_format.value} (as the path's extension says)", seen["format"]
            )
        fmt = path_format
    crop = _choice(seen, "crop", Crop, Crop.CENTRE, {"center": "centre", "fp": "!"})
    focal = _focal(seen)
    if focal is not None:
        if "crop" in seen:
            raise BadOption("crop", "absent when fp (a focal point) is given", seen["crop"])
        crop = Crop.FOCAL
    rotate = _decimal(seen, "rotate", -360.0, 360.0) or 0.0
    gray_raw = seen.get("gray")
    if gray_raw not in (None, "0", "1", "true", "false"):
        raise BadOption("gray", "1 or 0", gray_raw)
    return RenderOptions(
        width=_integer(seen, "w", 1, MAX_DIMENSION),
        height=_integer(seen, "h", 1, MAX_DIMENSION),
        fit=_choice(seen, "fit", Fit, Fit.INSIDE, {"fit": "inside"}),
        crop=crop,
        focal=focal,
        region=_region(seen.get("region")),
        undersize=_choice(seen, "undersize", Undersize, Undersize.CROP, {}),
        format=fmt,
        quality=_quality(seen.get("q")),
        blur=_decimal(seen, "blur", 0.3, 100.0),
        sharpen=_decimal(seen, "sharpen", 0.3, 10.0),
        rotate=float(_num(rotate % 360)),
        background=_colour(seen.get("bg")),
        flip=_choice(seen, "flip", Flip, None, {"vh": "hv"}),
        brightness=_integer(seen, "bri", -100, 100) or 0,
        contrast=_integer(seen, "con", -100, 100) or 0,
        gray=gray_raw in ("1", "true"),
        watermark=_watermark(seen.get("wm")),
        animated=_choice(seen, "anim", Animated, Animated.KEEP, {"first": "first-frame"}),
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
_COLOUR = re.compile(r"^[0-9a-f]{6}([0-9a-f]{2})?$")


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


def _format(raw: str | None) -> ImageFormat | None:
    if raw is None or raw == "auto":
        return None
    try:
        fmt = ImageFormat({"jpg": "jpeg"}.get(raw, raw))
    except ValueError:
        fmt = None
    if fmt is None or fmt not in OUTPUT_FORMATS:
        raise BadOption("format", f"one of auto, {output_format_names()}", raw)
    return fmt


def _quality(raw: str | None) -> Quality:
    if raw is None:
        return None
    if raw == AUTO_WORD:
        return AUTO
    try:
        return AutoQuality(raw)
    except ValueError:
        pass
    if not _INT.match(raw) or not 1 <= int(raw) <= 100:
        levels = ", ".join(level.value for level in AutoQuality)
        raise BadOption("q", f"an integer from 1 to 100, or {AUTO_WORD}, {levels}", raw)
    return int(raw)


def _quality_text(quality: Quality) -> str | None:
    if quality is None:
        return None
    return quality.canonical if isinstance(quality, AutoQuality) else str(quality)


def _colour(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = raw.lower().removeprefix("#")
    if not _COLOUR.match(text):
        raise BadOption("bg", "a colour as rrggbb or rrggbbaa (hex)", raw)
    return text


def _region(raw: str | None) -> Region | None:
    if raw is None:
        return None
    expected = "left,top,width,height in source pixels (integers; width and height at least 1)"
    parts = raw.split(",")
    if len(parts) != 4 or not all(_INT.match(p) for p in parts):
        raise BadOption("region", expected, raw)
    left, top, width, height = (int(p) for p in parts)
    if left < 0 or top < 0 or width < 1 or height < 1:
        raise BadOption("region", expected, raw)
    return Region(left, top, width, height)


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


def format_from_extension(ext: str) -> ImageFormat:
    """The format an extension in the render path names (``.webp``, ``.jpg``...)."""
    try:
        fmt = _format(ext.lower())
    except BadOption:
        fmt = None
    if fmt is None:
        names = ", ".join(f".{f.extension}" for f in sorted(OUTPUT_FORMATS))
        raise BadOption("format", f"a path extension of {names} or .jpeg", ext)
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
    # The worker makes the large copy after the job (else the first render needing it).
    large_source_eager: bool = True


def split_render_path(path: str) -> tuple[str, ImageFormat | None]:
    """``/v1/render/ID`` or ``/v1/render/ID.EXT`` to the id and the extension's format."""
    prefix = "/v1/render/"
    if not path.startswith(prefix) or "/" in path[len(prefix) :]:
        raise BadRequest(f"A render path looks like {prefix}IMAGE_ID[.webp]; got {path!r}.")
    name = path[len(prefix) :]
    image_id, dot, ext = name.partition(".")
    if not image_id:
        raise BadRequest(f"A render path looks like {prefix}IMAGE_ID[.webp]; got {path!r}.")
    return image_id, format_from_extension(ext) if dot else None
