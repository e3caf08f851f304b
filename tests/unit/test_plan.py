"""Output geometry: exact sizes, cover crops, and never an upscale."""

from __future__ import annotations

import pytest

from imgpipe.domain.profiles import Fit, Profile
from imgpipe.engine.plan import base_size, derivable, plan_geometry

COVER = Profile("thumbnail", 150, 150, fit=Fit.COVER)
MEDIUM = Profile("medium", 800, 600)
LARGE = Profile("large", 1920, 1080)


@pytest.mark.parametrize(
    ("source", "profile", "resize", "crop"),
    [
        ((4000, 3000), MEDIUM, (800, 600), (800, 600)),
        ((6000, 4000), MEDIUM, (800, 533), (800, 533)),
        ((3000, 4000), LARGE, (810, 1080), (810, 1080)),
        ((4000, 3000), COVER, (200, 150), (150, 150)),
        ((3000, 4000), COVER, (150, 200), (150, 150)),
        ((40, 30), MEDIUM, (40, 30), (40, 30)),
        ((40, 30), COVER, (40, 30), (40, 30)),
        ((1000, 100), COVER, (1000, 100), (150, 100)),
    ],
)
def test_geometry(
    source: tuple[int, int],
    profile: Profile,
    resize: tuple[int, int],
    crop: tuple[int, int],
) -> None:
    geometry = plan_geometry(source, profile)
    assert geometry.resize == resize
    assert geometry.crop == crop


def test_never_upscales_any_profile() -> None:
    for profile in (COVER, MEDIUM, LARGE):
        geometry = plan_geometry((90, 70), profile)
        assert geometry.resize[0] <= 90 and geometry.resize[1] <= 70


@pytest.mark.parametrize(
    ("source", "base"),
    [((4032, 3024), (1440, 1080)), ((3024, 4032), (810, 1080)), ((800, 600), (800, 600))],
)
def test_one_decode_serves_every_builtin(source: tuple[int, int], base: tuple[int, int]) -> None:
    assert base_size(source) == base
    assert all(derivable(plan_geometry(source, p), base) for p in (COVER, MEDIUM, LARGE))


def test_a_profile_larger_than_the_base_is_not_derived() -> None:
    huge = Profile("huge", 4000, 4000)
    assert not derivable(plan_geometry((6000, 4000), huge), base_size((6000, 4000)))
