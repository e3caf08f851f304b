"""Direct-to-storage uploads: announce, send the bytes where told, complete."""

from __future__ import annotations

from typing import Any

import httpx

from . import images
from .conftest import MAX_UPLOAD_BYTES, assert_done, assert_problem, wait_done


def _announce(client: httpx.Client, size: int) -> dict[str, Any]:
    response = client.post(
        "/v1/uploads", json={"filename": "big.jpg", "content_type": "image/jpeg", "bytes": size}
    )
    assert response.status_code == 201, response.text
    ticket: dict[str, Any] = response.json()
    assert ticket["image_id"].startswith("img_")
    assert ticket["upload"]["method"] in ("PUT", "POST")
    return ticket


def _send(ticket: dict[str, Any], data: bytes) -> httpx.Response:
    """Upload as a client would: a presigned POST form, or a PUT to the signed URL."""
    upload = ticket["upload"]
    if upload["method"] == "POST":
        return httpx.post(
            upload["url"], data=upload["fields"], files={"file": ("big.jpg", data)}, timeout=30
        )
    return httpx.put(upload["url"], content=data, headers=upload["headers"], timeout=30)


def test_a_direct_upload_becomes_an_image(client: httpx.Client) -> None:
    data = images.noisy(1200, 900, seed=901)
    ticket = _announce(client, len(data))
    assert _send(ticket, data).status_code in (200, 201, 204)

    accepted = client.post(f"/v1/images/{ticket['image_id']}/complete")
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["id"] == ticket["image_id"]
    resource = wait_done(client, ticket["image_id"])
    assert_done(resource)
    assert resource["original"]["bytes"] == len(data)
    assert resource["original"]["filename"] == "big.jpg"  # the announced name, not the key's
    original = client.get(f"/v1/images/{ticket['image_id']}/original")
    assert original.content == data

    again = client.post(f"/v1/images/{ticket['image_id']}/complete")
    assert again.status_code == 202 and again.json()["id"] == ticket["image_id"]


def test_complete_before_the_bytes_arrive_is_a_conflict(client: httpx.Client) -> None:
    ticket = _announce(client, 1000)
    assert_problem(client.post(f"/v1/images/{ticket['image_id']}/complete"), 409, "upload_missing")


def test_announcing_more_than_the_limit_is_refused(client: httpx.Client) -> None:
    response = client.post("/v1/uploads", json={"filename": "x.jpg", "bytes": MAX_UPLOAD_BYTES + 1})
    assert_problem(response, 413, "too_large")


def test_complete_validates_content_like_any_upload(client: httpx.Client) -> None:
    ticket = _announce(client, 64)
    assert _send(ticket, b"<svg xmlns='http://www.w3.org/2000/svg'></svg>").status_code < 300
    response = client.post(f"/v1/images/{ticket['image_id']}/complete")
    assert_problem(response, 415, "unsupported_type")
    assert client.get(f"/v1/images/{ticket['image_id']}").status_code == 404


def test_complete_rechecks_the_size_whatever_the_store_allowed(client: httpx.Client) -> None:
    ticket = _announce(client, 100)
    body = images.oversized_jpeg(MAX_UPLOAD_BYTES + 4096)
    sent = _send(ticket, body)
    if sent.status_code < 300:  # the store took it: complete must still refuse
        assert_problem(client.post(f"/v1/images/{ticket['image_id']}/complete"), 413, "too_large")
    else:  # refused on the way in: by the API (413) or the store's size policy
        assert sent.status_code in (400, 403, 413)


def test_a_tampered_upload_url_is_refused(client: httpx.Client) -> None:
    ticket = _announce(client, 100)
    upload = ticket["upload"]
    if upload["method"] != "PUT":
        return  # an S3 presigned POST is the store's to check, covered by the S3 contract
    forged = upload["url"].replace("sig=", "sig=A")
    assert_problem(httpx.put(forged, content=b"x" * 100), 403, "bad_signature")
