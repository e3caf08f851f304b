"""Egress checks and the webhook sender: never a packet to private space.

Private addresses reach the code only through an injected resolver; a socket guard fails
any test that tries to connect outside loopback. Receivers run on 127.0.0.1, allowed by
an explicit allow-list as a deployment would.
"""

from __future__ import annotations

import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from standardwebhooks import Webhook

from imgpipe.domain.webhooks import BadCallbackUrl
from imgpipe.notify import signing
from imgpipe.notify.egress import AllowList, check_url
from imgpipe.notify.sender import send

from .netguard import loopback_only

__all__ = ["loopback_only"]

PUBLIC = "93.184.215.14"  # only ever handed out by fake resolvers; never connected to


def resolver(table: dict[str, list[str]]) -> Any:
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError(f"no such host {host}")
        return table[host]

    return resolve


NO_DNS = resolver({})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.1.2.3:8080/hook",
        "http://[::1]/hook",
        "http://10.0.0.1/hook",
        "http://172.16.5.4/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
        "http://[fd12:3456::1]/hook",
        "http://0.0.0.0/hook",
        "http://[::]/hook",
        "http://224.0.0.1/hook",
        "http://100.64.0.1/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://[::ffff:169.254.169.254]/hook",
    ],
)
def test_private_loopback_link_local_and_metadata_addresses_are_refused(
    url: str, loopback_only: list[Any]
) -> None:
    with pytest.raises(BadCallbackUrl) as caught:
        check_url(url, AllowList(), NO_DNS)
    assert "address" in caught.value.detail


@pytest.mark.parametrize("private", ["10.1.2.3", "127.0.0.1", "169.254.169.254", "fd00::5"])
def test_a_name_resolving_to_a_private_address_is_refused(private: str) -> None:
    resolve = resolver({"hooks.example.com": [private]})
    with pytest.raises(BadCallbackUrl):
        check_url("https://hooks.example.com/in", AllowList(), resolve)


def test_one_private_address_among_public_ones_is_enough_to_refuse() -> None:
    resolve = resolver({"mixed.example.com": [PUBLIC, "10.0.0.7"]})
    with pytest.raises(BadCallbackUrl):
        check_url("https://mixed.example.com/in", AllowList(), resolve)


def test_a_public_name_is_accepted_with_its_addresses() -> None:
    resolve = resolver({"hooks.example.com": [PUBLIC]})
    target = check_url("https://hooks.example.com/in?x=1", AllowList(), resolve)
    assert target.addresses == (PUBLIC,) and target.port == 443


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "file:///etc/passwd", "gopher://x/", "http:///nohost", "x"]
)
def test_only_http_and_https_urls_with_a_host(url: str) -> None:
    with pytest.raises(BadCallbackUrl):
        check_url(url, AllowList(), resolver({"example.com": [PUBLIC], "x": [PUBLIC]}))


def test_an_unresolvable_name_is_refused() -> None:
    with pytest.raises(BadCallbackUrl, match="resolve"):
        check_url("https://nowhere.invalid/", AllowList(), NO_DNS)


def test_the_allow_list_opens_hosts_addresses_and_ranges() -> None:
    allow = AllowList.parse("127.0.0.1, 10.0.0.0/8, hooks.internal, ::1")
    assert check_url("http://127.0.0.1:9000/", allow, NO_DNS).addresses == ("127.0.0.1",)
    assert check_url("http://10.20.30.40/", allow, NO_DNS)
    assert check_url("http://[::1]:8000/", allow, NO_DNS)
    internal = resolver({"hooks.internal": ["192.168.3.3"]})
    assert check_url("http://hooks.internal/x", allow, internal).addresses == ("192.168.3.3",)
    with pytest.raises(BadCallbackUrl):
        check_url("http://192.168.3.3/", allow, NO_DNS)  # the name is allowed, not its address
    with pytest.raises(BadCallbackUrl):
        check_url("http://169.254.169.254/", allow, NO_DNS)


def test_a_bad_allow_list_entry_is_named() -> None:
    with pytest.raises(ValueError, match=r"10\.0\.0\.0/99"):
        AllowList.parse("10.0.0.0/99")


