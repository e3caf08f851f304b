"""GET /v1/images/{id}/similar: near-duplicates by pHash, on every backend."""

from __future__ import annotations

import functools
from typing import Any

import httpx
import numpy as np

import photolike
from imgpipe.domain.similarity import DEFAULT_MAX_DISTANCE, MAX_DISTANCE

from .conftest import assert_problem, upload_and_wait


@functools.cache
def _scene(seed: int) -> np.ndarray:
    return photolike.scene(seed, width=900, height=600)


def _copies(rgb: np.ndarray) -> dict[str, bytes]:
    """What users upload again: resized, re-encoded, brightened, lightly cropped."""
    height, width = rgb.shape[:2]
    half = photolike.to_vips(rgb).resize(0.5)
    brighter = np.clip(rgb.astype(np.float64) * 1.15 + 8, 0, 255).astype(np.uint8)
    dy, dx = round(height * 0.04), round(width * 0.04)
    return {
        "resized.jpg": bytes(half.write_to_buffer(".jpg", Q=85)),
        "reencoded.webp": photolike.encode(rgb, ".webp", Q=50),
        "brighter.png": photolike.encode(brighter),
        "cropped.jpg": photolike.encode(rgb[dy : height - dy, dx : width - dx], ".jpg", Q=90),
    }


def _similar(client: httpx.Client, image_id: str, **params: Any) -> dict[str, Any]:
    response = client.get(f"/v1/images/{image_id}/similar", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_copies_are_found_nearest_first_and_other_pictures_are_not(client: httpx.Client) -> None:
    scene = _scene(32)
    original = upload_and_wait(client, photolike.encode(scene, ".jpg", Q=92), "scene.jpg")
    copies = {
        name: upload_and_wait(client, data, name)["id"] for name, data in _copies(scene).items()
    }
    other = upload_and_wait(client, photolike.encode(_scene(31), ".jpg", Q=92), "other.jpg")

    body = _similar(client, original["id"])
    assert body["image_id"] == original["id"] and body["max_distance"] == DEFAULT_MAX_DISTANCE
    found = {item["image"]["id"]: item["distance"] for item in body["items"]}
    missing = {name: i for name, i in copies.items() if i not in found}
    assert not missing, f"copies not found: {missing}; found {found}"
    assert other["id"] not in found and original["id"] not in found
    distances = [item["distance"] for item in body["items"]]
    assert distances == sorted(distances) and max(distances) <= DEFAULT_MAX_DISTANCE
    # Each item is the full image resource, as GET /v1/images/{id} shows it.
    first = body["items"][0]["image"]
    assert first == client.get(f"/v1/images/{first['id']}").json()

    # From a copy, the original is found as well (the distance is symmetric).
    back = _similar(client, copies["resized.jpg"])
    assert original["id"] in {item["image"]["id"] for item in back["items"]}


def test_max_distance_narrows_and_the_same_bytes_are_distance_zero(client: httpx.Client) -> None:
    data = photolike.encode(_scene(33), ".jpg", Q=90)
    first = upload_and_wait(client, data, "a.jpg")
    again = upload_and_wait(client, data, "b.jpg")
    brighter = upload_and_wait(client, _copies(_scene(33))["brighter.png"], "c.png")

    exact = _similar(client, first["id"], max_distance=0)
    ids = [item["image"]["id"] for item in exact["items"]]
    assert again["id"] in ids and all(item["distance"] == 0 for item in exact["items"])
    loose = _similar(client, first["id"], max_distance=MAX_DISTANCE, limit=200)
    by_id = {item["image"]["id"]: item["distance"] for item in loose["items"]}
    assert again["id"] in by_id and brighter["id"] in by_id
    limited = _similar(client, first["id"], max_distance=MAX_DISTANCE, limit=1)
    assert len(limited["items"]) == 1 and limited["items"][0]["distance"] == 0


def test_bad_parameters_and_unknown_images(client: httpx.Client) -> None:
    image = upload_and_wait(client, photolike.encode(_scene(34)[:200, :300]), "small.png")
    for params in (
        {"max_distance": -1},
        {"max_distance": MAX_DISTANCE + 1},
        {"max_distance": "near"},
        {"limit": 0},
        {"limit": 201},
    ):
        response = client.get(f"/v1/images/{image['id']}/similar", params=params)
        assert_problem(response, 400, "bad_request")
    assert_problem(client.get("/v1/images/img_doesnotexist/similar"), 404, "not_found")


def test_the_resource_carries_palette_thumbhash_and_quality(client: httpx.Client) -> None:
    image = upload_and_wait(client, photolike.encode(_scene(35), ".jpg", Q=80), "meta.jpg")
    metadata = image["metadata"]
    assert metadata["dominant_colors"] == [s["hex"] for s in metadata["palette"]]
    assert 0 < sum(s["share"] for s in metadata["palette"]) <= 1.0001
    assert isinstance(metadata["thumbhash"], str) and len(metadata["thumbhash"]) >= 20
    quality = metadata["quality"]
    assert quality["jpeg_quality"] == 80 and 0 <= quality["score"] <= 100, quality
    assert set(quality) >= {"score", "sharpness", "exposure", "noise", "jpeg_quality"}
