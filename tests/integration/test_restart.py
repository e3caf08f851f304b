"""A server killed with work still queued loses nothing: a new one finishes every image."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from . import images
from .conftest import (
    BUILT_IN_PROFILES,
    TERMINAL_STATUSES,
    ImgpipeServer,
    assert_done,
    assert_size,
    upload_ok,
    wait_done,
)

IMAGE_COUNT = 12
SOURCE_SIZE = (2000, 1500)


@pytest.mark.slow
def test_sigkill_with_queued_work_loses_nothing(
    spawn_server: Callable[[Path | None], ImgpipeServer], tmp_path: Path
) -> None:
    uploads = [images.noisy(*SOURCE_SIZE, seed=500 + n, quality=80) for n in range(IMAGE_COUNT)]
    first = spawn_server(tmp_path / "data")
    with httpx.Client(base_url=first.base_url, timeout=30) as http:
        ids = [upload_ok(http, data, f"restart-{n}.jpg")["id"] for n, data in enumerate(uploads)]
        unfinished = [
            image_id
            for image_id in ids
            if http.get(f"/v1/images/{image_id}").json()["status"] not in TERMINAL_STATUSES
        ]
    first.kill()

    second = spawn_server(tmp_path / "data")
    with httpx.Client(base_url=second.base_url, timeout=30) as http:
        for image_id, data in zip(ids, uploads, strict=True):
            resource = wait_done(http, image_id, timeout=90)
            assert_done(resource)
            original = http.get(f"/v1/images/{image_id}/original")
            assert original.status_code == 200
            assert hashlib.sha256(original.content).hexdigest() == hashlib.sha256(data).hexdigest()
            for name in BUILT_IN_PROFILES:
                response = http.get(f"/v1/images/{image_id}/variants/{name}")
                assert response.status_code == 200, f"{image_id} {name}: {response.text}"
                variant = resource["variants"][name]
                assert len(response.content) == variant["bytes"], f"{image_id} {name} truncated"
                decoded = images.decode(response.content)  # a half-written file fails here
                assert_size(decoded.size, (variant["width"], variant["height"]), name)
    # Tell the reader whether the kill really interrupted work (it nearly always does).
    print(f"{len(unfinished)} of {IMAGE_COUNT} images were unfinished just before SIGKILL")
