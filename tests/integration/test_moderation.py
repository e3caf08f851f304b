"""Moderation end to end: `imgpipe serve` with MODERATION=rekognition against a stand-in
Rekognition on loopback (tests/rekognition_server.py decides by the image's colour), keys
for an owner and an admin, and the CLI on the same database.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from rekognition_server import running_rekognition
from s3server import AWS_TEST_ENV

from . import images
from .conftest import ImgpipeServer, assert_problem, run_cli, upload_ok, wait_done

RED, BLUE, GREY = (220, 20, 20), (20, 20, 220), (128, 128, 128)


def _create_key(data_dir: Any, owner: str, *extra: str) -> str:
    result = run_cli(data_dir, "keys", "create", "--owner", owner, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def moderated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("imgpipe-moderation")
    with running_rekognition() as standin:
        assert run_cli(data_dir, "db", "upgrade").returncode == 0
        keys = {
            "alice": _create_key(data_dir, "alice"),
            "root": _create_key(data_dir, "root", "--admin"),
        }
        settings = {
            **AWS_TEST_ENV,
            "IMGPIPE_MODERATION": "rekognition",
            "IMGPIPE_REKOGNITION_ENDPOINT_URL": standin.endpoint_url,
            "IMGPIPE_RECONCILE_S": "0.3",
            "IMGPIPE_RETRY_BASE_S": "0.2",
            "IMGPIPE_RETRY_MAX_S": "1",
            "IMGPIPE_MAX_ATTEMPTS": "100",  # a backend down for a while is not dead-lettered
            "IMGPIPE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
        }
        server = ImgpipeServer(data_dir, settings=settings)
        server.start()
        clients = {
            name: httpx.Client(
                base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            )
            for name, key in keys.items()
        }
        clients["anonymous"] = httpx.Client(base_url=server.base_url, timeout=30)
        try:
            yield {"server": server, "standin": standin, "data_dir": data_dir, **clients}
        finally:
            for client in clients.values():
                client.close()
            server.stop()


def _jpeg(colour: tuple[int, int, int], seed: int) -> bytes:
    image = Image.new("RGB", (400, 300), colour)
    image.putpixel((seed % 400, 0), (seed % 256, 0, 0))  # distinct bytes per upload
    out = io.BytesIO()
    image.save(out, "JPEG", quality=95)
    return out.getvalue()


def _settled(client: httpx.Client, image_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resource: dict[str, Any] = client.get(f"/v1/images/{image_id}").json()
        if resource["moderation"]["status"] not in ("pending", "error"):
            return resource
        assert time.monotonic() < deadline, f"moderation never settled: {resource['moderation']}"
        time.sleep(0.1)


def _signed(data_dir: Any, image_id: str) -> str:
    signed = run_cli(data_dir, "sign", f"/v1/render/{image_id}?w=100&format=webp")
    assert signed.returncode == 0, signed.stderr
    return signed.stdout.strip()


def test_verdicts_gate_keyless_delivery_but_never_the_owner(moderated: dict[str, Any]) -> None:
    alice, anonymous = moderated["alice"], moderated["anonymous"]
    ids = {}
    for seed, (name, colour) in enumerate((("red", RED), ("blue", BLUE), ("grey", GREY))):
        ids[name] = upload_ok(alice, _jpeg(colour, seed), f"{name}.jpg")["id"]
    for name, image_id in ids.items():
        resource = _settled(alice, image_id)
        assert wait_done(alice, image_id)["status"] == "done", name  # variants regardless
        ids[name] = (image_id, resource["moderation"])
    red, blue, grey = ids["red"][1], ids["blue"][1], ids["grey"][1]
    assert (red["status"], blue["status"], grey["status"]) == ("rejected", "review", "approved")
    assert red["model"] == "rekognition-7.0" and red["decided_by"] == "model:rekognition-7.0"
    assert {x["name"] for x in red["labels"]} == {"Violence", "Graphic Violence", "Blood & Gore"}
    assert blue["labels"][0] == {"name": "Explicit Nudity", "score": 0.72, "category": "nudity"}

    data_dir = moderated["data_dir"]
    ok = anonymous.get(_signed(data_dir, ids["grey"][0]))
    assert ok.status_code == 200 and ok.headers["cache-control"].startswith("public")
    for name, code in (("blue", "held_for_review"), ("red", "content_rejected")):
        image_id = ids[name][0]
        path = _signed(data_dir, image_id)
        refused = assert_problem(anonymous.get(path), 403, code)
        assert refused["detail"]
        assert anonymous.get(path).headers["cache-control"] == "no-store"
        # The owner's keyed requests are not held: the same signed URL, and the variant.
        assert alice.get(path).status_code == 200
        assert alice.get(f"/v1/images/{image_id}/variants/thumbnail").status_code == 200


def test_a_failing_backend_leaves_error_then_the_retry_approves(moderated: dict[str, Any]) -> None:
    alice, anonymous, standin = moderated["alice"], moderated["anonymous"], moderated["standin"]
    standin.fail_always = "ThrottlingException"
    try:
        image_id = upload_ok(alice, _jpeg(GREY, 77), "grey.jpg")["id"]
        deadline = time.monotonic() + 30
        while True:
            moderation = alice.get(f"/v1/images/{image_id}").json()["moderation"]
            if moderation["status"] == "error":
                break
            assert time.monotonic() < deadline, moderation
            time.sleep(0.05)
        assert moderation["error"]["code"] == "moderation_unavailable"
        assert "ThrottlingException" in moderation["error"]["message"]
        assert wait_done(alice, image_id)["status"] == "done"  # variants never wait
        path = _signed(moderated["data_dir"], image_id)
        waiting = anonymous.get(path)
        assert_problem(waiting, 409, "moderation_pending")
        assert waiting.headers["cache-control"] == "no-store"
        assert alice.get(path).status_code == 200  # the owner does not wait
    finally:
        standin.fail_always = None
    assert _settled(alice, image_id)["moderation"]["status"] == "approved"
    assert anonymous.get(path).status_code == 200


def test_admins_review_decide_and_every_decision_is_recorded(moderated: dict[str, Any]) -> None:
    alice, root, anonymous = moderated["alice"], moderated["root"], moderated["anonymous"]
    data_dir = moderated["data_dir"]
    image_id = upload_ok(alice, _jpeg(BLUE, 91), "blue.jpg")["id"]
    assert _settled(alice, image_id)["moderation"]["status"] == "review"
    wait_done(alice, image_id)

    queue = root.get("/v1/admin/moderation", params={"status": "review"})
    assert queue.status_code == 200, queue.text
    item = next(i for i in queue.json()["items"] if i["image"]["id"] == image_id)
    assert item["owner"] == "alice"
    thumb = root.get(item["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    assert thumb.headers["cache-control"].startswith("private")
    assert images.decode(thumb.content).size == (150, 150)

    decided = root.post(
        f"/v1/admin/images/{image_id}/moderation", json={"decision": "approve", "reason": "art"}
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["moderation"]["status"] == "approved"
    assert decided.json()["moderation"]["decided_by"].startswith("key:key_")
    assert anonymous.get(_signed(data_dir, image_id)).status_code == 200
    assert_problem(
        root.post(f"/v1/admin/images/{image_id}/moderation", json={"decision": "maybe"}),
        400,
        "bad_request",
    )
    assert_problem(
        root.post("/v1/admin/images/img_nope/moderation", json={"decision": "approve"}),
        404,
        "not_found",
    )

    # The CLI: list, then reject; the web of decisions is in the history.
    listed = run_cli(data_dir, "moderation", "list", "--status", "approved", "--json")
    assert listed.returncode == 0, listed.stderr
    assert image_id in {row["image_id"] for row in json.loads(listed.stdout)}
    rejected = run_cli(data_dir, "moderation", "reject", image_id, "--reason", "reported")
    assert rejected.returncode == 0, rejected.stderr
    assert f"{image_id} rejected" in rejected.stderr
    assert run_cli(data_dir, "moderation", "approve", "img_nope").returncode == 1
    assert_problem(anonymous.get(_signed(data_dir, image_id)), 403, "content_rejected")
    history = root.get(f"/v1/admin/images/{image_id}/moderation").json()
    assert [(d["status"], d["reason"]) for d in history["decisions"]] == [
        ("review", None),
        ("approved", "art"),
        ("rejected", "reported"),
    ]
    assert history["decisions"][0]["decided_by"] == "model:rekognition-7.0"
    assert history["decisions"][2]["decided_by"].startswith("cli:")


def test_non_admin_keys_are_refused_every_moderation_route(moderated: dict[str, Any]) -> None:
    alice, anonymous = moderated["alice"], moderated["anonymous"]
    image_id = upload_ok(alice, images.unique_png(seed=4242), "x.png")["id"]
    routes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/v1/admin/moderation", None),
        ("GET", f"/v1/admin/images/{image_id}/moderation", None),
        ("POST", f"/v1/admin/images/{image_id}/moderation", {"decision": "approve"}),
        ("GET", f"/v1/admin/images/{image_id}/variants/thumbnail", None),
    ]
    request: Callable[..., httpx.Response]
    for method, path, body in routes:
        request = alice.request
        assert_problem(request(method, path, json=body), 403, "forbidden")
        assert_problem(anonymous.request(method, path, json=body), 401, "unauthorized")
