"""The built-in output profiles of SPEC section 5, restated for the baselines.

The benchmark does not import imgpipe: it drives the CLI as a user would, and the
baselines must produce the same outputs on their own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    """One output variant: a box, and whether to fill it (cover) or fit inside it."""

    name: str
    width: int
    height: int
    cover: bool


PROFILES: tuple[Profile, ...] = (
    Profile("thumbnail", 150, 150, cover=True),
    Profile("medium", 800, 600, cover=False),
    Profile("large", 1920, 1080, cover=False),
)
QUALITY = 85
EXTENSION = "webp"


def variant_filename(profile: Profile) -> str:
    """File name of a variant inside its image's output folder (`<profile>.webp`)."""
    return f"{profile.name}.{EXTENSION}"
