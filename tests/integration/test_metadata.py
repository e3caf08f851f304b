"""Variants carry no metadata; the resource's EXIF summary has no location."""

from __future__ import annotations

import json
from typing import Any

import httpx

from . import images
from .conftest import BUILT_IN_PROFILES, assert_done, get_variant, upload_and_wait


def _keys(value: Any) -> list[str]:
    """Every key of every mapping nested in value."""
    if isinstance(value, dict):
        return [str(k) for k in value] + [k for v in value.values() for k in _keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_variants_strip_exif_gps_and_xmp(client: httpx.Client) -> None:
    data = images.gps_jpeg()
    assert b"GPS" in data and b"Exif" in data  # the upload really carries a location
    resource = upload_and_wait(client, data, "holiday.jpg")

    assert_done(resource)
    for profile in BUILT_IN_PROFILES:
        body = get_variant(client, resource["id"], profile).content
        variant = images.decode(body)
        assert dict(variant.getexif()) == {}, f"{profile} has EXIF {dict(variant.getexif())}"
        for marker in (b"Exif", b"EXIF", b"GPS", b"XMP ", b"xmpmeta", images.CAMERA_MAKE.encode()):
            assert marker not in body, f"{profile} contains {marker!r}"


def test_resource_exif_has_no_gps(client: httpx.Client) -> None:
    resource = upload_and_wait(client, images.gps_jpeg(), "holiday-2.jpg")

    exif = resource["metadata"]["exif"]
    gps_keys = [key for key in _keys(exif) if "gps" in key.lower()]
    assert gps_keys == [], f"metadata.exif exposes {gps_keys}"
    text = json.dumps(exif)
    assert "52.0" not in text and "30.5" not in text and "10.25" not in text, text


def test_resource_exif_keeps_camera_fields(client: httpx.Client) -> None:
    # Sanitised, not emptied: a user still sees which camera took the photo.
    resource = upload_and_wait(client, images.gps_jpeg(), "holiday-3.jpg")

    assert images.CAMERA_MAKE in json.dumps(resource["metadata"]["exif"]), resource["metadata"]
