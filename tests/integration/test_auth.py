"""With API keys, every request needs one, an owner sees only its own images, and each
key has its own rate limits.

Creating a key takes a server out of single-user mode, so every test here runs its own
server, never the shared one.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import images
from .conftest import (
    BUILT_IN_PROFILES,
    ImgpipeServer,
    _free_port,
    assert_problem,
    run_cli,
    server_env,
    upload,
    upload_and_wait,
    upload_ok,
    wait_done,
)


def _create_key(data_dir: Path, owner: str, *extra: str) -> str:
    result = run_cli(data_dir, "keys", "create", "--owner", owner, *extra)
    assert result.returncode == 0, f"keys create: {result.returncode} {result.stderr}"
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, f"keys create should print the key alone: {result.stdout!r}"
    key = lines[0].strip()
    assert key.startswith("imgp_") and len(key) >= 37
    return key


def _key_id(data_dir: Path, owner: str) -> str:
    listing = run_cli(data_dir, "keys", "list")
    assert listing.returncode == 0, listing.stderr
    rows = [line for line in listing.stdout.splitlines() if f" {owner} " in line]
    assert len(rows) == 1, listing.stdout
    return next(word for word in rows[0].split() if word.startswith("key_"))


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A private server whose database holds keys for alice, bob, and carol (revoked)."""
    data_dir = tmp_path_factory.mktemp("imgpipe-auth")
    upgrade = run_cli(data_dir, "db", "upgrade")
    assert upgrade.returncode == 0, f"db upgrade: {upgrade.stderr}"
    keys = {name: _create_key(data_dir, name) for name in ("alice", "bob", "carol")}
    keys["root"] = _create_key(data_dir, "root", "--admin")
    assert len(set(keys.values())) == 4
    revoked = run_cli(data_dir, "keys", "revoke", _key_id(data_dir, "carol"))
    assert revoked.returncode == 0, revoked.stderr
    instance = ImgpipeServer(data_dir)
    instance.start()
    try:
        yield {"server": instance, "keys": keys, "data_dir": data_dir}
    finally:
        instance.stop()


@pytest.fixture(scope="module")
def as_owner(keyed: dict[str, Any]) -> Iterator[Callable[[str | None], httpx.Client]]:
    keys = {**keyed["keys"], "nobody": "imgp_not-a-real-key"}
    clients: dict[str | None, httpx.Client] = {}

    def client_for(owner: str | None) -> httpx.Client:
        if owner not in clients:
            headers = {"Authorization": f"Bearer {keys[owner]}"} if owner else {}
            clients[owner] = httpx.Client(
                base_url=keyed["server"].base_url, headers=headers, timeout=30
            )
        return clients[owner]

    yield client_for
    for http in clients.values():
        http.close()


def test_keys_are_stored_hashed(keyed: dict[str, Any]) -> None:
    database = (keyed["data_dir"] / "imgpipe.db").read_bytes()
    for key in keyed["keys"].values():
        assert key.encode() not in database
        assert key[5:].encode() not in database


def test_the_server_says_keys_are_required(keyed: dict[str, Any]) -> None:
    log = keyed["server"].log_text().lower()
    assert "single-user" not in log and "api keys exist" in log


@pytest.mark.parametrize(
    "owner", [None, "nobody", "carol"], ids=["no-key", "unknown-key", "revoked-key"]
)
def test_requests_without_a_valid_key_are_unauthorised(
    as_owner: Callable[[str | None], httpx.Client], owner: str | None
) -> None:
    http = as_owner(owner)
    for response in (
        upload(http, images.still("png", 64, 48), "x.png"),
        http.get("/v1/images"),
        http.post("/v1/uploads", json={"filename": "a.jpg", "bytes": 10}),
    ):
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"].lower().startswith("bearer")
    assert http.get("/healthz").status_code == 200  # liveness needs no key


