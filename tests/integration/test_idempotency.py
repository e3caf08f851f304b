"""Idempotency-Key on POST /v1/images: a retry returns the first image; another body is 409."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx

from . import images
from .conftest import assert_problem


def _page(client: httpx.Client, **params: Any) -> dict[str, Any]:
    response = client.get("/v1/images", params=params)
    assert response.status_code == 200, response.text
    page: dict[str, Any] = response.json()
    return page


def test_retried_upload_with_the_same_idempotency_key_makes_one_image(
    client: httpx.Client,
) -> None:
    data = images.unique_png(seed=320)
    files = {"file": ("retry.png", data, "image/png")}
    headers = {"Idempotency-Key": "retry-320-a1b2c3"}

    first = client.post("/v1/images", files=files, headers=headers)
    again = client.post("/v1/images", files=files, headers=headers)

    assert first.status_code == 202, first.text
    assert again.status_code == first.status_code, again.text
    assert again.json()["id"] == first.json()["id"]
    sha = hashlib.sha256(data).hexdigest()
    newest = _page(client, limit=2)["items"]
    assert [item["original"]["sha256"] for item in newest].count(sha) == 1, "listed twice"


def test_the_same_key_with_another_body_is_a_conflict(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "conflict-321"}
    first = client.post(
        "/v1/images",
        files={"file": ("a.png", images.unique_png(seed=321), "image/png")},
        headers=headers,
    )
    assert first.status_code == 202, first.text
    other_file = client.post(
        "/v1/images",
        files={"file": ("a.png", images.unique_png(seed=322), "image/png")},
        headers=headers,
    )
    assert_problem(other_file, 409, "idempotency_conflict")
    other_fields = client.post(
        "/v1/images",
        files={"file": ("a.png", images.unique_png(seed=321), "image/png")},
        data={"profiles": "thumbnail"},
        headers=headers,
    )
    assert_problem(other_fields, 409, "idempotency_conflict")


def test_a_refused_upload_frees_its_key(client: httpx.Client) -> None:
    headers = {"Idempotency-Key": "refused-323"}
    refused = client.post(
        "/v1/images", files={"file": ("x.svg", images.svg(), "image/svg+xml")}, headers=headers
    )
    assert_problem(refused, 415, "unsupported_type")
    fixed = client.post(
        "/v1/images",
        files={"file": ("x.png", images.unique_png(seed=323), "image/png")},
        headers=headers,
    )
    assert fixed.status_code == 202, fixed.text


def test_without_a_key_every_upload_is_a_new_image(client: httpx.Client) -> None:
    data = images.unique_png(seed=324)
    files = {"file": ("twice.png", data, "image/png")}
    ids = {client.post("/v1/images", files=files).json()["id"] for _ in range(2)}
    assert len(ids) == 2


def test_a_bad_key_is_a_bad_request(client: httpx.Client) -> None:
    response = client.post(
        "/v1/images",
        files={"file": ("x.png", images.unique_png(seed=325), "image/png")},
        headers={"Idempotency-Key": "x" * 256},
    )
    assert_problem(response, 400, "bad_request")