# --- the sender ---------------------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[tuple[int, dict[str, str]]]] = []
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        status, headers = type(self).answers.pop(0) if type(self).answers else (204, {})
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, type[_Receiver]]]:
    handler = type("Receiver", (_Receiver,), {"answers": [], "received": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


LOOPBACK_ALLOWED = AllowList.parse("127.0.0.1")
SECRET = signing.new_secret()
KEY = signing.secret_key(SECRET)


def test_a_delivery_is_signed_per_standard_webhooks(
    receiver: tuple[str, type[_Receiver]], loopback_only: list[Any]
) -> None:
    url, handler = receiver
    body = b'{"type":"image.done","timestamp":"2026-01-01T00:00:00Z","data":{}}'
    headers = signing.headers(KEY, "evt_1", int(time.time()), body)
    attempt = send(url + "/hook", body, headers, LOOPBACK_ALLOWED, 5, NO_DNS)
    assert attempt.ok and attempt.status_code == 204, attempt
    got_headers, got_body = handler.received[0]
    assert got_body == body
    assert got_headers["webhook-id"] == "evt_1"
    assert got_headers["content-type"] == "application/json"
    Webhook(SECRET).verify(got_body, got_headers)


def test_the_independent_verifier_refuses_another_secret() -> None:
    body = b'{"a":1}'
    now = int(time.time())
    headers = signing.headers(KEY, "msg_2", now, body)
    assert Webhook(SECRET).verify(body, headers) == {"a": 1}
    headers["webhook-signature"] = signing.sign(
        signing.secret_key(signing.new_secret()), "msg_2", now, body
    )
    with pytest.raises(Exception):  # noqa: B017 - the library's own error type
        Webhook(SECRET).verify(body, headers)


def test_a_redirect_is_never_followed(
    receiver: tuple[str, type[_Receiver]], loopback_only: list[Any]
) -> None:
    url, handler = receiver
    for location in ("http://10.0.0.1/steal", "http://169.254.169.254/latest/", url + "/ok"):
        handler.answers.append((302, {"Location": location}))
        attempt = send(url + "/hook", b"{}", {}, LOOPBACK_ALLOWED, 5, NO_DNS)
        assert not attempt.ok and attempt.status_code == 302
        assert attempt.error is not None and "not followed" in attempt.error
    assert len(handler.received) == 3  # only the first hop, each time
    assert loopback_only == []


def test_dns_rebinding_is_caught_at_delivery_time(loopback_only: list[Any]) -> None:
    """The name resolved to a public address at upload; now it resolves to a private one."""
    answers = iter([[PUBLIC], ["10.0.0.1"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    check_url("http://rebind.example.com/hook", AllowList(), rebinding)  # at upload: fine
    attempt = send("http://rebind.example.com/hook", b"{}", {}, AllowList(), 5, rebinding)
    assert not attempt.ok and attempt.status_code is None
    assert attempt.error is not None and attempt.error.startswith("refused")
    assert loopback_only == []


def test_the_sender_connects_to_the_checked_address_not_a_second_lookup(
    receiver: tuple[str, type[_Receiver]], loopback_only: list[Any]
) -> None:
    """A name that resolves once (to loopback, allowed here) is pinned: no second lookup."""
    url, handler = receiver
    port = int(url.rsplit(":", 1)[1])
    lookups: list[str] = []

    def once(host: str, p: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    attempt = send(f"http://hooks.test:{port}/x", b"{}", {}, AllowList.parse("127.0.0.1"), 5, once)
    assert attempt.ok, attempt
    assert lookups == ["hooks.test"]
    assert handler.received[0][0]["host"] == f"hooks.test:{port}"


def test_errors_and_timeouts_are_failed_attempts(
    receiver: tuple[str, type[_Receiver]], loopback_only: list[Any]
) -> None:
    url, handler = receiver
    handler.answers.append((500, {}))
    attempt = send(url, b"{}", {}, LOOPBACK_ALLOWED, 5, NO_DNS)
    assert not attempt.ok and attempt.status_code == 500 and attempt.error == "HTTP 500"

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the connection, never answers
        port = silent.getsockname()[1]
        attempt = send(f"http://127.0.0.1:{port}/", b"{}", {}, LOOPBACK_ALLOWED, 0.5, NO_DNS)
    assert not attempt.ok and attempt.error is not None and "timed out" in attempt.error
