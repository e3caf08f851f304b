"""Webhooks end to end: a real receiver on loopback (allowed by this server's settings)
checks every signature with the independent `standardwebhooks` package.

Callback URLs here are loopback only; private addresses are only ever refused at upload,
before any connection (the delivery-time checks run in tests/unit/test_egress.py, behind
a socket guard and a patched resolver).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from backends import ALL_BACKENDS, AMQP_URL, REDIS_URL, BackendSpec, purge_queue

from . import images
from .conftest import (
    ImgpipeServer,
    _free_port,
    assert_problem,
    backend_settings,
    wait_done,
)


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that keeps every request it gets."""

    def __init__(self, port: int = 0) -> None:
        received: list[dict[str, Any]] = []
        answers: list[tuple[int, dict[str, str]]] = []
        self.received, self.answers = received, answers

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                received.append({"path": self.path, "headers": headers, "body": body})
                status, extra = answers.pop(0) if answers else (200, {})
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def events_for(self, image_id: str) -> list[dict[str, Any]]:
        return [r for r in self.received if json.loads(r["body"])["data"]["id"] == image_id]

    def wait_for(self, image_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.events_for(image_id)
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no webhook for {image_id} within {timeout}s: {self.received}")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module", params=ALL_BACKENDS, ids=lambda spec: spec.name)
def hooked(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ImgpipeServer, str]]:
    """A server that may call back to 127.0.0.1 and retries fast; with its secret."""
    spec: BackendSpec = request.param
    with contextlib.ExitStack() as stack:
        settings, lister = backend_settings(spec, stack, request)
        if spec.broker is not None:
            url = REDIS_URL if spec.broker == "redis" else AMQP_URL
            stack.callback(purge_queue, url, f"{settings['IMGPIPE_QUEUE_NAME']}.webhooks")
        settings.update(
            {
                "IMGPIPE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",
                "IMGPIPE_WEBHOOK_RETRY_SCHEDULE": "0.5,1",
                "IMGPIPE_WEBHOOK_SWEEP_S": "0.2",
                "IMGPIPE_WEBHOOK_TIMEOUT_S": "3",
            }
        )
        data_dir = tmp_path_factory.mktemp(f"hooks-{spec.name}")
        instance = ImgpipeServer(data_dir, spec, settings, lister)
        instance.start()
        stack.callback(instance.stop)
        secret = (data_dir / "imgpipe-data" / "webhook_secret").read_text().strip()
        assert secret.startswith("whsec_")
        yield instance, secret


