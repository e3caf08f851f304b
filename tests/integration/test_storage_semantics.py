"""Originals are kept byte-exact and once; variants are deterministic; delete removes."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import httpx

from . import images
from .conftest import (
    BUILT_IN_PROFILES,
    TERMINAL_STATUSES,
    ImgpipeServer,
    assert_done,
    assert_problem,
    get_variant,
    upload_and_wait,
    upload_ok,
    wait_done,
)


def _variant_bytes(client: httpx.Client, image_id: str) -> dict[str, bytes]:
    return {name: get_variant(client, image_id, name).content for name in BUILT_IN_PROFILES}


def _stored_originals(server: ImgpipeServer, sha256: str) -> list[str]:
    """Keys under originals/ whose path (shards joined) contains the sha256."""
    return [
        key for key in server.stored_keys() if "original" in key and sha256 in key.replace("/", "")
    ]


def _files_mentioning(server: ImgpipeServer, sha256: str) -> list[str]:
    return [key for key in server.stored_keys() if sha256 in key.replace("/", "")]


def _reprocess_and_wait(
    client: httpx.Client, resource: dict[str, Any], **kw: Any
) -> dict[str, Any]:
    """POST reprocess (202) and wait until a new completion is recorded."""
    before = resource["completed_at"]
    response = client.post(f"/v1/images/{resource['id']}/reprocess", **kw)
    assert response.status_code == 202, f"reprocess: {response.status_code} {response.text}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        current = client.get(f"/v1/images/{resource['id']}").json()
        if current["status"] in TERMINAL_STATUSES and current["completed_at"] != before:
            return dict(current)
        time.sleep(0.1)
    raise AssertionError(f"reprocess never recorded a new completion: {current}")


def test_original_is_returned_byte_exact(client: httpx.Client) -> None:
    data = images.gps_jpeg()  # metadata and all: the original is never altered
    resource = upload_and_wait(client, data, "exact.jpg")

    response = client.get(f"/v1/images/{resource['id']}/original")
    assert response.status_code == 200
    assert response.content == data


def test_same_bytes_twice_store_one_original(client: httpx.Client, server: ImgpipeServer) -> None:
    data = images.unique_png(seed=901, size=(320, 240))
    sha = hashlib.sha256(data).hexdigest()
    first = upload_and_wait(client, data, "a.png")
    second = upload_and_wait(client, data, "b.png")

    assert first["original"]["sha256"] == second["original"]["sha256"] == sha
    stored = _stored_originals(server, sha)
    assert len(stored) == 1, f"originals stored for {sha}: {stored}"
    for resource in (first, second):
        assert client.get(f"/v1/images/{resource['id']}/original").content == data


def test_deleting_one_of_two_duplicates_keeps_the_other_whole(client: httpx.Client) -> None:
    data = images.unique_png(seed=902, size=(320, 240))
    first = upload_and_wait(client, data, "keep.png")
    second = upload_ok(client, data, "delete.png")
    if second["id"] == first["id"]:
        return  # deduplicated to the same image: nothing shared to protect
    wait_done(client, second["id"])

    assert client.delete(f"/v1/images/{second['id']}").status_code == 204

    assert client.get(f"/v1/images/{first['id']}/original").content == data
    assert_done(wait_done(client, first["id"]))
    for name in BUILT_IN_PROFILES:
        images.decode(get_variant(client, first["id"], name).content)


def test_same_bytes_uploaded_twice_give_identical_variants(client: httpx.Client) -> None:
    data = images.noisy(900, 650, seed=903)
    first = upload_and_wait(client, data, "det-1.jpg")
    second = upload_and_wait(client, data, "det-2.jpg")
    assert_done(first)
    assert_done(second)

    assert first["original"]["sha256"] == second["original"]["sha256"]
    assert _variant_bytes(client, second["id"]) == _variant_bytes(client, first["id"])


def test_reprocessing_all_profiles_gives_identical_bytes(client: httpx.Client) -> None:
    resource = upload_and_wait(client, images.noisy(900, 650, seed=905), "again.jpg")
    assert_done(resource)
    before = _variant_bytes(client, resource["id"])

    resource = _reprocess_and_wait(client, resource)
    assert_done(resource)
    assert _variant_bytes(client, resource["id"]) == before

    # Safe to repeat.
    assert_done(_reprocess_and_wait(client, resource))
    assert _variant_bytes(client, resource["id"]) == before


def test_reprocessing_one_profile_gives_identical_bytes(client: httpx.Client) -> None:
    # Same original, same profile: the output must not depend on which other profiles
    # happen to be rendered in the same job.
    resource = upload_and_wait(client, images.noisy(900, 650, seed=906), "one.jpg")
    assert_done(resource)
    before = _variant_bytes(client, resource["id"])

    for name in BUILT_IN_PROFILES:
        resource = _reprocess_and_wait(client, resource, json={"profiles": [name]})
        assert_done(resource)
        after = _variant_bytes(client, resource["id"])
        changed = [profile for profile in before if after[profile] != before[profile]]
        assert changed == [], f"reprocessing only {name!r} changed the bytes of {changed}"


def test_delete_removes_image_variants_and_stored_files(
    client: httpx.Client, server: ImgpipeServer
) -> None:
    data = images.unique_png(seed=904, size=(320, 240))
    sha = hashlib.sha256(data).hexdigest()
    resource = upload_and_wait(client, data, "gone.png")
    image_id = resource["id"]
    assert _files_mentioning(server, sha), "nothing stored before delete?"

    response = client.delete(f"/v1/images/{image_id}")
    assert response.status_code == 204, response.text

    assert_problem(client.get(f"/v1/images/{image_id}"), 404, "not_found")
    assert_problem(client.get(f"/v1/images/{image_id}/original"), 404, "not_found")
    assert_problem(client.get(f"/v1/images/{image_id}/variants/thumbnail"), 404, "not_found")
    assert_problem(client.delete(f"/v1/images/{image_id}"), 404, "not_found")
    # Hidden at once, purged by the sweep once DELETE_RETENTION_S (0 here) has passed.
    swept = server.cli("storage", "sweep")
    assert swept.returncode == 0, swept.stderr
    assert _files_mentioning(server, sha) == [], "original or variants left in storage"
