"""Profiles are data: a name, a box, how to fit it and what to write.

The three built-ins are SPEC §5's; a TOML file (``IMGPIPE_PROFILES_FILE``) may add
profiles or replace a built-in by name. Every output-affecting field goes into the
profile's digest, which is part of each variant's storage key, so changing a profile
never serves stale bytes under the old key.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from imgpipe.domain.errors import BadRequest
from imgpipe.domain.media import OUTPUT_FORMATS, ImageFormat

# Bumped whenever the engine's output for an unchanged profile changes, so old keys are
# never reused for new bytes.
RENDER_VERSION = 1


class Fit(StrEnum):
    COVER = "cover"  # fill the box exactly, cropping the overflow
    FIT = "fit"  # fit inside the box, keep aspect ratio


class Crop(StrEnum):
    CENTRE = "centre"
    ATTENTION = "attention"
    FACE = "face"


class Animated(StrEnum):
    KEEP = "keep"
    FIRST_FRAME = "first-frame"


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    width: int
    height: int
    fit: Fit = Fit.FIT
    crop: Crop = Crop.CENTRE
    formats: tuple[ImageFormat, ...] = (ImageFormat.WEBP,)
    quality: int | None = 85  # None means "auto": smallest file above a quality target
    animated: Animated = Animated.KEEP

    @property
    def digest(self) -> str:
        """A short stable hash of everything that changes the output bytes."""
        canonical = json.dumps(
            {
                "v": RENDER_VERSION,
                "w": self.width,
                "h": self.height,
                "fit": self.fit.value,
                "crop": self.crop.value,
                "q": self.quality,
                "anim": self.animated.value,
                # Face crops moved from libvips' attention to face detection: their bytes
                # changed, so their keys do too (other profiles keep theirs).
                **({"faces": "haar-1"} if self.crop is Crop.FACE else {}),
            },
            sort_keys=True,
        )
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


BUILTIN_PROFILES: tuple[Profile, ...] = (
    Profile("thumbnail", 150, 150, fit=Fit.COVER),
    Profile("medium", 800, 600),
    Profile("large", 1920, 1080),
)


@dataclass(frozen=True)
class ProfileSet:
    """The profiles in force, by name, in a stable order."""

    profiles: Mapping[str, Profile] = field(default_factory=dict)

    @classmethod
    def builtin(cls) -> ProfileSet:
        return cls({p.name: p for p in BUILTIN_PROFILES})

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
    """Validate one profile table; every error names the profile and the field."""
    where = f"profile {name!r}"

    def choice(key: str, enum: type[StrEnum], default: StrEnum) -> Any:
        raw = table.get(key, default.value)
        try:
            return enum(raw)
        except ValueError:
            allowed = ", ".join(m.value for m in enum)
            raise ValueError(f"{where}: {key} must be one of {allowed}, got {raw!r}") from None

    def dimension(key: str) -> int:
        raw = table.get(key)
        if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= 16384:
            raise ValueError(f"{where}: {key} must be an integer from 1 to 16384, got {raw!r}")
        return raw

    fit_raw = table.get("fit", "fit")
    fit = choice("fit", Fit, Fit.FIT) if fit_raw != "inside" else Fit.FIT

    formats_raw = table.get("formats", ["webp"])
    if isinstance(formats_raw, str):
        formats_raw = [formats_raw]
    formats: list[ImageFormat] = []
    for raw in formats_raw:
        try:
            fmt = ImageFormat(raw)
        except ValueError:
            fmt = None
        if fmt not in OUTPUT_FORMATS or fmt is None:
            raise ValueError(f"{where}: formats may hold webp, avif, jpeg, png; got {raw!r}")
        formats.append(fmt)
    if not formats:
        raise ValueError(f"{where}: formats must not be empty")

    quality_raw = table.get("quality", 85)
    quality: int | None
    if quality_raw == "auto":
        quality = None
    elif (
        isinstance(quality_raw, int)
        and not isinstance(quality_raw, bool)
        and 1 <= quality_raw <= 100
    ):
        quality = quality_raw
    else:
        raise ValueError(f'{where}: quality must be 1-100 or "auto", got {quality_raw!r}')

    return Profile(
        name=name,
        width=dimension("width"),
        height=dimension("height"),
        fit=fit,
        crop=choice("crop", Crop, Crop.CENTRE),
        formats=tuple(formats),
        quality=quality,
        animated=choice("animated", Animated, Animated.KEEP),
    )
