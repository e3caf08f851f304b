"""Webhook events through the database: attempts recorded, retried on schedule, given up
after the retry window; two senders never send the same attempt twice."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import update

from imgpipe.db.schema import ImageRow, VariantRow, WebhookEventRow, utcnow
from imgpipe.domain.errors import NotFound
from imgpipe.jobs.messages import DeliverWebhook
from imgpipe.notify.egress import AllowList
from imgpipe.notify.signing import new_secret, secret_key
from imgpipe.services import webhooks
from imgpipe.services.deps import ServiceDeps, WebhookSettings

from .netguard import loopback_only
from .sqlite_deps import sqlite_deps

__all__ = ["loopback_only"]


class _Handler(http.server.BaseHTTPRequestHandler):
    statuses: ClassVar[list[int]] = []
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        type(self).bodies.append(self.rfile.read(int(self.headers["content-length"])))
        self.send_response(type(self).statuses.pop(0) if type(self).statuses else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"statuses": [], "bodies": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    server.shutdown()
    server.server_close()


@pytest.fixture
def deps(tmp_path: Path) -> Iterator[ServiceDeps]:
    with sqlite_deps(
        tmp_path,
        store=None,
        queue=None,
        webhooks=WebhookSettings(
            secret_key=secret_key(new_secret()),
            allow=AllowList.parse("127.0.0.1"),
            schedule_s=(5.0, 60.0),
            retry_for_s=3600.0,
            timeout_s=5.0,
            queue=None,  # attempts run inline: the test drives the clock through due_at
        ),
    ) as deps:
        yield deps


def _image(
    deps: ServiceDeps,
    url: str | None,
    status: str = "done",
    image_id: str = "img_01jd0000000000000000000000",
) -> str:
    with deps.sessions.begin() as session:
        session.add(
            ImageRow(
                id=image_id,
                owner="alice",
                sha256="0" * 64,
                bytes=10,
                format="png",
                width=4,
                height=3,
                frames=1,
                status=status,
                callback_url=url,
                image_metadata={},
                variants=[
                    VariantRow(
                        name="thumbnail",
                        profile="thumbnail",
                        profile_digest="d",
                        format="webp",
                        status="done" if status == "done" else "failed",
                        attempts=1,
                    )
                ],
            )
        )
    return image_id


def _emit(deps: ServiceDeps, image_id: str) -> str | None:
    """What processing does once an image settles: record its event in a transaction,
    then hand it out (services/process.py)."""
    with deps.sessions.begin() as session:
        image = session.get(ImageRow, image_id)
        assert image is not None
        event_id = webhooks.record_event(deps, session, image)
    if event_id is not None:
        webhooks.hand_out_first(deps, event_id)
    return event_id


def _make_due(deps: ServiceDeps, event_id: str) -> None:
    with deps.sessions.begin() as session:
        session.execute(
            update(WebhookEventRow)
            .where(WebhookEventRow.id == event_id)
            .values(due_at=utcnow() - timedelta(seconds=1))
        )


def test_a_settled_image_is_delivered_once_with_its_resource(
    deps: ServiceDeps, receiver: tuple[str, type[_Handler]], loopback_only: list[Any]
) -> None:
    url, handler = receiver
    image_id = _image(deps, url)
    event_id = _emit(deps, image_id)
    assert event_id is not None
    body = json.loads(handler.bodies[0])
    assert body["type"] == "image.done" and body["data"]["id"] == image_id
    assert "name" not in body["data"]["variants"]["thumbnail"]
    [event] = webhooks.list_for_image(deps, image_id, "alice")
    assert event.status == "delivered" and [d.status_code for d in event.deliveries] == [200]
    assert webhooks.sweep(deps) == 0  # nothing left to send
    for other_image, owner in (("img_01jd0000000000000000000001", "alice"), (image_id, "bob")):
        with pytest.raises(NotFound):
            webhooks.list_for_image(deps, other_image, owner)


def test_failures_are_retried_on_schedule_until_delivered(
    deps: ServiceDeps, receiver: tuple[str, type[_Handler]], loopback_only: list[Any]
) -> None:
    url, handler = receiver
    handler.statuses += [500, 503]
    event_id = _emit(deps, _image(deps, url, "failed"))
    assert event_id is not None
    [event] = webhooks.list_for_image(deps, "img_01jd0000000000000000000000", "alice")
    assert event.type == "image.failed" and event.status == "pending" and event.attempts == 1
    assert event.next_attempt_at is not None
    wait = (event.next_attempt_at - event.deliveries[0].finished_at).total_seconds()
    assert 4.5 < wait < 5.5  # the first step of the schedule
    assert webhooks.sweep(deps) == 0  # not due yet
    _make_due(deps, event_id)
    assert webhooks.sweep(deps) == 1
    _make_due(deps, event_id)
    assert webhooks.sweep(deps) == 1
    [event] = webhooks.list_for_image(deps, "img_01jd0000000000000000000000", "alice")
    assert [d.status_code for d in event.deliveries] == [500, 503, 200]
    assert [d.attempt for d in event.deliveries] == [1, 2, 3]
    assert event.status == "delivered" and len(handler.bodies) == 3
    assert len(set(handler.bodies)) == 1  # the same body every time


def test_an_attempt_is_sent_once_however_many_copies_of_its_message(
    deps: ServiceDeps, receiver: tuple[str, type[_Handler]], loopback_only: list[Any]
) -> None:
    url, handler = receiver
    handler.statuses.append(500)
    event_id = _emit(deps, _image(deps, url))
    assert event_id is not None
    assert not webhooks.deliver(deps, DeliverWebhook(event_id, 1))  # a duplicate of attempt 1
    assert len(handler.bodies) == 1


def test_it_gives_up_after_the_retry_window(
    deps: ServiceDeps, receiver: tuple[str, type[_Handler]], loopback_only: list[Any]
) -> None:
    url, handler = receiver
    handler.statuses += [500] * 10
    event_id = _emit(deps, _image(deps, url))
    assert event_id is not None
    with deps.sessions.begin() as session:  # the event happened 59 minutes ago
        session.execute(
            update(WebhookEventRow)
            .where(WebhookEventRow.id == event_id)
            .values(created_at=utcnow() - timedelta(minutes=59))
        )
    _make_due(deps, event_id)
    webhooks.sweep(deps)  # attempt 2 fails; the next one (60 s) would be past the hour
    [event] = webhooks.list_for_image(deps, "img_01jd0000000000000000000000", "alice")
    assert event.status == "failed" and event.next_attempt_at is None
    assert len(event.deliveries) == 2


def test_no_callback_url_or_an_unsettled_image_sends_nothing(deps: ServiceDeps) -> None:
    assert _emit(deps, _image(deps, None)) is None
    unsettled = _image(
        deps, "http://127.0.0.1:9/hook", "processing", "img_01jd0000000000000000000001"
    )
    assert _emit(deps, unsettled) is None
