"""GET /v1/render/{id}: signed, negotiated, cached, on every backend (the `server` fixture)."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from imgpipe.domain.signing import render_message, sign, sign_render_url
from imgpipe.engine.render_source import SOURCE_VERSION
from imgpipe.storage import keys

from .conftest import ImgpipeServer, assert_problem, upload_and_wait, wait_for_key
from .images import noisy, progressive_noisy, unique_png

AVIF_FIRST = "image/avif,image/webp,image/apng,image/*,*/*;q=0.8"
WEBP_ONLY = "image/webp,*/*"


@pytest.fixture(scope="module")
def key(server: ImgpipeServer) -> bytes:
    """The server's signing key, generated on its first start in its data dir."""
    return (server.data_dir / "imgpipe-data" / "signing_key").read_bytes().strip()


@pytest.fixture(scope="module")
def photo(client: httpx.Client) -> dict[str, Any]:
    resource = upload_and_wait(client, noisy(1200, 900, seed=5001), "photo.jpg")
    assert resource["status"] == "done", resource
    return resource


def signed(key: bytes, path: str, exp: int | None = None) -> str:
    return sign_render_url(path, key, exp)


def decoded(response: httpx.Response) -> Image.Image:
    return Image.open(io.BytesIO(response.content))


def test_a_signed_render_is_made_then_served_from_the_cache(
    client: httpx.Client, key: bytes, photo: dict[str, Any]
) -> None:
    url = signed(key, f"/v1/render/{photo['id']}?w=300&h=200&fit=cover&format=webp&q=70")
    first = client.get(url)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"] == "image/webp"
    assert first.headers["x-render-cache"] == "miss"
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert "vary" not in first.headers  # an explicit format does not vary
    assert decoded(first).size == (300, 200)
    second = client.get(url)
    assert second.headers["x-render-cache"] == "hit"
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    again = client.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and not again.content
    assert again.headers["etag"] == first.headers["etag"]


def test_the_cached_render_is_in_storage_under_the_original_sha(
    server: ImgpipeServer, client: httpx.Client, key: bytes, photo: dict[str, Any]
) -> None:
    assert client.get(signed(key, f"/v1/render/{photo['id']}.webp?w=123")).status_code == 200
    sha = photo["original"]["sha256"]
    stored = [k for k in server.stored_keys() if k.startswith(f"renders/{sha[:2]}/{sha}/")]
    assert any(k.endswith(".webp") for k in stored), stored


def test_format_auto_negotiates_from_accept_and_varies(
    client: httpx.Client, key: bytes, photo: dict[str, Any]
) -> None:
    url = signed(key, f"/v1/render/{photo['id']}?w=200")
    expected = {AVIF_FIRST: "image/avif", WEBP_ONLY: "image/webp", "*/*": "image/jpeg"}
    etags = set()
    for accept, media_type in expected.items():
        response = client.get(url, headers={"Accept": accept})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == media_type
        assert response.headers["vary"] == "Accept"
        etags.add(response.headers["etag"])
    assert len(etags) == 3


def test_jpeg_xl_where_accept_names_it(
    client: httpx.Client, key: bytes, photo: dict[str, Any]
) -> None:
    import imagecodecs

    url = signed(key, f"/v1/render/{photo['id']}?w=200")
    response = client.get(url, headers={"Accept": "image/jxl," + AVIF_FIRST})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jxl"
    assert imagecodecs.jpegxl_decode(response.content).shape == (150, 200, 3)
    again = client.get(url, headers={"Accept": "image/jxl," + AVIF_FIRST})  # a cache hit
    assert again.headers["content-type"] == "image/jxl" and again.content == response.content


def test_auto_keeps_alpha_as_png_for_clients_without_webp_or_avif(
    client: httpx.Client, key: bytes
) -> None:
    image = Image.new("RGBA", (120, 90), (200, 10, 10, 90))
    out = io.BytesIO()
    image.save(out, "PNG")
    resource = upload_and_wait(client, out.getvalue(), "alpha.png")
    response = client.get(signed(key, f"/v1/render/{resource['id']}?w=60"))
    assert response.headers["content-type"] == "image/png"
    assert decoded(response).mode == "RGBA"


