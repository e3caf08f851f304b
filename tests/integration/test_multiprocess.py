"""Scale-out for real: 2 API and 2 worker processes over Redis, PostgreSQL and S3.

300 uploads go concurrently to both APIs. Every image must end `done`, every variant must
be made exactly once and stored once, and the bytes must equal what the embedded
`imgpipe serve` makes from the same inputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from backends import REDIS_PG_S3

from . import images
from .conftest import (
    BUILT_IN_PROFILES,
    ImgpipeServer,
    assert_done,
    backend_settings,
    upload_ok,
    wait_done,
)

UPLOADS = 300
SIZE = (240, 180)


def _inputs() -> list[bytes]:
    return [images.noisy(*SIZE, seed=7000 + n, quality=85) for n in range(UPLOADS)]


def _upload_all(urls: list[str], inputs: list[bytes]) -> list[str]:
    """Every input once, spread over the APIs, 16 requests in flight."""
    clients = [httpx.Client(base_url=url, timeout=60) for url in urls]
    try:
        with ThreadPoolExecutor(16) as pool:
            futures = [
                pool.submit(upload_ok, clients[n % len(clients)], data, f"mp-{n}.jpg")
                for n, data in enumerate(inputs)
            ]
            return [future.result()["id"] for future in futures]
    finally:
        for client in clients:
            client.close()


def _variants(base_url: str, image_ids: list[str]) -> list[dict[str, bytes]]:
    out = []
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for image_id in image_ids:
            resource = wait_done(http, image_id, timeout=180)
            assert_done(resource)
            out.append(
                {
                    name: http.get(f"/v1/images/{image_id}/variants/{name}").content
                    for name in BUILT_IN_PROFILES
                }
            )
    return out


@pytest.mark.slow
def test_two_apis_two_workers_make_every_variant_once(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    spawn_server: Callable[[Path | None], ImgpipeServer],
) -> None:
    inputs = _inputs()
    with contextlib.ExitStack() as stack:
        settings, list_objects = backend_settings(REDIS_PG_S3, stack, request)
        nodes = []
        for n in range(2):  # each node is one `imgpipe api` and one `imgpipe worker`
            node = ImgpipeServer(tmp_path / f"node{n}", REDIS_PG_S3, settings, list_objects)
            node.start()
            stack.callback(node.stop)
            nodes.append(node)

        image_ids = _upload_all([node.base_url for node in nodes], inputs)
        scaled = _variants(nodes[0].base_url, image_ids)

        with httpx.Client(base_url=nodes[1].base_url, timeout=60) as http:
            attempts = {
                (image_id, name): variant["attempts"]
                for image_id in image_ids
                for name, variant in http.get(f"/v1/images/{image_id}").json()["variants"].items()
            }
        made_twice = {key: n for key, n in attempts.items() if n != 1}
        assert not made_twice, f"variants claimed more than once: {made_twice}"
        variant_keys = [key for key in nodes[0].stored_keys() if key.startswith("variants/")]
        assert len(variant_keys) == len(set(variant_keys)) == UPLOADS * len(BUILT_IN_PROFILES)

    embedded = spawn_server(tmp_path / "embedded")
    reference = _variants(embedded.base_url, _upload_all([embedded.base_url], inputs))
    assert scaled == reference
