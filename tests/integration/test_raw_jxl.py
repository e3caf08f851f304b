"""Camera RAW and JPEG XL uploads end to end; the format list the API and page publish."""

from __future__ import annotations

import httpx
import numpy as np
from PIL import Image

from imgpipe.domain.formats import FORMATS
from rawimages import bayer, dng, jxl, require_imagecodecs, scene

from . import images
from .conftest import assert_done, get_variant, upload_and_wait

RED = (200, 40, 40)


def _corner(image: Image.Image, x: int, y: int) -> tuple[float, ...]:
    return images.mean_colour(image.convert("RGB"), images.centre_box(x, y))


def test_a_dng_with_a_preview_becomes_variants_of_the_oriented_sensor_image(
    client: httpx.Client,
) -> None:
    # Sensor 1200x800 with a red top-left patch, shot rotated (EXIF 6: 90 degrees
    # clockwise); the DNG also carries a 60x40 all-blue preview, which must not be used.
    data = dng(
        bayer(scene(1200, 800)),
        orientation=6,
        preview=np.full((40, 60, 3), (0, 0, 255), np.uint8),
    )
    resource = upload_and_wait(client, data, "IMG_0001.DNG")
    assert_done(resource)
    assert resource["original"]["format"] == "dng"
    assert (resource["original"]["width"], resource["original"]["height"]) == (800, 1200)

    sizes = {"large": (720, 1080), "medium": (400, 600), "thumbnail": (150, 150)}
    for name, size in sizes.items():
        variant = images.decode(get_variant(client, resource["id"], name).content)
        assert variant.size == size, name
        assert (resource["variants"][name]["width"], resource["variants"][name]["height"]) == size
    large = images.decode(get_variant(client, resource["id"], "large").content)
    # Upright, the red patch is in the top-right corner; the rest is neutral grey.
    images.assert_colour(_corner(large, 700, 20), RED, 60, "top right")
    grey = _corner(large, 20, 1060)
    assert max(grey) - min(grey) < 25 and 60 < grey[0] < 200, grey


def test_a_bare_sensor_dng_is_processed_not_corrupt(client: httpx.Client) -> None:
    resource = upload_and_wait(client, dng(bayer(scene(640, 480))), "bare.dng")
    assert_done(resource)
    large = images.decode(get_variant(client, resource["id"], "large").content)
    assert large.size == (640, 480)
    images.assert_colour(_corner(large, 20, 20), RED, 60, "top left")


def test_a_jpeg_xl_is_processed_with_the_extra(client: httpx.Client) -> None:
    require_imagecodecs()
    rgb = np.zeros((700, 1000, 3), np.uint8)
    rgb[:, :500] = (220, 30, 30)
    rgb[:, 500:] = (30, 30, 220)
    resource = upload_and_wait(client, jxl(rgb, effort=3, distance=0.5), "photo.jxl")
    assert_done(resource)
    assert resource["original"]["format"] == "jxl"
    medium = images.decode(get_variant(client, resource["id"], "medium").content)
    assert medium.size == (800, 560)
    images.assert_colour(_corner(medium, 100, 280), (220, 30, 30), 20, "left")
    images.assert_colour(_corner(medium, 700, 280), (30, 30, 220), 20, "right")
    original = client.get(f"/v1/images/{resource['id']}/original")
    assert original.headers["content-type"] == "image/jxl"


def test_the_page_and_the_schema_list_every_format_from_the_registry(
    client: httpx.Client,
) -> None:
    page = client.get("/").text
    schema = client.get("/openapi.json").json()
    upload = schema["paths"]["/v1/images"]["post"]["requestBody"]["content"]
    described = upload["multipart/form-data"]["schema"]["properties"]["file"]["description"]
    for spec in FORMATS.values():
        assert spec.name in page and spec.name in described, spec.name
        assert f".{spec.extensions[0]}" in page, spec.name
    assert "{{" not in page
