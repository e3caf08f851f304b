"""A fault-injecting TCP proxy on loopback, switchable while traffic flows.

    with FaultProxy(("127.0.0.1", 5432)) as proxy:    # listens on 127.0.0.1:<free port>
        url = f"postgresql://...@127.0.0.1:{proxy.port}/db"
        proxy.set(Fault.REFUSE)                         # the database is unreachable
        proxy.set(Fault.PASS)                           # and back

Modes (``Fault``), applied to new connections and to live ones at their next chunk:

- ``PASS``: forward both ways.
- ``REFUSE``: the listening socket is closed, so a connect gets ECONNREFUSED; live
  connections are reset. Back to any other mode, it listens again on the same port.
- ``RESET``: new connections are accepted and reset at once (RST); live ones are reset
  at their next chunk.
- ``DELAY``: every chunk waits ``delay_s`` before it is forwarded.
- ``DROP``: the next server->client chunk is cut in half and both sides are closed
  (a response that ends mid-stream). With ``http=True`` an interim 1xx answer passes
  whole (see ``_interim``).
- ``CORRUPT_DOWN`` / ``CORRUPT_UP``: one byte of each message body flips (XOR 0x20) in
  the server->client / client->server direction. With ``http=True`` the proxy follows
  HTTP/1.1 framing (Content-Length, HEAD, 1xx/204/304) so only bodies are touched and
  headers stay parseable; without it a byte of every chunk flips.
- ``ANSWER_503`` (``http=True`` only): a request is not forwarded; the proxy answers
  ``HTTP/1.1 503 Slow Down`` with an S3-style XML error body and closes the connection.

``set(mode, count=N)`` applies a fault N times (N resets, N answers, N flipped bodies,
N delayed or dropped chunks) and then passes traffic again: a deterministic "the next two
requests fail" for testing retries.

Threads: one accepting, one per connection (a selector over both sockets). At most
``max_connections`` at once; more are reset. Binds 127.0.0.1 only, and forwards only to the
target given, which must be a loopback address. ``stop()`` (or leaving the ``with``) closes
everything and joins every thread.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import selectors
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

_CHUNK = 65536
_SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message>"
    b"<RequestId>fault-proxy</RequestId></Error>"
)
_SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\n"
    b"Content-Type: application/xml\r\n"
    b"Content-Length: " + str(len(_SLOW_DOWN_BODY)).encode() + b"\r\n"
    b"Connection: close\r\n\r\n" + _SLOW_DOWN_BODY
)


class Fault(enum.Enum):
    PASS = "pass"
    REFUSE = "refuse"
    RESET = "reset"
    DELAY = "delay"
    DROP = "drop"
    CORRUPT_DOWN = "corrupt_down"
    CORRUPT_UP = "corrupt_up"
    ANSWER_503 = "answer_503"
    # Everything is accepted and nothing ever answered, new connections included: a host
    # that drops packets, seen from a client whose kernel got its data acknowledged.
    BLACKHOLE = "blackhole"


@dataclass
class ProxyStats:
    """What the proxy did, for the tests' figures."""

    connections: int = 0
    resets: int = 0
    drops: int = 0
    corrupted: int = 0
    answered_503: int = 0
    swallowed: int = 0  # chunks a BLACKHOLE took and never forwarded
    delayed: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


