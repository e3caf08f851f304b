"""Bad uploads get the exact status and code, and the server keeps working afterwards."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from hostileimages import png_header_only, rle8_bmp, tiff_with_directories

from . import images
from .conftest import (
    MAX_UPLOAD_BYTES,
    assert_done,
    assert_problem,
    upload,
    upload_and_wait,
)

BAD_UPLOADS = [
    pytest.param(lambda: b"", "empty.jpg", "image/jpeg", 415, "unsupported_type", id="zero-bytes"),
    pytest.param(
        lambda: b"these are my notes, not a photo\n" * 20,
        "notes.jpg",
        "image/jpeg",
        415,
        "unsupported_type",
        id="text-named-jpg",
    ),
    pytest.param(images.svg, "logo.png", "image/png", 415, "unsupported_type", id="svg-named-png"),
    pytest.param(images.svg, "logo.svg", "image/svg+xml", 415, "unsupported_type", id="svg"),
    pytest.param(images.pdf, "scan.jpg", "image/jpeg", 415, "unsupported_type", id="pdf-named-jpg"),
    pytest.param(
        images.truncated_jpeg, "cut.jpg", "image/jpeg", 422, "corrupt_image", id="truncated-jpeg"
    ),
    pytest.param(
        images.huge_dimensions_png,
        "bomb.png",
        "image/png",
        422,
        "too_many_pixels",
        id="30000x30000-png",
    ),
    pytest.param(
        images.many_frames_gif,
        "frames.gif",
        "image/gif",
        422,
        "too_many_frames",
        id="10000-frame-gif",
    ),
    pytest.param(
        lambda: rle8_bmp(16384, 16384, 255),
        "bomb.bmp",
        "image/bmp",
        422,
        "too_many_pixels",
        id="2mb-rle-bmp-declaring-16384x16384",
    ),
    pytest.param(
        lambda: png_header_only(16384, 16384, 16, 6, 1),
        "deep.png",
        "image/png",
        422,
        "too_many_pixels",
        id="16-bit-rgba-png-over-max-decode-bytes",
    ),
    pytest.param(
        lambda: tiff_with_directories(200_000),
        "pages.tif",
        "image/tiff",
        422,
        "too_many_frames",
        id="tiff-of-200000-directories",
    ),
    pytest.param(
        lambda: images.oversized_jpeg(MAX_UPLOAD_BYTES + 1024 * 1024),
        "big.jpg",
        "image/jpeg",
        413,
        "too_large",
        id="over-max-upload-bytes",
    ),
]


@pytest.mark.parametrize(("make", "filename", "content_type", "status", "code"), BAD_UPLOADS)
def test_bad_upload_is_refused_and_server_keeps_serving(
    client: httpx.Client,
    make: Callable[[], bytes],
    filename: str,
    content_type: str,
    status: int,
    code: str,
) -> None:
    response = upload(client, make(), filename, content_type)

    assert_problem(response, status, code)
    assert client.get("/healthz").status_code == 200
    resource = upload_and_wait(client, images.still("png", 64, 48), "after-bad.png")
    assert_done(resource)


def test_upload_without_file_field_is_bad_request(client: httpx.Client) -> None:
    response = client.post(
        "/v1/images", files={"image": ("photo.png", images.still("png", 64, 48), "image/png")}
    )
    assert_problem(response, 400, "bad_request")


def test_unknown_profile_name_is_bad_request(client: httpx.Client) -> None:
    response = upload(client, images.still("png", 64, 48), "photo.png", profiles="thumbnail,poster")
    problem = assert_problem(response, 400, "bad_request")
    assert "poster" in problem["detail"], problem


def test_unknown_image_is_not_found(client: httpx.Client) -> None:
    real_id = upload_and_wait(client, images.still("png", 64, 48), "shape.png")["id"]
    same_shape = "".join("0" if ch.isalnum() else ch for ch in real_id)
    for image_id in (same_shape, "no-such-image"):
        assert_problem(client.get(f"/v1/images/{image_id}"), 404, "not_found")
        assert_problem(client.get(f"/v1/images/{image_id}/original"), 404, "not_found")
        assert_problem(client.get(f"/v1/images/{image_id}/variants/thumbnail"), 404, "not_found")
        assert_problem(client.post(f"/v1/images/{image_id}/reprocess"), 404, "not_found")


def test_unknown_variant_is_not_found(client: httpx.Client) -> None:
    resource = upload_and_wait(client, images.still("png", 64, 48), "variant.png")
    assert_problem(client.get(f"/v1/images/{resource['id']}/variants/poster"), 404, "not_found")
