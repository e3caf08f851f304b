"""HTTP details a client, a CDN or a browser relies on: /docs with nothing from another
origin, HEAD on every GET route, Location on a 202, a refused cursor, the headers of an
original, and a render error that names what was asked."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastapi.routing
import httpx
import pytest
from PIL import Image

from imgpipe.api.app import create_app
from imgpipe.domain.signing import sign_render_url
from imgpipe.storage.factory import store_from_url
from unit.sqlite_deps import sqlite_deps

from . import images
from .conftest import ImgpipeServer, assert_problem, upload_and_wait, upload_ok, wait_done

# --- /docs ----------------------------------------------------------------------------


def _references(html: str) -> list[str]:
    return re.findall(r'(?:src|href)="([^"]+)"', html)


def test_docs_names_no_other_origin_and_serves_its_own_assets(client: httpx.Client) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "http:" not in csp and "https:" not in csp
    assert "<script>" not in page.text, "inline script would need 'unsafe-inline'"
    references = _references(page.text)
    scripts = [r for r in references if r.endswith(".js") or ".js?" in r]
    assert len(scripts) == 2 and any("swagger-ui-bundle.js" in s for s in scripts)
    for reference in references:
        assert "//" not in reference, f"{reference} is on another origin (or scheme-relative)"
        if reference.startswith("data:"):
            continue
        asset = client.get(reference)
        assert asset.status_code == 200, reference
        if reference.startswith("/docs/assets/"):
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
    init = client.get(scripts[-1]).text
    assert '"/openapi.json"' in init and "validatorUrl: null" in init
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs/assets/index.html").status_code == 404
    assert client.get("/redoc").status_code == 404


# --- HEAD ---------------------------------------------------------------------------------


def _get_routes(tmp_path: Path) -> list[str]:
    """Every GET path template in the app's route table (the same app serve runs)."""
    store = store_from_url(f"file://{tmp_path / 'objects'}")
    with sqlite_deps(tmp_path, store=store, queue=None) as deps:
        app = create_app(deps)
    # FastAPI 0.165 keeps included routers as branches; older versions list every route.
    flatten = getattr(fastapi.routing, "iter_route_contexts", list)
    return sorted(
        str(getattr(route, "path", ""))
        for route in flatten(app.routes)
        if "GET" in (getattr(route, "methods", None) or set())
    )


@pytest.fixture(scope="module")
def done_image(client: httpx.Client) -> dict[str, Any]:
    resource = upload_and_wait(client, images.unique_png(seed=1101, size=(320, 200)), "h.png")
    assert resource["status"] == "done", resource
    return resource


def _sample_url(template: str, image_id: str, signing_key: bytes) -> str:
    samples = {
        "/v1/images/{image_id}/variants/{name}": f"/v1/images/{image_id}/variants/thumbnail",
        "/v1/admin/images/{image_id}/variants/{name}": (
            f"/v1/admin/images/{image_id}/variants/thumbnail"
        ),
        "/v1/render/{name}": sign_render_url(f"/v1/render/{image_id}?w=64", signing_key),
        "/static/{name}": "/static/app.js",
        "/docs/assets/{name}": "/docs/assets/init.js",
    }
    if template in samples:
        return samples[template]
    url = template.replace("{image_id}", image_id)
    assert "{" not in url, f"GET {template}: give this route a sample URL in this test"
    return url


def test_every_get_route_answers_head_with_the_gets_headers_and_no_body(
    server: ImgpipeServer, client: httpx.Client, done_image: dict[str, Any], tmp_path: Path
) -> None:
    signing_key = (server.data_dir / "imgpipe-data" / "signing_key").read_bytes().strip()
    templates = _get_routes(tmp_path)
    assert "/v1/images/{image_id}/original" in templates and "/docs" in templates
    for template in templates:
        url = _sample_url(template, done_image["id"], signing_key)
        got = client.get(url)
        head = client.head(url)
        assert got.status_code == 200, f"GET {url}: {got.status_code} {got.text[:200]}"
        assert head.status_code == 200, f"HEAD {url}: {head.status_code}"
        assert head.content == b""
        assert head.headers.get("content-type") == got.headers.get("content-type"), url
        if "etag" in got.headers:  # the same bytes: the same validator and length
            assert head.headers["etag"] == got.headers["etag"], url
            assert head.headers["content-length"] == str(len(got.content)), url


