"""Profiles are data: a name, a set of render options, and the formats to write.

A profile is a named, validated ``RenderOptions`` (domain/render_options.py), the way an
imgproxy preset is a set of processing options: every option a render URL takes, a
profile takes too, under the same name (``w``/``width``, ``q``/``quality``...), and one
planner turns both into steps (engine/plan.py). The three built-ins are SPEC §5's; a
TOML file (``IMGPIPE_PROFILES_FILE``) may add profiles or replace a built-in by name.
Every output-affecting field goes into the profile's digest, which is part of each
variant's storage key, so changing a profile never serves stale bytes under the old key.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from imgpipe.domain.errors import BadRequest
from imgpipe.domain.media import ANIMATED_OUTPUTS, OUTPUT_FORMATS, ImageFormat
from imgpipe.domain.render_options import (
    OUTPUT_VERSION,
    PROFILE_KEYS,
    Animated,
    BadOption,
    Crop,
    Fit,
    RenderOptions,
    output_format_names,
    parse_options,
)

PROFILE_QUALITY = 85  # SPEC §5: the built-ins are WebP at quality 85


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    options: RenderOptions
    formats: tuple[ImageFormat, ...] = (ImageFormat.WEBP,)

    @property
    def digest(self) -> str:
        """A short stable hash of everything that changes the output bytes."""
        canonical = f"v{OUTPUT_VERSION}\n{self.options.key_text()}"
        # Face crops moved from libvips' attention to face detection: the detector's
        # version is part of their keys (other profiles never change with it).
        if self.options.crop is Crop.FACE:
            canonical += "\nfaces=haar-1"
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def variants(self) -> list[VariantSpec]:
        """One variant per output format; the first keeps the profile's plain name."""
        specs = [VariantSpec(self.name, self, self.formats[0])]
        specs += [VariantSpec(f"{self.name}.{fmt.value}", self, fmt) for fmt in self.formats[1:]]
        return specs


@dataclass(frozen=True, slots=True)
class VariantSpec:
    """One output file: a profile written in one format."""

    name: str
    profile: Profile
    format: ImageFormat

    @property
    def options(self) -> RenderOptions:
        return replace(self.profile.options, format=self.format)


def _box(width: int, height: int, fit: Fit = Fit.INSIDE) -> RenderOptions:
    return RenderOptions(width=width, height=height, fit=fit, quality=PROFILE_QUALITY)


BUILTIN_PROFILES: tuple[Profile, ...] = (
    Profile("thumbnail", _box(150, 150, Fit.COVER)),
    Profile("medium", _box(800, 600)),
    Profile("large", _box(1920, 1080)),
)


@dataclass(frozen=True)
class ProfileSet:
    """The profiles in force, by name, in a stable order."""

    profiles: Mapping[str, Profile] = field(default_factory=dict)

    @classmethod
    def builtin(cls) -> ProfileSet:
        return cls({p.name: p for p in BUILTIN_PROFILES})

    @classmethod
    def load(cls, path: Path | None) -> ProfileSet:
        """The profiles in effect: the built-ins, and PROFILES_FILE's on top when set."""
        return cls.from_toml(path) if path else cls.builtin()

    @classmethod
    def from_toml(cls, path: Path) -> ProfileSet:
        """Built-ins, then the file's ``[profiles.NAME]`` tables on top."""
        with path.open("rb") as fh:
            data = tomllib.load(fh)
        merged = dict(cls.builtin().profiles)
        for name, table in data.get("profiles", {}).items():
            merged[name] = parse_profile(name, table)
        return cls(merged)

    def names(self) -> list[str]:
        return list(self.profiles)

    def select(self, names: Iterable[str] | None) -> list[Profile]:
        """The named profiles (all of them for None); an unknown name is a BadRequest."""
        if names is None:
            return list(self.profiles.values())
        chosen = []
        for name in names:
            if name not in self.profiles:
                known = ", ".join(self.profiles)
                raise BadRequest(f"Unknown profile {name!r}; known profiles: {known}.")
            chosen.append(self.profiles[name])
        return chosen

    def variant(self, name: str) -> VariantSpec | None:
        for profile in self.profiles.values():
            for spec in profile.variants():
                if spec.name == name:
                    return spec
        return None


def parse_profile(name: str, table: Mapping[str, Any]) -> Profile:
    """Validate one profile table; every error names the profile and the field.

    The keys are the render options' (``w``, ``fit``, ``blur``, ``wm``...), or their long
    names (``width``, ``quality``, ``watermark``...); ``formats`` lists the outputs.
    """
    where = f"profile {name!r}"
    for key in ("width", "height"):
        raw = table.get(key, table.get(PROFILE_KEYS[key]))
        if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= 16384:
            raise ValueError(f"{where}: {key} must be an integer from 1 to 16384, got {raw!r}")
    pairs: list[tuple[str, str]] = []
    written: dict[str, str] = {}  # option -> the key the file used, for messages
    for key, raw in table.items():
        if key == "formats":
            continue
        option = PROFILE_KEYS.get(key, key)
        if option == "format":
            raise ValueError(f"{where}: use formats = [...] to name the outputs")
        pairs.append((option, _option_text(raw)))
        written[option] = key
    if not any(option == "q" for option, _ in pairs):
        pairs.append(("q", str(PROFILE_QUALITY)))
    try:
        # Profiles may exceed a render's MAX_DIMENSION up to 16384: checked above.
        sized = [(k, v) for k, v in pairs if k not in ("w", "h")]
        options = replace(
            parse_options(sized),
            width=table.get("width", table.get("w")),
            height=table.get("height", table.get("h")),
        )
    except BadOption as exc:
        key = written.get(exc.option, exc.option)
        raise ValueError(f"{where}: {key} must be {exc.expected}, got {exc.got!r}") from None

    formats_raw = table.get("formats", ["webp"])
    if isinstance(formats_raw, str):
        formats_raw = [formats_raw]
    formats: list[ImageFormat] = []
    for raw in formats_raw:
        try:
            fmt: ImageFormat | None = ImageFormat(raw)
        except ValueError:
            fmt = None
        if fmt is None or fmt not in OUTPUT_FORMATS:
            raise ValueError(f"{where}: formats may hold {output_format_names()}; got {raw!r}")
        formats.append(fmt)
    if not formats:
        raise ValueError(f"{where}: formats must not be empty")
    if table.get("animated") == Animated.KEEP.value:
        still = [f.value for f in formats if f not in ANIMATED_OUTPUTS]
        if still:
            # An explicit "keep" that a format cannot honour is refused, never silently
            # dropped: this libvips writes an animation's frames to AVIF as separate still
            # items, which no browser plays (docs/architecture.md).
            raise ValueError(
                f'{where}: animated = "keep" cannot be honoured for {", ".join(still)} '
                f"(animations are written as {', '.join(sorted(ANIMATED_OUTPUTS))}); "
                "remove animated (the default keeps animation where it can) or list only "
                "those formats"
            )
    return Profile(name=name, options=options, formats=tuple(formats))


def _option_text(raw: Any) -> str:
    """A TOML value as a URL would spell it."""
    if isinstance(raw, bool):
        return "1" if raw else "0"
    if isinstance(raw, list):
        return ",".join(str(v) for v in raw)
    return str(raw)