def test_a_malformed_authorization_header_is_unauthorised(keyed: dict[str, Any]) -> None:
    base = keyed["server"].base_url
    for value in ("Basic YWxpY2U6eA==", "Bearer", keyed["keys"]["alice"]):
        response = httpx.get(f"{base}/v1/images", headers={"Authorization": value})
        assert_problem(response, 401, "unauthorized")


def _direct_upload(http: httpx.Client) -> str:
    data = images.unique_png(seed=777)
    ticket = http.post("/v1/uploads", json={"filename": "d.png", "bytes": len(data)})
    assert ticket.status_code == 201, ticket.text
    target = ticket.json()["upload"]
    sent = httpx.put(target["url"], content=data, headers=target["headers"], timeout=30)
    assert sent.status_code == 204, sent.text
    image_id: str = ticket.json()["image_id"]
    return image_id


def test_the_isolation_matrix(as_owner: Callable[[str | None], httpx.Client]) -> None:
    """Every owner-scoped route x (own, another owner's, no key, revoked key)."""
    alice = as_owner("alice")
    image_id = upload_and_wait(alice, images.unique_png(seed=701), "alice.png")["id"]
    pending_upload = _direct_upload(alice)
    routes: list[tuple[str, str, int]] = [  # method, path, status for the owner
        ("GET", f"/v1/images/{image_id}", 200),
        ("GET", f"/v1/images/{image_id}/original", 200),
        *(("GET", f"/v1/images/{image_id}/variants/{name}", 200) for name in BUILT_IN_PROFILES),
        ("GET", f"/v1/images/{image_id}/webhooks", 200),
        ("GET", f"/v1/images/{image_id}/similar", 200),
        ("POST", f"/v1/images/{image_id}/reprocess", 202),
        ("POST", f"/v1/images/{pending_upload}/complete", 202),
        ("DELETE", f"/v1/images/{image_id}", 204),  # last: it removes the image
    ]
    for method, path, _ in routes:
        assert_problem(as_owner("bob").request(method, path), 404, "not_found")
        assert_problem(as_owner(None).request(method, path), 401, "unauthorized")
        assert_problem(as_owner("carol").request(method, path), 401, "unauthorized")
    bob_ids = [item["id"] for item in as_owner("bob").get("/v1/images").json()["items"]]
    assert image_id not in bob_ids and pending_upload not in bob_ids

    # Nobody else's attempts changed anything: alice still has everything, and can do it all.
    for method, path, status in routes:
        if method == "DELETE":
            wait_done(alice, image_id)
        response = alice.request(method, path)
        assert response.status_code == status, f"{method} {path}: {response.text[:300]}"
    listed = [item["id"] for item in alice.get("/v1/images").json()["items"]]
    assert pending_upload in listed and image_id not in listed


def test_an_owner_lists_only_its_own_images(
    as_owner: Callable[[str | None], httpx.Client],
) -> None:
    mine = upload_ok(as_owner("bob"), images.unique_png(seed=702), "bob.png")["id"]
    theirs = upload_ok(as_owner("alice"), images.unique_png(seed=702), "same-bytes.png")["id"]
    bob_ids = [item["id"] for item in as_owner("bob").get("/v1/images").json()["items"]]
    alice_ids = [item["id"] for item in as_owner("alice").get("/v1/images").json()["items"]]
    assert mine in bob_ids and theirs not in bob_ids
    assert theirs in alice_ids and mine not in alice_ids


def test_a_key_revoked_while_the_server_runs_stops_working_at_once(
    keyed: dict[str, Any],
) -> None:
    data_dir = keyed["data_dir"]
    key = _create_key(data_dir, "dave")
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{keyed['server'].base_url}/v1/images"
    assert httpx.get(url, headers=headers).status_code == 200
    assert run_cli(data_dir, "keys", "revoke", _key_id(data_dir, "dave")).returncode == 0
    assert_problem(httpx.get(url, headers=headers), 401, "unauthorized")


