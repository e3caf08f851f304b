"""What an owner does with an image beyond uploading it: the file name kept with it
(``original.filename``) and signed render URLs made by the server for the owner's own
images (``POST /v1/images/{id}/render-url``), end to end over HTTP.

One private embedded server with two owners' keys: neither the name nor the signing
depends on the backends, and owner scoping needs keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest

from . import images
from .conftest import ImgpipeServer, assert_problem, run_cli, wait_done


@pytest.fixture(scope="module")
def owners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, httpx.Client]]:
    """A client per owner (alice, bob) and one without a key (anonymous)."""
    data_dir = tmp_path_factory.mktemp("imgpipe-owner-tools")
    upgrade = run_cli(data_dir, "db", "upgrade")
    assert upgrade.returncode == 0, f"db upgrade: {upgrade.stderr}"
    keys = {}
    for owner in ("alice", "bob"):
        created = run_cli(data_dir, "keys", "create", "--owner", owner)
        assert created.returncode == 0, f"keys create: {created.stderr}"
        keys[owner] = created.stdout.strip()
    server = ImgpipeServer(data_dir)
    server.start()
    clients = {
        owner: httpx.Client(
            base_url=server.base_url, timeout=30, headers={"Authorization": f"Bearer {key}"}
        )
        for owner, key in keys.items()
    }
    clients["anonymous"] = httpx.Client(base_url=server.base_url, timeout=30)
    try:
        yield clients
    finally:
        for client in clients.values():
            client.close()
        server.stop()


def _upload(client: httpx.Client, filename: str, data: bytes | None = None) -> dict[str, object]:
    body = data if data is not None else images.unique_png(seed=hash(filename) % 10_000)
    response = client.post("/v1/images", files={"file": (filename, body, "image/png")})
    assert response.status_code == 202, response.text
    resource: dict[str, object] = response.json()
    return resource


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("holiday.png", "holiday.png"),
        ("fête à Zürich — 写真.png", "fête à Zürich — 写真.png"),
        ("../../etc/passwd.png", "passwd.png"),
        ("C:\\Users\\me\\cat.png", "cat.png"),
        ("invoice\u202egnp.exe.png", "invoicegnp.exe.png"),  # no right-to-left override
    ],
)
def test_the_upload_keeps_its_sanitised_name(
    owners: dict[str, httpx.Client], sent: str, kept: str
) -> None:
    alice = owners["alice"]
    accepted = _upload(alice, sent)
    assert accepted["original"]["filename"] == kept  # type: ignore[index]
    image_id = str(accepted["id"])
    assert alice.get(f"/v1/images/{image_id}").json()["original"]["filename"] == kept
    listed = alice.get("/v1/images", params={"limit": 200}).json()["items"]
    assert [i["original"]["filename"] for i in listed if i["id"] == image_id] == [kept]


def _raw_upload(client: httpx.Client, disposition: bytes) -> httpx.Response:
    """A multipart upload whose part header is sent byte for byte as given (clients
    percent-encode control characters; a hostile one need not)."""
    boundary = b"imgpipe-test-boundary"
    body = (
        b"--" + boundary + b"\r\nContent-Disposition: " + disposition + b"\r\n"
        b"Content-Type: image/png\r\n\r\n"
        + images.unique_png(seed=len(disposition))
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )
    content_type = "multipart/form-data; boundary=" + boundary.decode()
    return client.post("/v1/images", content=body, headers={"Content-Type": content_type})


@pytest.mark.parametrize(
    ("disposition", "kept"),
    [
        (b'form-data; name="file"', None),
        (b'form-data; name="file"; filename=""', None),
        (
            b'form-data; name="file"; filename="bell\x07and\x1b[2Jtab\there.png"',
            "belland[2Jtab here.png",
        ),
        ('form-data; name="file"; filename="ünï\u00a0code.png"'.encode(), "ünï code.png"),
    ],
)
def test_names_sent_raw_are_cleaned_too(
    owners: dict[str, httpx.Client], disposition: bytes, kept: str | None
) -> None:
    response = _raw_upload(owners["alice"], disposition)
    assert response.status_code == 202, response.text
    assert response.json()["original"]["filename"] == kept


def test_a_signed_render_url_is_for_the_owners_images_and_works_without_a_key(
    owners: dict[str, httpx.Client],
) -> None:
    alice, bob, anonymous = owners["alice"], owners["bob"], owners["anonymous"]
    image_id = str(_upload(alice, "render-me.png", images.still("png", 640, 480))["id"])
    wait_done(alice, image_id)
    options = {"w": 200, "h": 100, "fit": "cover", "crop": "attention", "format": "webp"}
    before = time.time()
    made = alice.post(
        f"/v1/images/{image_id}/render-url", json={"options": options, "expires_in": 600}
    )
    assert made.status_code == 200, made.text
    signed = made.json()
    assert signed["url"].endswith(signed["path"]) and signed["url"].startswith("http://")
    assert signed["path"].startswith(f"/v1/render/{image_id}?")
    assert "&exp=" in signed["path"] and "&sig=" in signed["path"]
    expires = datetime.fromisoformat(signed["expires_at"]).timestamp()
    assert before + 590 <= expires <= time.time() + 610

    rendered = anonymous.get(signed["url"])  # the URL is its own authorisation
    assert rendered.status_code == 200, rendered.text
    assert rendered.headers["content-type"] == "image/webp"
    assert images.decode(rendered.content).size == (200, 100)

    # Bob cannot have Alice's image signed, and cannot tell it exists.
    assert_problem(bob.post(f"/v1/images/{image_id}/render-url", json={}), 404, "not_found")
    assert_problem(
        anonymous.post(f"/v1/images/{image_id}/render-url", json={}), 401, "unauthorized"
    )


@pytest.mark.parametrize(
    ("body", "status", "code", "named"),
    [
        ({"options": {"w": 99999}}, 400, "bad_option", "'w'"),
        ({"options": {"fit": "squash"}}, 400, "bad_option", "'fit'"),
        ({"options": {"colour": "red"}}, 400, "bad_option", "'colour'"),
        ({"options": {"exp": 1}}, 400, "bad_option", "'exp'"),
        ({"options": {"sig": "x"}}, 400, "bad_option", "'sig'"),
        ({"expires_in": 0}, 400, "bad_request", "expires_in"),
    ],
)
def test_render_url_options_are_checked_like_the_render_route(
    owners: dict[str, httpx.Client], body: dict[str, object], status: int, code: str, named: str
) -> None:
    alice = owners["alice"]
    image_id = str(_upload(alice, "options.png")["id"])
    response = alice.post(f"/v1/images/{image_id}/render-url", json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code, problem
    assert named in response.text, problem
