"""The HTTP surface: health, docs, resource shape, variant delivery, profiles, listing."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest

from . import images
from .conftest import (
    BUILT_IN_PROFILES,
    assert_done,
    assert_problem,
    get_variant,
    upload_and_wait,
    upload_ok,
    wait_done,
)


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints_answer_200(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 200


def test_docs_page_is_html(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")


def test_upload_returns_202_with_the_image_resource(client: httpx.Client) -> None:
    data = images.unique_png(seed=301, size=(200, 160))
    resource = upload_ok(client, data, "shape.png")

    for key in (
        "id",
        "status",
        "original",
        "variants",
        "metadata",
        "moderation",
        "created_at",
        "updated_at",
        "completed_at",
    ):
        assert key in resource, f"resource lacks {key}: {resource}"
    assert resource["status"] in ("pending", "processing", "done")
    expected_original = {
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "format": "png",
        "width": 200,
        "height": 160,
        "frames": 1,
    }
    assert {key: resource["original"].get(key) for key in expected_original} == expected_original
    assert set(resource["variants"]) == set(BUILT_IN_PROFILES)

    done = wait_done(client, resource["id"])
    assert_done(done)
    assert done["completed_at"]
    for variant in done["variants"].values():
        for key in ("status", "format", "width", "height", "bytes", "url", "error", "attempts"):
            assert key in variant, f"variant lacks {key}: {variant}"
        assert variant["error"] is None
        assert variant["attempts"] >= 1


def test_variant_is_served_as_cacheable_webp(client: httpx.Client) -> None:
    resource = upload_and_wait(client, images.unique_png(seed=302, size=(300, 200)), "cache.png")
    assert_done(resource)

    response = get_variant(client, resource["id"], "thumbnail")
    assert response.headers["content-type"] == "image/webp"
    assert response.headers.get("etag")
    assert response.headers.get("cache-control") == "public, max-age=31536000, immutable"
    assert len(response.content) == resource["variants"]["thumbnail"]["bytes"]
    # The advertised url serves the same bytes.
    by_url = client.get(resource["variants"]["thumbnail"]["url"], follow_redirects=True)
    assert by_url.status_code == 200
    assert by_url.content == response.content


def test_variant_requested_before_it_is_ready(client: httpx.Client) -> None:
    # A large noisy JPEG so the variant is very likely still queued; if the server was
    # faster than this request, the 200 must then be the finished variant.
    resource = upload_ok(client, images.noisy(1200, 1200, seed=303), "slow.jpg")
    response = client.get(f"/v1/images/{resource['id']}/variants/large")
    if response.status_code == 200:
        images.decode(response.content)
    else:
        assert_problem(response, 409, "not_ready")
    assert_done(wait_done(client, resource["id"]))


def test_upload_with_named_profiles_makes_only_those(client: httpx.Client) -> None:
    data = images.unique_png(seed=304, size=(300, 200))
    resource = upload_and_wait(client, data, "some.png", profiles="thumbnail,medium")

    assert_done(resource, profiles={"thumbnail", "medium"})
    assert_problem(client.get(f"/v1/images/{resource['id']}/variants/large"), 404, "not_found")


def _page(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/images", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def test_listing_is_newest_first_with_a_cursor(client: httpx.Client) -> None:
    ids = [
        upload_ok(client, images.unique_png(seed=310 + n), f"list-{n}.png")["id"] for n in range(3)
    ]

    first = _page(client, limit=2)
    assert [item["id"] for item in first["items"]] == [ids[2], ids[1]]
    assert isinstance(first["next_cursor"], str) and first["next_cursor"]

    second = _page(client, limit=2, cursor=first["next_cursor"])
    assert second["items"][0]["id"] == ids[0]

    # Walking every page visits each image once, newest first.
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = _page(client, limit=2, **({"cursor": cursor} if cursor else {}))
        assert len(page["items"]) <= 2
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    seen_ids = [item["id"] for item in seen]
    assert len(seen_ids) == len(set(seen_ids)), "an image listed twice"
    assert set(ids) <= set(seen_ids)
    created = [item["created_at"] for item in seen]
    assert created == sorted(created, reverse=True)
