"""Delivery from the store and a CDN (issue 14): object headers, public URLs, redirects.

Against a real `imgpipe serve` whose store is a bucket on the moto S3 server; headers are
read back with boto3, public URLs fetched with no key as a browser or CDN would.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from imgpipe.engine.render_source import SOURCE_VERSION
from imgpipe.storage import keys
from s3server import AWS_TEST_ENV

from . import images
from .conftest import (
    ImgpipeServer,
    _s3_settings,
    assert_done,
    assert_problem,
    upload_and_wait,
    wait_for_key,
)

IMMUTABLE = "public, max-age=31536000, immutable"


def s3_client(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=AWS_TEST_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_TEST_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS_TEST_ENV["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}),
    )


def bucket_of(settings: dict[str, str]) -> tuple[str, str]:
    """(bucket, prefix) of an s3:// IMGPIPE_STORAGE_URL."""
    rest = settings["IMGPIPE_STORAGE_URL"].removeprefix("s3://")
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix


@pytest.fixture
def s3_serve(tmp_path: Path, s3_endpoint: str) -> Iterator[Callable[..., ImgpipeServer]]:
    """Start `imgpipe serve` on a fresh bucket of the moto server, with extra settings."""
    started: list[ImgpipeServer] = []

    def start(extra: dict[str, str] | None = None, name: str = "data") -> ImgpipeServer:
        settings, lister = _s3_settings(s3_endpoint)
        settings.update(extra or {})
        server = ImgpipeServer(tmp_path / name, settings=settings, list_objects=lister)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _head(endpoint: str, settings: dict[str, str], key: str) -> dict[str, Any]:
    bucket, prefix = bucket_of(settings)
    answer: dict[str, Any] = s3_client(endpoint).head_object(Bucket=bucket, Key=f"{prefix}/{key}")
    return answer


def _variant_key(server: ImgpipeServer, sha: str, ext: str) -> str:
    return next(
        k
        for k in server.stored_keys()
        if k.startswith("variants/") and sha in k and k.endswith(ext)
    )


def test_objects_carry_their_type_and_caching_and_fix_metadata_repairs_old_ones(
    s3_serve: Callable[..., ImgpipeServer], s3_endpoint: str
) -> None:
    server = s3_serve()
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        resource = upload_and_wait(client, images.unique_png(seed=1401, size=(640, 480)), "a.png")
        assert_done(resource)
        sha = resource["original"]["sha256"]
        # Renders need a signature: `imgpipe sign` with the server's own key.
        signed = server.cli("sign", f"/v1/render/{resource['id']}.jpg?w=64").stdout.strip()
        render = client.get(signed)
        assert render.status_code == 200, render.text

        original = _head(s3_endpoint, server.settings, f"originals/{sha[:2]}/{sha}")
        assert original["ContentType"] == "image/png"
        assert original["CacheControl"] == "private, max-age=0, no-store"
        assert original["ContentDisposition"] == "attachment"
        # The API answers with the same headers the bucket would.
        from_api = client.get(f"/v1/images/{resource['id']}/original")
        assert from_api.headers["content-type"] == "image/png"
        assert from_api.headers["content-disposition"] == "attachment"

        variant_key = _variant_key(server, sha, ".webp")
        variant = _head(s3_endpoint, server.settings, variant_key)
        assert (variant["ContentType"], variant["CacheControl"]) == ("image/webp", IMMUTABLE)
        render_key = next(
            k
            for k in server.stored_keys()
            if k.startswith("renders/") and k.endswith(".jpg") and "source-v" not in k
        )
        rendered = _head(s3_endpoint, server.settings, render_key)
        assert (rendered["ContentType"], rendered["CacheControl"]) == ("image/jpeg", IMMUTABLE)

        # An object written before this release: binary/octet-stream, no caching headers.
        bucket, prefix = bucket_of(server.settings)
        s3 = s3_client(s3_endpoint)
        body = s3.get_object(Bucket=bucket, Key=f"{prefix}/{variant_key}")["Body"].read()
        s3.put_object(Bucket=bucket, Key=f"{prefix}/{variant_key}", Body=body)
        assert _head(s3_endpoint, server.settings, variant_key)["ContentType"] != "image/webp"

        fixed = server.cli("storage", "fix-metadata")
        assert fixed.returncode == 0, fixed.stderr
        assert "1 object(s)" in fixed.stderr, fixed.stderr
        variant = _head(s3_endpoint, server.settings, variant_key)
        assert (variant["ContentType"], variant["CacheControl"]) == ("image/webp", IMMUTABLE)
        again = server.cli("storage", "fix-metadata")
        assert "0 object(s)" in again.stderr, again.stderr  # nothing left to repair
        assert client.get(f"/v1/images/{resource['id']}/variants/medium").content == body


