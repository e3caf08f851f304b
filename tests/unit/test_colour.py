"""Reading an ICC profile's description decides whether a colour transform is needed."""

from __future__ import annotations

import pyvips

from imgpipe.engine.colour import icc_description, is_srgb_profile


def _profile(name: str) -> bytes:
    image = pyvips.Image.black(4, 4, bands=3).copy(interpretation="srgb")
    tagged = image.icc_transform(name, input_profile="srgb")
    data: bytes = tagged.get("icc-profile-data")
    return data


def test_builtin_srgb_profile_is_recognised() -> None:
    assert is_srgb_profile(_profile("srgb"))


def test_wide_gamut_and_cmyk_profiles_are_not_srgb() -> None:
    assert not is_srgb_profile(_profile("p3"))
    assert "p3" in icc_description(_profile("p3")).lower()
    assert not is_srgb_profile(_profile("cmyk"))


def test_garbage_is_not_srgb() -> None:
    assert not is_srgb_profile(b"\0" * 200)
    assert icc_description(b"short") == ""