def test_head_revalidates_like_get(client: httpx.Client, done_image: dict[str, Any]) -> None:
    url = f"/v1/images/{done_image['id']}/variants/medium"
    etag = client.head(url).headers["etag"]
    again = client.head(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""


def test_head_where_there_is_no_get_is_405(client: httpx.Client) -> None:
    response = client.head("/v1/uploads")
    assert response.status_code == 405
    assert "POST" in response.headers["allow"]


# --- listing, Location, originals ----------------------------------------------------------


@pytest.mark.parametrize(
    "cursor", ["zzz", "garbage", "img_" + "0" * 25, "img_" + "i" * 26, "00000000000000000000000000"]
)
def test_a_malformed_cursor_is_400_bad_request(client: httpx.Client, cursor: str) -> None:
    response = client.get("/v1/images", params={"cursor": cursor})
    problem = assert_problem(response, 400, "bad_request")
    assert "cursor" in problem["detail"]


def test_next_cursor_still_pages(client: httpx.Client) -> None:
    for seed in (1111, 1112):
        upload_ok(client, images.unique_png(seed=seed), "p.png")
    first = client.get("/v1/images", params={"limit": 1}).json()
    second = client.get("/v1/images", params={"limit": 1, "cursor": first["next_cursor"]})
    assert second.status_code == 200
    assert second.json()["items"][0]["id"] < first["items"][0]["id"]


def test_the_202_of_an_upload_says_where_the_image_is(client: httpx.Client) -> None:
    response = client.post(
        "/v1/images", files={"file": ("l.png", images.unique_png(seed=1121), "image/png")}
    )
    assert response.status_code == 202
    location = response.headers["location"]
    assert location == f"/v1/images/{response.json()['id']}"
    followed = client.get(location)
    assert followed.status_code == 200 and followed.json()["id"] == response.json()["id"]


def _gif_that_is_also_html() -> bytes:
    buffer = io.BytesIO()
    Image.new("P", (60, 40), 3).save(
        buffer, "GIF", comment=b"<html><body><script>alert(document.domain)</script>"
    )
    return buffer.getvalue()


def test_an_original_is_served_so_no_browser_runs_it(client: httpx.Client) -> None:
    data = _gif_that_is_also_html()
    resource = upload_ok(client, data, "page.gif")
    original = client.get(f"/v1/images/{resource['id']}/original")
    assert original.status_code == 200 and original.content == data
    assert original.headers["content-type"] == "image/gif"
    assert original.headers["x-content-type-options"] == "nosniff"
    assert original.headers["content-security-policy"] == "sandbox"


# --- API_BASE_URL, and a render error that names what was asked ---------------------------

BASE = "https://images.example.com/api"


@pytest.fixture(scope="module")
def configured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImgpipeServer]:
    settings = {"IMGPIPE_API_BASE_URL": BASE + "/", "IMGPIPE_RENDER_MAX_PIXELS": "10000"}
    instance = ImgpipeServer(tmp_path_factory.mktemp("configured"), settings=settings)
    instance.start()
    yield instance
    instance.stop()


def test_api_base_url_makes_location_and_upload_urls_absolute(
    configured: ImgpipeServer,
) -> None:
    with httpx.Client(base_url=configured.base_url, timeout=30) as http:
        upload = http.post(
            "/v1/images", files={"file": ("a.png", images.unique_png(seed=1131), "image/png")}
        )
        assert upload.status_code == 202
        assert upload.headers["location"] == f"{BASE}/v1/images/{upload.json()['id']}"

        data = images.unique_png(seed=1132)
        ticket = http.post("/v1/uploads", json={"filename": "d.png", "bytes": len(data)}).json()
        url = ticket["upload"]["url"]
        assert url.startswith(f"{BASE}/v1/uploads/{ticket['image_id']}/content?")
        # The public address is the proxy's; here the same path reaches the process itself.
        local = configured.base_url + url.removeprefix(BASE)
        assert httpx.put(local, content=data, headers=ticket["upload"]["headers"]).is_success
        completed = http.post(f"/v1/images/{ticket['image_id']}/complete")
        assert completed.status_code == 202
        assert completed.headers["location"] == f"{BASE}/v1/images/{ticket['image_id']}"
        wait_done(http, ticket["image_id"])


def test_a_render_too_large_names_the_size_asked_for(configured: ImgpipeServer) -> None:
    key = (configured.data_dir / "imgpipe-data" / "signing_key").read_bytes().strip()
    with httpx.Client(base_url=configured.base_url, timeout=30) as http:
        resource = upload_and_wait(http, images.unique_png(seed=1141, size=(200, 100)), "r.png")
        response = http.get(sign_render_url(f"/v1/render/{resource['id']}?w=8000", key))
    problem = assert_problem(response, 400, "bad_option")
    # w=8000 is never upscaled: the output would be the image's own 200x100, past 10000 px.
    assert "w=8000" in problem["detail"], problem
    assert "200x100" in problem["detail"] and "10000" in problem["detail"], problem