def _reset(sock: socket.socket) -> None:
    """Close with RST, not FIN (SO_LINGER with a zero timeout)."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class _HttpFraming:
    """Where HTTP/1.1 message bodies start and end in one direction of a connection."""

    def __init__(self, requests: bool, methods: deque[str]) -> None:
        self.requests = requests  # client->server when True
        self.methods = methods  # request methods in flight, shared by both directions
        self.head = b""
        self.body_left = 0  # bytes of the current body still to come; -1: until close
        self.corrupted_this_body = False
        self.opaque = False  # framing we do not follow (chunked): touch nothing more

    def feed(self, data: bytes, corrupt: bool) -> tuple[bytes, int]:
        """Track ``data``; with ``corrupt``, flip one byte of each body. (data, flips)."""
        out = bytearray(data)
        flips = 0
        i = 0
        while i < len(out) and not self.opaque:
            if self.body_left != 0:
                take = len(out) - i if self.body_left < 0 else min(self.body_left, len(out) - i)
                if corrupt and not self.corrupted_this_body and take > 0:
                    out[i + take // 2] ^= 0x20
                    self.corrupted_this_body = True
                    flips += 1
                i += take
                if self.body_left > 0:
                    self.body_left -= take
                continue
            end = (self.head + bytes(out[i:])).find(b"\r\n\r\n")
            if end < 0:
                self.head += bytes(out[i:])
                break
            consumed = end + 4 - len(self.head)
            self._start(self.head + bytes(out[i : i + consumed]))
            self.head = b""
            i += consumed
        return bytes(out), flips

    def _start(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.corrupted_this_body = False
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.opaque = True
            return
        length = int(headers.get("content-length", "0") or 0)
        if self.requests:
            self.methods.append(lines[0].split(" ", 1)[0].upper())
            self.body_left = length
            return
        status = int(lines[0].split(" ")[1])
        if 100 <= status < 200:
            self.body_left = 0  # interim (100 Continue): the request is still in flight
            return
        method = self.methods.popleft() if self.methods else "GET"
        if method == "HEAD" or status in (204, 304):
            self.body_left = 0
        elif "content-length" in headers:
            self.body_left = length
        else:
            self.body_left = -1


class FaultProxy:
    def __init__(
        self,
        target: tuple[str, int],
        *,
        http: bool = False,
        delay_s: float = 1.0,
        max_connections: int = 256,
        port: int = 0,
    ) -> None:
        if not ipaddress.ip_address(target[0]).is_loopback:
            raise ValueError(f"the fault proxy only forwards to loopback, not {target[0]}")
        self.target = target
        self.http = http
        self.delay_s = delay_s
        self.max_connections = max_connections
        self.stats = ProxyStats()
        self._mode = Fault.PASS
        self._budget: int | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._listener: socket.socket | None = None
        self._port = port
        self._accept_thread: threading.Thread | None = None
        self._conns: dict[int, tuple[socket.socket, socket.socket | None]] = {}
        self._threads: list[threading.Thread] = []

    # --- control ----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._port}"

    @property
    def mode(self) -> Fault:
        return self._mode

    def start(self) -> FaultProxy:
        self._listen()
        return self

    def set(self, mode: Fault, *, count: int | None = None, delay_s: float | None = None) -> None:
        """Switch to ``mode`` now; with ``count``, back to PASS after that many faults."""
        if mode is Fault.ANSWER_503 and not self.http:
            raise ValueError("ANSWER_503 needs an HTTP proxy (http=True)")
        if count is not None and mode is Fault.REFUSE:
            raise ValueError("REFUSE lasts until the next set(); count does not apply")
        if delay_s is not None:
            self.delay_s = delay_s
        with self._lock:
            previous, self._mode = self._mode, mode
            self._budget = count
        if mode is Fault.REFUSE and previous is not Fault.REFUSE:
            self._close_listener()
            self.reset_all()
        elif mode is not Fault.REFUSE and previous is Fault.REFUSE:
            self._listen()

    def _spend(self, faults: int = 1) -> None:
        """Count faults applied; a spent budget switches back to PASS."""
        if faults <= 0:
            return
        with self._lock:
            if self._budget is None:
                return
            self._budget -= faults
            if self._budget <= 0:
                self._budget = None
                self._mode = Fault.PASS

    def reset_all(self) -> None:
        """Reset every live connection now (both sides see RST)."""
        with self._lock:
            conns = list(self._conns.values())
        for client, upstream in conns:
            _reset(client)
            if upstream is not None:
                _reset(upstream)
            self.stats.resets += 1

    def stop(self) -> None:
        self._stopped.set()
        self._close_listener()
        self.reset_all()
        for thread in [self._accept_thread, *self._threads]:
            if thread is not None:
                thread.join(timeout=10)
                assert not thread.is_alive(), f"fault proxy thread {thread.name} did not stop"

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # --- listening --------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self._port))
        listener.listen(128)
        listener.settimeout(0.1)
        self._port = listener.getsockname()[1]
        self._listener = listener
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=10)
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"fault-proxy-{self._port}"
        )
        self._accept_thread.start()

    def _close_listener(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=10)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopped.is_set() and self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by _close_listener
            self.stats.connections += 1
            with self._lock:
                full = len(self._conns) >= self.max_connections
                mode = self._mode
            if full or mode is Fault.RESET:
                _reset(client)
                self.stats.resets += 1
                if not full:
                    self._spend()
                continue
            thread = threading.Thread(
                target=self._serve, args=(client,), name=f"fault-proxy-conn-{self._port}"
            )
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
            thread.start()

    # --- one connection ---------------------------------------------------------------

    def _serve(self, client: socket.socket) -> None:
        key = id(client)
        upstream: socket.socket | None = None
        try:
            if self._mode not in (Fault.ANSWER_503, Fault.BLACKHOLE):
                upstream = socket.create_connection(self.target, timeout=5)
            with self._lock:
                self._conns[key] = (client, upstream)
            self._pump(client, upstream)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.pop(key, None)
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()

    def _pump(self, client: socket.socket, upstream: socket.socket | None) -> None:
        methods: deque[str] = deque()
        up = _HttpFraming(True, methods)
        down = _HttpFraming(False, methods)
        selector = selectors.DefaultSelector()
        pair = [client, upstream]
        try:
            selector.register(client, selectors.EVENT_READ, "up")
            if upstream is not None:
                selector.register(upstream, selectors.EVENT_READ, "down")
            while not self._stopped.is_set():
                for key, _ in selector.select(timeout=0.1):
                    source = key.fileobj
                    assert isinstance(source, socket.socket)
                    data = source.recv(_CHUNK)
                    if not data:
                        return
                    if key.data == "up":
                        if not self._client_data(data, pair, up, selector):
                            return
                    elif not self._server_data(data, client, pair[1], down):
                        return
        finally:
            selector.close()
            if pair[1] is not None and pair[1] is not upstream:
                with contextlib.suppress(OSError):
                    pair[1].close()

    def _client_data(
        self,
        data: bytes,
        pair: list[socket.socket | None],
        framing: _HttpFraming,
        selector: selectors.BaseSelector,
    ) -> bool:
        """Forward (or not) one client->server chunk; False ends the connection."""
        client, upstream = pair
        assert client is not None
        mode = self._mode
        if mode in (Fault.RESET, Fault.REFUSE):
            self._reset_pair(client, upstream)
            self._spend(1 if mode is Fault.RESET else 0)
            return False
        if mode is Fault.BLACKHOLE:
            self.stats.swallowed += 1
            return True
        if mode is Fault.ANSWER_503 and framing.body_left == 0 and not framing.head:
            self._answer_503(client, upstream, data)
            self._spend()
            return False
        if upstream is None:  # opened while ANSWER_503 was on, and no longer is
            upstream = pair[1] = socket.create_connection(self.target, timeout=5)
            selector.register(upstream, selectors.EVENT_READ, "down")
            with self._lock:
                self._conns[id(client)] = (client, upstream)
        if mode is Fault.DELAY:
            self.stats.delayed += 1
            self._spend()
            time.sleep(self.delay_s)
        if self.http:
            data, flips = framing.feed(data, mode is Fault.CORRUPT_UP)
        else:
            data, flips = (_flip(data), 1) if mode is Fault.CORRUPT_UP else (data, 0)
        self.stats.corrupted += flips
        self._spend(flips)
        upstream.sendall(data)
        self.stats.bytes_up += len(data)
        return True

    def _server_data(
        self,
        data: bytes,
        client: socket.socket,
        upstream: socket.socket | None,
        framing: _HttpFraming,
    ) -> bool:
        mode = self._mode
        if mode in (Fault.RESET, Fault.REFUSE):
            self._reset_pair(client, upstream)
            self._spend(1 if mode is Fault.RESET else 0)
            return False
        if mode is Fault.BLACKHOLE:
            self.stats.swallowed += 1
            return True
        if mode is Fault.DROP and not (self.http and _interim(data)):
            client.sendall(data[: len(data) // 2])
            self.stats.drops += 1
            self._spend()
            return False  # both sides closed by _serve
        if mode is Fault.DELAY:
            self.stats.delayed += 1
            self._spend()
            time.sleep(self.delay_s)
        if self.http:
            data, flips = framing.feed(data, mode is Fault.CORRUPT_DOWN)
        else:
            data, flips = (_flip(data), 1) if mode is Fault.CORRUPT_DOWN else (data, 0)
        self.stats.corrupted += flips
        self._spend(flips)
        client.sendall(data)
        self.stats.bytes_down += len(data)
        return True

    def _answer_503(
        self, client: socket.socket, upstream: socket.socket | None, first: bytes
    ) -> None:
        """Read the request head (and body, unless the client waits for 100 Continue),
        answer 503 Slow Down, close."""
        data = first
        client.settimeout(5)
        with contextlib.suppress(OSError):
            while b"\r\n\r\n" not in data and len(data) < 1 << 20:
                more = client.recv(_CHUNK)
                if not more:
                    break
                data += more
            head, _, body = data.partition(b"\r\n\r\n")
            text = head.decode("latin-1").lower()
            length = 0
            for line in text.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip() == "content-length":
                    length = int(value.strip() or 0)
            if "100-continue" not in text:
                left = length - len(body)
                while left > 0:
                    more = client.recv(min(left, _CHUNK))
                    if not more:
                        break
                    left -= len(more)
            client.sendall(_SLOW_DOWN)
            self.stats.answered_503 += 1
        if upstream is not None:
            with contextlib.suppress(OSError):
                upstream.close()

    def _reset_pair(self, client: socket.socket, upstream: socket.socket | None) -> None:
        _reset(client)
        if upstream is not None:
            _reset(upstream)
        self.stats.resets += 1


def _interim(data: bytes) -> bool:
    """A 1xx response (100 Continue). Cutting one hangs botocore 1.44: after the status
    line it reads header lines until a blank one and spins forever on EOF
    (``AWSConnection._consume_headers``), so DROP cuts final responses only; see
    docs/reliability.md."""
    return data.startswith(b"HTTP/1.1 1") or data.startswith(b"HTTP/1.0 1")


def _flip(data: bytes) -> bytes:
    out = bytearray(data)
    out[len(out) // 2] ^= 0x20
    return bytes(out)
