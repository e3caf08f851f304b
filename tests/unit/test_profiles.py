"""Profiles are data: built-ins, a TOML file on top, validation that names the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgpipe.domain.errors import BadRequest
from imgpipe.domain.media import ImageFormat
from imgpipe.domain.profiles import ProfileSet
from imgpipe.domain.render_options import AUTO, Crop, Fit


def test_builtins_match_the_spec() -> None:
    profiles = ProfileSet.builtin().profiles
    assert [
        (p.name, p.options.width, p.options.height, p.options.fit) for p in profiles.values()
    ] == [
        ("thumbnail", 150, 150, Fit.COVER),
        ("medium", 800, 600, Fit.INSIDE),
        ("large", 1920, 1080, Fit.INSIDE),
    ]
    assert all(
        p.formats == (ImageFormat.WEBP,) and p.options.quality == 85 for p in profiles.values()
    )


def test_a_toml_file_adds_and_replaces_profiles(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(
        '[profiles.square]\nwidth = 400\nheight = 400\nfit = "cover"\ncrop = "attention"\n'
        'formats = ["webp", "avif"]\nquality = "auto"\n\n'
        "[profiles.medium]\nwidth = 640\nheight = 480\n"
    )
    profiles = ProfileSet.from_toml(path)
    square = profiles.profiles["square"]
    options = square.options
    assert (options.fit, options.crop, options.quality) == (Fit.COVER, Crop.ATTENTION, AUTO)
    assert [s.name for s in square.variants()] == ["square", "square.avif"]
    assert profiles.profiles["medium"].options.width == 640
    assert "large" in profiles.profiles


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("width = 0\nheight = 10", "width"),
        ('width = 10\nheight = 10\nfit = "stretch"', "fit"),
        ('width = 10\nheight = 10\nformats = ["gif"]', "formats"),
        ("width = 10\nheight = 10\nquality = 101", "quality"),
    ],
)
def test_bad_profiles_name_the_field(tmp_path: Path, table: str, message: str) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(f"[profiles.bad]\n{table}\n")
    with pytest.raises(ValueError, match=message):
        ProfileSet.from_toml(path)


def test_unknown_profile_names_are_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="huge"):
        ProfileSet.builtin().select(["medium", "huge"])


def test_digest_changes_with_anything_that_changes_the_output() -> None:
    medium = ProfileSet.builtin().profiles["medium"]
    from dataclasses import replace

    assert replace(medium, options=replace(medium.options, quality=80)).digest != medium.digest
    assert replace(medium, options=replace(medium.options, width=801)).digest != medium.digest
    assert replace(medium, options=replace(medium.options, blur=2.0)).digest != medium.digest
    assert replace(medium, name="other").digest == medium.digest
