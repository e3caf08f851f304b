"""Every accepted input format is processed into upright, correctly sized WebP variants."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest
from PIL import Image

from . import images
from .conftest import (
    BUILT_IN_PROFILES,
    assert_done,
    assert_size,
    expected_size,
    get_variant,
    upload_and_wait,
)

SOURCE_SIZE = (1000, 700)

STILL_FORMATS: list[object] = [
    *(
        pytest.param(fmt, lambda fmt=fmt: images.still(fmt, *SOURCE_SIZE), id=fmt)
        for fmt in ("jpeg", "png", "webp", "gif", "tiff", "avif", "bmp")
    ),
    pytest.param("heic", lambda: images.heic_still(*SOURCE_SIZE), id="heic"),
]


def _check_quadrants(image: Image.Image, profile: str) -> None:
    """The four colour quadrants are where they were (the variant is the same picture)."""
    width, height = image.size
    rgb = image.convert("RGB")
    points = [
        (width // 4, height // 4),
        (3 * width // 4, height // 4),
        (width // 4, 3 * height // 4),
        (3 * width // 4, 3 * height // 4),
    ]
    for (x, y), colour in zip(points, images.QUADRANT_COLOURS, strict=True):
        images.assert_colour(
            images.mean_colour(rgb, images.centre_box(x, y)), colour, 20, f"{profile} at {x},{y}"
        )


@pytest.mark.parametrize(("fmt", "make"), STILL_FORMATS)
def test_still_format_becomes_three_webp_variants(
    client: httpx.Client, fmt: str, make: Callable[[], bytes]
) -> None:
    data = make()
    resource = upload_and_wait(client, data, f"photo.{fmt}")

    assert_done(resource)
    original = resource["original"]
    assert original["format"] == fmt
    assert original["sha256"] == hashlib.sha256(data).hexdigest()
    assert original["bytes"] == len(data)
    assert (original["width"], original["height"]) == SOURCE_SIZE
    assert original["frames"] == 1

    for profile in BUILT_IN_PROFILES:
        body = get_variant(client, resource["id"], profile).content
        image = images.decode(body)
        assert image.format == "WEBP", f"{profile} is {image.format}"
        expected = expected_size(profile, *SOURCE_SIZE)
        assert_size(image.size, expected, profile)
        variant = resource["variants"][profile]
        assert variant["format"] == "webp"
        assert (variant["width"], variant["height"]) == image.size
        assert variant["bytes"] == len(body)
        _check_quadrants(image, profile)


@pytest.mark.parametrize("fmt", ["gif", "webp"])
def test_animation_stays_animated_with_every_frame(client: httpx.Client, fmt: str) -> None:
    data = images.animated(fmt, size=(320, 240))
    frame_count = len(images.FRAME_COLOURS)
    resource = upload_and_wait(client, data, f"anim.{fmt}")

    assert_done(resource)
    assert resource["original"]["format"] == fmt
    assert resource["original"]["frames"] == frame_count

    for profile in BUILT_IN_PROFILES:
        image = images.decode(get_variant(client, resource["id"], profile).content)
        assert image.format == "WEBP"
        assert getattr(image, "n_frames", 1) == frame_count, f"{profile}: frames lost"
        assert_size(image.size, expected_size(profile, 320, 240), profile)
        width, height = image.size
        for index, colour in enumerate(images.FRAME_COLOURS):
            image.seek(index)
            actual = images.mean_colour(
                image.convert("RGB"), images.centre_box(width // 2, height // 2)
            )
            images.assert_colour(actual, colour, 20, f"{profile} frame {index}")


def test_image_smaller_than_every_box_is_never_upscaled(client: httpx.Client) -> None:
    data = images.still("png", 40, 30)
    resource = upload_and_wait(client, data, "tiny.png")

    assert_done(resource)
    # fit keeps the source's size; cover keeps the box's shape at the largest size that
    # needs no upscaling (the 150x150 thumbnail of 40x30 is 30x30).
    expected = {"thumbnail": (30, 30), "medium": (40, 30), "large": (40, 30)}
    for profile in BUILT_IN_PROFILES:
        image = images.decode(get_variant(client, resource["id"], profile).content)
        assert image.size == expected[profile], f"{profile} is {image.size}, source is 40x30"
        assert (
            resource["variants"][profile]["width"],
            resource["variants"][profile]["height"],
        ) == expected[profile]
