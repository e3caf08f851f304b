"""Variants are upright, in sRGB, and keep transparency."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest
from PIL import Image, ImageCms

from . import images
from .conftest import assert_done, assert_size, get_variant, upload_and_wait


def _is_red(colour: tuple[float, ...]) -> bool:
    return colour[0] > 150 and colour[2] < 100


def _is_blue(colour: tuple[float, ...]) -> bool:
    return colour[2] > 150 and colour[0] < 100


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_to_pixels(client: httpx.Client, orientation: int) -> None:
    data = images.oriented_jpeg(orientation)
    # The generator itself: an EXIF-aware viewer shows the upright reference.
    viewed = images.viewer_upright(data)
    assert viewed.size == images.ORIENTED_SIZE
    assert _is_red(images.mean_colour(viewed, images.centre_box(40, 20)))

    resource = upload_and_wait(client, data, f"orientation-{orientation}.jpg")

    assert_done(resource)
    stored = Image.open(io.BytesIO(data)).size
    assert (resource["original"]["width"], resource["original"]["height"]) == stored

    width, height = images.ORIENTED_SIZE
    for profile in ("medium", "large"):
        variant = images.decode(get_variant(client, resource["id"], profile).content).convert("RGB")
        assert_size(variant.size, (width, height), f"{profile} (upright landscape)")
        top_left = images.mean_colour(variant, images.centre_box(width // 10, height // 10))
        top_right = images.mean_colour(variant, images.centre_box(9 * width // 10, height // 10))
        bottom_left = images.mean_colour(variant, images.centre_box(width // 10, 9 * height // 10))
        bottom_right = images.mean_colour(
            variant, images.centre_box(9 * width // 10, 9 * height // 10)
        )
        assert _is_red(top_left), f"{profile}: top-left should be red, is {top_left}"
        for name, colour in [
            ("top-right", top_right),
            ("bottom-left", bottom_left),
            ("bottom-right", bottom_right),
        ]:
            assert _is_blue(colour), f"{profile}: {name} should be blue, is {colour}"
    thumbnail = images.decode(get_variant(client, resource["id"], "thumbnail").content)
    assert thumbnail.size == (150, 150)


def _assert_untagged_or_srgb(variant: Image.Image) -> None:
    icc = variant.info.get("icc_profile")
    if icc:
        description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
        assert "srgb" in description.lower(), f"variant tagged with {description!r}, not sRGB"


def _variant_centre_colour(
    client: httpx.Client, resource: dict[str, Any], profile: str = "medium"
) -> tuple[float, ...]:
    variant = images.decode(get_variant(client, resource["id"], profile).content)
    _assert_untagged_or_srgb(variant)
    assert variant.mode in ("RGB", "RGBA"), variant.mode
    width, height = variant.size
    return images.mean_colour(variant.convert("RGB"), images.centre_box(width // 2, height // 2))


def test_cmyk_jpeg_without_profile_becomes_process_cyan(client: httpx.Client) -> None:
    # 100% cyan ink. Through any CMYK press profile it is a mid blue-cyan around (0, 160, 230);
    # naive arithmetic gives (0, 255, 255) and a missed Adobe inversion gives red.
    resource = upload_and_wait(client, images.cmyk_jpeg((255, 0, 0, 0)), "cyan.jpg")

    assert_done(resource)
    actual = _variant_centre_colour(client, resource)
    images.assert_colour(actual, (0, 158, 228), 30, "CMYK cyan")


def test_cmyk_jpeg_with_embedded_profile_is_converted_through_it(client: httpx.Client) -> None:
    data = images.cmyk_jpeg_with_profile((90, 160, 70))
    expected = images.expected_srgb_by_intent(data, (160, 120))
    resource = upload_and_wait(client, data, "cmyk-profile.jpg")

    assert_done(resource)
    actual = _variant_centre_colour(client, resource)
    # Naive CMYK -> RGB of these inks is about (92, 230, 25): far outside this tolerance.
    images.assert_colour_any(actual, expected, 8, "CMYK with ICC profile")


def test_display_p3_jpeg_is_converted_to_srgb(client: httpx.Client) -> None:
    values = (40, 180, 60)
    data = images.tagged_jpeg(values, "p3")
    expected = images.expected_srgb_by_intent(data, (160, 120))
    # The test only means something if P3 and sRGB readings of these numbers differ visibly.
    assert all(images.colour_distance(colour, values) > 20 for colour in expected.values())

    resource = upload_and_wait(client, data, "display-p3.jpg")

    assert_done(resource)
    actual = _variant_centre_colour(client, resource)
    images.assert_colour_any(actual, expected, 8, "P3 green converted to sRGB")


def test_transparent_png_keeps_alpha_in_webp(client: httpx.Client) -> None:
    resource = upload_and_wait(client, images.rgba_png(), "alpha.png")

    assert_done(resource)
    variant = images.decode(get_variant(client, resource["id"], "medium").content)
    assert variant.size == images.ALPHA_SIZE
    assert variant.mode == "RGBA", f"alpha lost: mode {variant.mode}"
    width, height = variant.size
    transparent = images.mean_colour(variant, images.centre_box(width // 6, height // 2))
    half = images.mean_colour(variant, images.centre_box(width // 2, height // 2))
    opaque = images.mean_colour(variant, images.centre_box(5 * width // 6, height // 2))
    assert transparent[3] == 0, f"transparent area has alpha {transparent[3]}"
    assert abs(half[3] - images.HALF_ALPHA) <= 8, f"half-transparent area has alpha {half[3]}"
    assert opaque[3] == 255, f"opaque area has alpha {opaque[3]}"
    # Colour under partial alpha must not be darkened (a premultiplication slip) or flattened.
    images.assert_colour(half[:3], images.GREEN, 20, "half-transparent green")
    images.assert_colour(opaque[:3], images.GREEN, 20, "opaque green")