@pytest.fixture(scope="module")
def hooked_client(hooked: tuple[ImgpipeServer, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hooked[0].base_url, timeout=30) as http:
        yield http


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    instance = Receiver()
    yield instance
    instance.close()


def _upload(http: httpx.Client, seed: int, callback_url: str) -> str:
    response = http.post(
        "/v1/images",
        files={"file": ("hook.png", images.unique_png(seed=seed), "image/png")},
        data={"callback_url": callback_url},
    )
    assert response.status_code == 202, response.text
    image_id: str = response.json()["id"]
    return image_id


def _deliveries(http: httpx.Client, image_id: str) -> list[dict[str, Any]]:
    response = http.get(f"/v1/images/{image_id}/webhooks")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_finished_image_is_posted_signed_with_its_resource(
    hooked: tuple[ImgpipeServer, str], hooked_client: httpx.Client, receiver: Receiver
) -> None:
    _, secret = hooked
    image_id = _upload(hooked_client, 1001, receiver.url())
    resource = wait_done(hooked_client, image_id)
    request = receiver.wait_for(image_id)

    assert request["path"] == "/hook"
    headers = request["headers"]
    assert headers["content-type"] == "application/json"
    payload = Webhook(secret).verify(request["body"], headers)  # raises unless signed right
    assert headers["webhook-id"].startswith("evt_")
    assert payload["type"] == "image.done"
    assert payload["data"] == hooked_client.get(f"/v1/images/{image_id}").json() == resource
    assert payload["timestamp"].endswith("Z")

    deadline = time.monotonic() + 10
    while (events := _deliveries(hooked_client, image_id))[0]["status"] != "delivered":
        assert time.monotonic() < deadline, events
        time.sleep(0.1)
    [event] = events
    assert event["id"] == headers["webhook-id"] and event["type"] == "image.done"
    assert event["url"] == receiver.url() and event["attempts"] == 1
    assert [d["status_code"] for d in event["deliveries"]] == [200]
    assert event["deliveries"][0]["duration_ms"] >= 0
    assert len(receiver.events_for(image_id)) == 1


def test_a_receiver_that_was_down_gets_every_event_once_it_is_back(
    hooked_client: httpx.Client, hooked: tuple[ImgpipeServer, str]
) -> None:
    port = _free_port()  # nothing listens here yet: connections are refused
    url = f"http://127.0.0.1:{port}/later"
    image_ids = [_upload(hooked_client, 1010 + n, url) for n in range(3)]
    for image_id in image_ids:
        wait_done(hooked_client, image_id)

    deadline = time.monotonic() + 30
    while True:  # every event has failed at least twice
        events = [_deliveries(hooked_client, image_id) for image_id in image_ids]
        if all(e and len(e[0]["deliveries"]) >= 2 for e in events):
            break
        assert time.monotonic() < deadline, events
        time.sleep(0.1)
    for [event] in events:
        assert event["status"] == "pending" and event["next_attempt_at"]
        assert all(d["status_code"] is None and d["error"] for d in event["deliveries"])

    receiver = Receiver(port)
    try:
        for image_id in image_ids:
            request = receiver.wait_for(image_id, timeout=30)
            Webhook(hooked[1]).verify(request["body"], request["headers"])
        time.sleep(1.5)  # time for a duplicate to show up, if the sender made one
        ids = [r["headers"]["webhook-id"] for r in receiver.received]
        assert len(ids) == len(set(ids)) == 3, ids
    finally:
        receiver.close()
    for image_id in image_ids:
        [event] = _deliveries(hooked_client, image_id)
        assert event["status"] == "delivered", event
        attempts = [d["attempt"] for d in event["deliveries"]]
        assert attempts == list(range(1, len(attempts) + 1)) and len(attempts) >= 3
        assert event["deliveries"][-1]["status_code"] == 200


def test_a_redirect_is_recorded_as_a_failure_and_not_followed(
    hooked_client: httpx.Client, receiver: Receiver
) -> None:
    receiver.answers.append((302, {"Location": receiver.url("/elsewhere")}))
    image_id = _upload(hooked_client, 1020, receiver.url())
    wait_done(hooked_client, image_id)
    deadline = time.monotonic() + 30
    while (events := _deliveries(hooked_client, image_id)) == [] or events[0][
        "status"
    ] != "delivered":
        assert time.monotonic() < deadline, events
        time.sleep(0.1)
    first = events[0]["deliveries"][0]
    assert first["status_code"] == 302 and "not followed" in first["error"]
    assert [r["path"] for r in receiver.received] == ["/hook", "/hook"]  # retried, not followed


def test_the_webhook_listing_of_an_unknown_image_is_404(hooked_client: httpx.Client) -> None:
    missing = hooked_client.get("/v1/images/img_00000000000000000000000000/webhooks")
    assert_problem(missing, 404, "not_found")


@pytest.mark.parametrize(
    "callback_url",
    [
        "http://127.0.0.1/hook",
        "http://127.0.0.1:8000/v1/images",
        "http://[::1]/hook",
        "http://10.0.0.1/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://0.0.0.0/",
        "http://localhost/hook",  # a name resolving to a loopback address
        "ftp://example.com/hook",
        "not a url",
    ],
)
def test_callback_urls_to_private_space_are_refused_at_upload(
    client: httpx.Client, callback_url: str
) -> None:
    """On the shared server (no allow-list): refused before anything is stored or sent."""
    response = client.post(
        "/v1/images",
        files={"file": ("x.png", images.unique_png(seed=1030), "image/png")},
        data={"callback_url": callback_url},
    )
    assert_problem(response, 400, "bad_callback_url")