def test_the_format_may_be_given_by_the_path_extension(
    client: httpx.Client, key: bytes, photo: dict[str, Any]
) -> None:
    response = client.get(signed(key, f"/v1/render/{photo['id']}.jpg?w=100"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert "vary" not in response.headers


@pytest.mark.parametrize(
    "tamper",
    [
        lambda url: url.replace("w=300", "w=301"),
        lambda url: url.split("&sig=")[0],
        lambda url: url[:-3],
        lambda url: url.replace("?w=300&h=200", "?h=200&w=300"),
        lambda url: url.replace("w=300", "w=300&w=300"),
    ],
    ids=["changed", "unsigned", "truncated", "reordered", "repeated"],
)
def test_tampered_urls_are_forbidden(
    client: httpx.Client, key: bytes, photo: dict[str, Any], tamper: Any
) -> None:
    url = signed(key, f"/v1/render/{photo['id']}?w=300&h=200")
    assert_problem(client.get(tamper(url)), 403, "bad_signature")


def test_an_expired_url_is_forbidden_and_a_fresh_one_renders(
    client: httpx.Client, key: bytes, photo: dict[str, Any]
) -> None:
    path = f"/v1/render/{photo['id']}?w=90"
    assert_problem(client.get(signed(key, path, int(time.time()) - 5)), 403, "expired")
    assert client.get(signed(key, path, int(time.time()) + 600)).status_code == 200


def test_bad_options_are_400_naming_the_option(
    client: httpx.Client, key: bytes, photo: dict[str, Any]
) -> None:
    # sign_render_url validates first, so sign by hand as a careless signer would.
    path = f"/v1/render/{photo['id']}"
    signature = sign(key, render_message(path, [("rotate", "450")]))
    problem = assert_problem(client.get(f"{path}?rotate=450&sig={signature}"), 400, "bad_option")
    assert "rotate" in problem["detail"] and "'450'" in problem["detail"]
    problem = assert_problem(
        client.get(signed(key, f"/v1/render/{photo['id']}?wm=nosuchmark")), 400, "bad_option"
    )
    assert "wm" in problem["detail"] and "nosuchmark" in problem["detail"]


def test_an_oversized_output_is_refused(client: httpx.Client, key: bytes) -> None:
    resource = upload_and_wait(client, unique_png(5002, (64, 48)), "small.png")
    url = signed(key, f"/v1/render/{resource['id']}?w=8000&h=8000&fit=fill")
    problem = assert_problem(client.get(url), 400, "bad_option")
    assert "8000x8000" in problem["detail"]


def test_watermark_from_the_configured_folder(
    server: ImgpipeServer, client: httpx.Client, key: bytes, photo: dict[str, Any]
) -> None:
    folder = server.data_dir / "imgpipe-data" / "watermarks"
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (100, 40), (255, 255, 255, 255)).save(folder / "logo.png")
    url = signed(key, f"/v1/render/{photo['id']}.png?w=400&wm=logo,se,1")
    response = client.get(url)
    assert response.status_code == 200, response.text
    out = decoded(response).convert("RGB")
    assert out.getpixel((400 - 8 - 20, out.height - 8 - 10)) == (255, 255, 255)


def test_concurrent_first_requests_render_once(
    client: httpx.Client, key: bytes, photo: dict[str, Any]
) -> None:
    url = signed(key, f"/v1/render/{photo['id']}.webp?w=311&h=211&fit=cover&crop=attention")
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: client.get(url), range(8)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert len({r.content for r in responses}) == 1
    assert [r.headers["x-render-cache"] for r in responses].count("miss") == 1


def sources_made_by_renders(client: httpx.Client, copy: str) -> float:
    """The server's count of render sources that renders had to make themselves."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "imgpipe_render_sources_made_total" and sample.labels == {
                "copy": copy,
                "by": "render",
            }:
                return float(sample.value)
    return 0.0


def test_the_worker_makes_the_large_copy_so_the_first_w2400_render_reads_it(
    server: ImgpipeServer, client: httpx.Client, key: bytes
) -> None:
    # A 3900x2200 progressive JPEG: larger than 3840x2160, so it gets a large copy.
    resource = upload_and_wait(client, progressive_noisy(3900, 2200, seed=5010), "big.jpg")
    assert resource["status"] == "done", resource
    sha = resource["original"]["sha256"]
    # Made after the job settles ("done" comes first): it appears shortly after.
    wait_for_key(server, keys.render_source(sha, SOURCE_VERSION, large=True))
    made_by_renders = sources_made_by_renders(client, "large")
    response = client.get(signed(key, f"/v1/render/{resource['id']}?w=2400&format=webp"))
    assert response.status_code == 200, response.text
    assert response.headers["x-render-cache"] == "miss"
    assert decoded(response).size == (2400, 1354)
    assert sources_made_by_renders(client, "large") == made_by_renders  # read, not made


def test_unknown_and_deleted_images_are_404_and_their_renders_go(
    server: ImgpipeServer, client: httpx.Client, key: bytes
) -> None:
    assert_problem(client.get(signed(key, "/v1/render/img_nosuchimage?w=10")), 404, "not_found")
    # Large enough for the worker to keep a render source (the 1920x1080 copy renders read).
    resource = upload_and_wait(client, noisy(3000, 2000, seed=5003), "gone.jpg")
    url = signed(key, f"/v1/render/{resource['id']}.webp?w=50")
    assert client.get(url).status_code == 200
    sha = resource["original"]["sha256"]
    assert keys.render_source(sha, SOURCE_VERSION) in server.stored_keys()
    assert any(k.startswith(f"renders/{sha[:2]}/{sha}/") for k in server.stored_keys())
    assert client.delete(f"/v1/images/{resource['id']}").status_code == 204
    assert_problem(client.get(url), 404, "not_found")
    assert server.cli("storage", "sweep").returncode == 0  # the purge (retention 0 here)
    assert not any(k.startswith(f"renders/{sha[:2]}/{sha}/") for k in server.stored_keys())


def test_a_deleted_image_is_404_even_while_another_image_shares_its_bytes(
    server: ImgpipeServer, client: httpx.Client, key: bytes
) -> None:
    data = noisy(400, 300, seed=5005)
    deleted = upload_and_wait(client, data, "first.jpg")
    kept = upload_and_wait(client, data, "second.jpg")
    sha = deleted["original"]["sha256"]
    assert kept["original"]["sha256"] == sha  # one original, one render cache for both
    query = "?w=120&format=webp"
    deleted_url = signed(key, f"/v1/render/{deleted['id']}{query}")
    assert client.get(deleted_url).headers["x-render-cache"] == "miss"

    assert client.delete(f"/v1/images/{deleted['id']}").status_code == 204
    # The other image keeps the bytes, so the cached render stays in storage...
    assert any(k.startswith(f"renders/{sha[:2]}/{sha}/") for k in server.stored_keys())
    # ...yet the deleted image's URL is 404 at once, cache or not...
    assert_problem(client.get(deleted_url), 404, "not_found")
    assert_problem(client.get(signed(key, f"/v1/render/{deleted['id']}?w=121")), 404, "not_found")
    # ...while the other image is served from that same cache entry.
    shared = client.get(signed(key, f"/v1/render/{kept['id']}{query}"))
    assert shared.status_code == 200 and shared.headers["x-render-cache"] == "hit"


def test_an_upload_refused_by_validation_has_nothing_to_render(
    client: httpx.Client, key: bytes
) -> None:
    """A direct upload gets its image id before its bytes are checked; refused, it is 404."""
    svg = b"<svg xmlns='http://www.w3.org/2000/svg'></svg>"
    response = client.post("/v1/uploads", json={"filename": "x.svg", "bytes": len(svg)})
    assert response.status_code == 201, response.text
    ticket = response.json()
    upload = ticket["upload"]
    if upload["method"] == "POST":  # an S3 presigned POST
        sent = httpx.post(upload["url"], data=upload["fields"], files={"file": ("x.svg", svg)})
    else:  # the API's own signed PUT (local storage)
        sent = httpx.put(upload["url"], content=svg, headers=upload["headers"])
    assert sent.status_code < 300, sent.text
    image_id = ticket["image_id"]
    assert_problem(client.post(f"/v1/images/{image_id}/complete"), 415, "unsupported_type")
    assert_problem(client.get(signed(key, f"/v1/render/{image_id}?w=50")), 404, "not_found")


def test_an_original_that_fails_validation_is_not_rendered_even_from_the_cache(
    server: ImgpipeServer, client: httpx.Client, key: bytes
) -> None:
    data = noisy(640, 480, seed=5006)
    resource = upload_and_wait(client, data, "later-refused.jpg")
    cached = signed(key, f"/v1/render/{resource['id']}.webp?w=64")
    assert client.get(cached).status_code == 200  # rendered and cached while valid

    # The stored original stops passing validation (cut before its end marker); the
    # worker's probe, run again on reprocess, refuses it and the image is failed.
    sha = resource["original"]["sha256"]
    replace_object(server, f"originals/{sha[:2]}/{sha}", data[: len(data) // 2])
    assert client.post(f"/v1/images/{resource['id']}/reprocess").status_code == 202
    deadline = time.monotonic() + 60
    while client.get(f"/v1/images/{resource['id']}").json()["status"] != "failed":
        assert time.monotonic() < deadline, "the image was never marked failed"
        time.sleep(0.1)

    assert_problem(client.get(cached), 404, "not_found")  # the cached render is not served
    assert_problem(client.get(signed(key, f"/v1/render/{resource['id']}?w=65")), 404, "not_found")


def replace_object(server: ImgpipeServer, key: str, data: bytes) -> None:
    """Overwrite a stored object behind imgpipe's back, on whichever store it uses."""
    url = server.settings.get("IMGPIPE_STORAGE_URL", "")
    if not url.startswith("s3://"):
        (server.objects_dir / key).write_bytes(data)
        return
    import boto3

    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    client = boto3.client(
        "s3",
        endpoint_url=server.settings["IMGPIPE_S3_ENDPOINT_URL"],
        aws_access_key_id=server.settings["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=server.settings["AWS_SECRET_ACCESS_KEY"],
        region_name=server.settings["AWS_DEFAULT_REGION"],
    )
    client.put_object(Bucket=bucket, Key=f"{prefix}/{key}" if prefix else key, Body=data)


def test_sign_command_prints_a_url_the_server_accepts(
    server: ImgpipeServer, client: httpx.Client, photo: dict[str, Any], tmp_path: Path
) -> None:
    import subprocess
    import sys

    from .conftest import server_env

    env = server_env(server.data_dir, server.settings)
    done = subprocess.run(
        [sys.executable, "-m", "imgpipe", "sign", f"/v1/render/{photo['id']}?h=80&w=80"],
        cwd=server.data_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert "?w=80&h=80&sig=" in url
    assert client.get(url).status_code == 200