def test_me_says_who_the_caller_is(as_owner: Callable[[str | None], httpx.Client]) -> None:
    alice = as_owner("alice").get("/v1/me")
    assert alice.status_code == 200, alice.text
    assert (alice.json()["owner"], alice.json()["admin"]) == ("alice", False)
    assert alice.json()["key_id"]
    assert as_owner("root").get("/v1/me").json()["admin"] is True
    assert_problem(as_owner(None).get("/v1/me"), 401, "unauthorized")
    assert_problem(as_owner("carol").get("/v1/me"), 401, "unauthorized")  # revoked


def test_admin_endpoints_need_an_admin_key(
    as_owner: Callable[[str | None], httpx.Client], keyed: dict[str, Any]
) -> None:
    assert_problem(as_owner("alice").get("/v1/admin/keys"), 403, "forbidden")
    assert_problem(as_owner(None).get("/v1/admin/keys"), 401, "unauthorized")
    listed = as_owner("root").get("/v1/admin/keys")
    assert listed.status_code == 200, listed.text
    owners = {item["owner"]: item for item in listed.json()["items"]}
    assert {"alice", "bob", "carol", "root"} <= set(owners)
    assert owners["root"]["admin"] and not owners["alice"]["admin"]
    assert owners["carol"]["revoked_at"] is not None
    assert all(key not in listed.text for key in keyed["keys"].values())
    # Dead letters name every owner's images: admin keys only, like the key list.
    assert_problem(as_owner("alice").get("/v1/admin/dead-letters"), 403, "forbidden")
    retry = as_owner("alice").post("/v1/admin/dead-letters/dlq_x/retry")
    assert_problem(retry, 403, "forbidden")
    dead = as_owner("root").get("/v1/admin/dead-letters")
    assert dead.status_code == 200 and dead.json() == {"items": []}, dead.text
    assert_problem(as_owner("root").post("/v1/admin/dead-letters/dlq_x/retry"), 404, "not_found")


def test_moderation_admin_routes_need_an_admin_key(
    as_owner: Callable[[str | None], httpx.Client],
) -> None:
    """The review queue and decisions act across owners: admin keys only."""
    alice = as_owner("alice")
    image_id = upload_and_wait(alice, images.unique_png(seed=733), "held.png")["id"]
    routes: list[tuple[str, str, dict[str, str] | None, int]] = [  # ..., status for root
        ("GET", "/v1/admin/moderation", None, 200),
        ("GET", f"/v1/admin/images/{image_id}/moderation", None, 200),
        ("GET", f"/v1/admin/images/{image_id}/variants/thumbnail", None, 200),
        ("POST", f"/v1/admin/images/{image_id}/moderation", {"decision": "reject"}, 200),
    ]
    for method, path, body, _ in routes:
        for caller in ("alice", "bob"):
            assert_problem(as_owner(caller).request(method, path, json=body), 403, "forbidden")
        assert_problem(as_owner(None).request(method, path, json=body), 401, "unauthorized")
        assert_problem(as_owner("carol").request(method, path, json=body), 401, "unauthorized")
    # Nothing the refused keys sent was decided; the admin's calls all work.
    assert alice.get(f"/v1/images/{image_id}").json()["moderation"]["status"] == "off"
    for method, path, body, status in routes:
        response = as_owner("root").request(method, path, json=body)
        assert response.status_code == status, f"{method} {path}: {response.text[:300]}"
    assert alice.get(f"/v1/images/{image_id}").json()["moderation"]["status"] == "rejected"


def test_revoking_an_unknown_key_fails(keyed: dict[str, Any]) -> None:
    result = run_cli(keyed["data_dir"], "keys", "revoke", "key_000000000000")
    assert result.returncode != 0 and "key_000000000000" in result.stderr