def test_render_sources_are_private_whichever_the_worker_made(
    s3_serve: Callable[..., ImgpipeServer], s3_endpoint: str
) -> None:
    """Both copies the worker stores (the base one with the variants, the large one after
    the job) carry the headers the render path gives them: the original's pixels, private
    and never cached; so `fix-metadata` finds nothing to repair."""
    server = s3_serve()
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        data = images.progressive_noisy(3900, 2200, seed=1402)  # gets both copies
        resource = upload_and_wait(client, data, "big.jpg")
        assert_done(resource)
        sha = resource["original"]["sha256"]
        large = keys.render_source(sha, SOURCE_VERSION, large=True)
        wait_for_key(server, large)
        for key in (keys.render_source(sha, SOURCE_VERSION), large):
            head = _head(s3_endpoint, server.settings, key)
            assert (head["ContentType"], head["CacheControl"]) == (
                "image/jpeg",
                "private, max-age=0, no-store",
            ), key
        fixed = server.cli("storage", "fix-metadata")
        assert fixed.returncode == 0, fixed.stderr
        assert "0 object(s)" in fixed.stderr, fixed.stderr


def test_public_url_in_front_of_the_bucket_is_the_object_under_the_base(
    s3_serve: Callable[..., ImgpipeServer], s3_endpoint: str
) -> None:
    # The moto server itself plays the CDN in front of the bucket: path-style, no key.
    probe_settings, _ = _s3_settings(s3_endpoint)
    bucket, _ = bucket_of(probe_settings)
    # What an operator does for a CDN in front of a bucket: variants (and renders) readable
    # without credentials; originals not.
    public_read = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": [f"arn:aws:s3:::{bucket}/run/variants/*"],
            }
        ],
    }
    s3_client(s3_endpoint).put_bucket_policy(Bucket=bucket, Policy=json.dumps(public_read))
    server = s3_serve(
        {
            **probe_settings,
            "IMGPIPE_PUBLIC_BASE_URL": f"{s3_endpoint}/{bucket}",
            "IMGPIPE_PUBLIC_URL_MODE": "bucket",
        }
    )
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        resource = upload_and_wait(client, images.unique_png(seed=1402, size=(500, 400)), "b.png")
        variant = resource["variants"]["thumbnail"]
        sha = resource["original"]["sha256"]
        assert variant["public_url"].startswith(f"{s3_endpoint}/{bucket}/run/variants/")
        assert sha in variant["public_url"]
        fetched = httpx.get(variant["public_url"])  # no key, no API process
        assert fetched.status_code == 200
        assert fetched.headers["content-type"] == "image/webp"
        assert fetched.headers["cache-control"] == IMMUTABLE
        assert fetched.content == client.get(variant["url"]).content
        original = f"{s3_endpoint}/{bucket}/run/originals/{sha[:2]}/{sha}"
        assert httpx.get(original).status_code == 403  # never public


def test_signed_variant_url_needs_no_key_and_keyed_answers_stay_private(
    s3_serve: Callable[..., ImgpipeServer],
) -> None:
    server = s3_serve(
        {"IMGPIPE_PUBLIC_BASE_URL": "https://cdn.example.test", "IMGPIPE_PUBLIC_URL_MODE": "api"}
    )
    made = server.cli("keys", "create", "--owner", "alice")
    assert made.returncode == 0, made.stderr
    headers = {"Authorization": f"Bearer {made.stdout.strip()}"}
    with httpx.Client(base_url=server.base_url, timeout=30, headers=headers) as client:
        resource = upload_and_wait(client, images.unique_png(seed=1403, size=(500, 400)), "c.png")
        public_url = resource["variants"]["medium"]["public_url"]
        assert public_url.startswith("https://cdn.example.test/v1/images/")
        path = public_url.removeprefix("https://cdn.example.test")

        keyed = client.get(resource["variants"]["medium"]["url"])
        assert keyed.status_code == 200
        assert keyed.headers["cache-control"].startswith("private")

        with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
            assert_problem(
                anonymous.get(resource["variants"]["medium"]["url"]), 401, "unauthorized"
            )
            signed = anonymous.get(path)
            assert signed.status_code == 200, signed.text
            assert signed.headers["cache-control"] == IMMUTABLE
            assert signed.content == keyed.content
            # The signature covers the image, the variant and its version.
            assert_problem(anonymous.get(path.replace("/medium?", "/large?")), 403, "bad_signature")
            assert_problem(anonymous.get(path.replace("?v=", "?v=0")), 403, "bad_signature")

            assert client.delete(f"/v1/images/{resource['id']}").status_code == 204
            assert_problem(anonymous.get(path), 404, "not_found")


def test_without_public_base_url_the_resource_has_no_public_url(client: httpx.Client) -> None:
    resource = upload_and_wait(client, images.unique_png(seed=1404, size=(300, 200)), "d.png")
    assert all("public_url" not in v for v in resource["variants"].values())


def test_private_bucket_variant_route_redirects_to_a_short_lived_presigned_get(
    s3_serve: Callable[..., ImgpipeServer],
) -> None:
    server = s3_serve({"IMGPIPE_VARIANT_PRESIGN_S": "600"})
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        resource = upload_and_wait(client, images.unique_png(seed=1405, size=(500, 400)), "e.png")
        answer = client.get(resource["variants"]["thumbnail"]["url"])
        assert answer.status_code == 302
        assert answer.headers["cache-control"] == "private, max-age=300"
        location = answer.headers["location"]
        assert "X-Amz-Expires=600" in location and "X-Amz-Signature=" in location
        followed = httpx.get(location)
        assert followed.status_code == 200
        assert followed.headers["content-type"] == "image/webp"
        assert images.decode(followed.content).size == (150, 150)
