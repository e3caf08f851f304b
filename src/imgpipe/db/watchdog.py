"""A bound on every PostgreSQL round trip, for a database that stops answering.

A database that refuses connections fails fast. One that black-holes packets (a dead
host, a firewall dropping traffic, a half-open connection behind a NAT) does not: libpq
has no timeout on a statement, and TCP notices only when unacknowledged data times out
(``tcp_user_timeout``, set in session.py) — never when the data was acknowledged by a
middlebox that then says nothing, nor while the connection is idle waiting for an answer.
So the API thread or the worker would wait for hours.

The watchdog keeps the start time of every statement and ping in flight; one daemon
thread shuts down the socket of any that runs past its limit. libpq then sees the
connection end, psycopg raises ``OperationalError``, SQLAlchemy marks it a disconnect and
session.py turns it into ``DatabaseUnavailable`` (503, retryable); the pool discards the
connection. Only the socket is shut down (``shutdown``, not ``close``): the descriptor
stays libpq's, so nothing else can reuse the number while libpq still holds it.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Engine, event

log = logging.getLogger(__name__)

_TICK_S = 0.25


class StatementWatchdog:
    """Ends connections whose current statement has run longer than ``limit_s``."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._lock = threading.Lock()
        self._deadlines: dict[int, tuple[float, Any]] = {}  # id(dbapi conn) -> (when, conn)
        self._thread: threading.Thread | None = None
        self.interrupted = 0

    def begin(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._deadlines[id(dbapi_connection)] = (
                time.monotonic() + self.limit_s,
                dbapi_connection,
            )
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="imgpipe-db-watchdog", daemon=True
                )
                self._thread.start()

    def end(self, dbapi_connection: Any) -> None:
        with self._lock:
            self._deadlines.pop(id(dbapi_connection), None)

    @contextlib.contextmanager
    def watch(self, dbapi_connection: Any) -> Iterator[None]:
        self.begin(dbapi_connection)
        try:
            yield
        finally:
            self.end(dbapi_connection)

    def _watch(self) -> None:
        while True:
            time.sleep(_TICK_S)
            now = time.monotonic()
            with self._lock:
                late = [c for when, c in self._deadlines.values() if when <= now]
                for connection in late:
                    self._deadlines.pop(id(connection), None)
            for connection in late:
                self._interrupt(connection)

    def _interrupt(self, dbapi_connection: Any) -> None:
        try:
            fd = dbapi_connection.pgconn.socket
            # A duplicate of the descriptor: shutting it down ends the connection for
            # libpq too, and closing our duplicate leaves libpq's descriptor alone.
            with socket.socket(fileno=socket.dup(fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except Exception:  # already closed, or not a psycopg connection
            return
        self.interrupted += 1
        log.warning(
            "database round trip ran past %.0f s: connection ended (database_unavailable)",
            self.limit_s,
        )


def install(engine: Engine, limit_s: float) -> StatementWatchdog:
    """Watch every statement and every pool pre-ping of ``engine`` (PostgreSQL only)."""
    watchdog = StatementWatchdog(limit_s)

    def before(conn: Any, cursor: Any, statement: Any, *args: Any) -> None:
        watchdog.begin(conn.connection.dbapi_connection)

    def after(conn: Any, cursor: Any, statement: Any, *args: Any) -> None:
        watchdog.end(conn.connection.dbapi_connection)

    def failed(context: Any) -> None:
        if context.connection is not None:
            with contextlib.suppress(Exception):
                watchdog.end(context.connection.connection.dbapi_connection)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    event.listen(engine, "handle_error", failed)
    # The pool's pre-ping, COMMIT and ROLLBACK go to the driver below the events above,
    # on a connection that may be the one the database stopped answering.
    dialect = engine.dialect
    for name in ("do_ping", "do_commit", "do_rollback"):
        setattr(dialect, name, _watched(watchdog, getattr(dialect, name)))
    return watchdog


def _watched(watchdog: StatementWatchdog, call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def watched(dbapi_connection: Any) -> Any:
        with watchdog.watch(dbapi_connection):
            return call(dbapi_connection)

    return watched