# --- rate limits -----------------------------------------------------------------------------


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A server with low limits: 2 uploads and 5 other calls per minute per key."""
    keys = {name: _create_key(tmp_path, name) for name in ("alice", "bob")}
    instance = ImgpipeServer(
        tmp_path,
        settings={
            "IMGPIPE_RATE_LIMIT_UPLOADS": "2/minute",
            "IMGPIPE_RATE_LIMIT_REQUESTS": "5/minute",
        },
    )
    instance.start()
    try:
        yield instance.base_url, keys
    finally:
        instance.stop()


def test_each_key_has_its_own_upload_and_request_buckets(
    limited: tuple[str, dict[str, str]],
) -> None:
    base_url, keys = limited
    alice = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {keys['alice']}"})
    bob = httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {keys['bob']}"})
    with alice, bob:
        answers = [alice.get("/v1/images") for _ in range(5)]
        assert [r.status_code for r in answers] == [200] * 5
        assert [r.headers["ratelimit-remaining"] for r in answers] == ["4", "3", "2", "1", "0"]
        assert all(r.headers["ratelimit-limit"] == "5" for r in answers)
        refused = alice.get("/v1/images")
        assert_problem(refused, 429, "rate_limited")
        assert 1 <= int(refused.headers["retry-after"]) <= 12  # one token: 60 s / 5
        assert refused.headers["ratelimit-remaining"] == "0"
        assert int(refused.headers["ratelimit-reset"]) > 0

        # Uploads count apart: alice may still upload twice, then not.
        for seed in (801, 802):
            response = upload(alice, images.unique_png(seed=seed), "u.png")
            assert response.status_code == 202, response.text
            assert response.headers["ratelimit-limit"] == "2"
        assert_problem(upload(alice, images.unique_png(seed=803), "u.png"), 429, "rate_limited")

        # Another key is not affected.
        assert bob.get("/v1/images").status_code == 200
        assert upload(bob, images.unique_png(seed=804), "b.png").status_code == 202
        # Liveness is never limited.
        assert all(alice.get("/healthz").status_code == 200 for _ in range(10))


# --- start-up rules (SPEC §4) ----------------------------------------------------------------


def test_with_a_key_serve_may_bind_any_address(tmp_path: Path) -> None:
    _create_key(tmp_path, "alice")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "imgpipe", "serve", "--host", "0.0.0.0", "--port", str(port)],
        cwd=tmp_path,
        env=server_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        healthy = False
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(httpx.TransportError):
                healthy = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).is_success
            if healthy:
                break
            time.sleep(0.1)
        assert healthy, f"serve exited with {process.poll()}"
        assert_problem(httpx.get(f"http://127.0.0.1:{port}/v1/images"), 401, "unauthorized")
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0].decode(errors="replace")
    assert "single-user" not in output.lower()


def test_auth_required_refuses_requests_before_any_key_exists(tmp_path: Path) -> None:
    instance = ImgpipeServer(tmp_path, settings={"IMGPIPE_AUTH": "required"})
    instance.start()
    try:
        response = httpx.get(f"{instance.base_url}/v1/images")
        assert_problem(response, 401, "unauthorized")
        key = _create_key(tmp_path, "erin")
        ok = httpx.get(f"{instance.base_url}/v1/images", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200
    finally:
        instance.stop()


def test_a_signed_render_url_needs_no_key_but_a_key_still_scopes_it(
    keyed: dict[str, Any], as_owner: Callable[[str | None], httpx.Client]
) -> None:
    """A signed URL works in an <img> tag (no key); sent with a key it is owner-scoped."""
    alice = as_owner("alice")
    image_id = upload_and_wait(alice, images.still("jpeg", 640, 480), "render.jpg")["id"]
    signed = run_cli(keyed["data_dir"], "sign", f"/v1/render/{image_id}?w=200&format=webp")
    assert signed.returncode == 0, signed.stderr
    path = signed.stdout.strip()

    anonymous = as_owner(None).get(path)
    assert anonymous.status_code == 200, anonymous.text
    assert images.decode(anonymous.content).size[0] == 200
    assert alice.get(path).status_code == 200
    assert_problem(as_owner("bob").get(path), 404, "not_found")
    unsigned = f"/v1/render/{image_id}?w=200&format=webp"
    assert as_owner(None).get(unsigned).status_code in (401, 403)
    forged = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert_problem(as_owner(None).get(forged), 403, "bad_signature")
