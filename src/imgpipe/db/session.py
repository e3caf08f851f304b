"""Engine and session factory, built by the container, never at import time.

``Session``, ``SessionFactory`` and ``Engine`` are the names services, the API and the CLI
use in annotations, so that no module outside ``db/`` (and the container) imports
SQLAlchemy: a service receives a session factory and opens its unit of work with it, and
hands the session to ``db/`` functions, which hold every query.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from imgpipe.db import watchdog
from imgpipe.domain.errors import DatabaseUnavailable

__all__ = [
    "READ_ONLY",
    "Engine",
    "Session",
    "SessionFactory",
    "make_engine",
    "make_read_sessionmaker",
    "make_sessionmaker",
    "ping",
]

SessionFactory = sessionmaker[Session]


def make_engine(url: str, round_trip_timeout_s: float | None = None) -> Engine:
    """``round_trip_timeout_s``: PostgreSQL statements, pings and commits that take longer
    end their connection (db/watchdog.py): a database that stops answering is then a 503
    within that time instead of a request that hangs. None: no bound (migrations)."""
    if url.startswith("sqlite"):
        _make_sqlite_folder(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin_immediate)
    else:
        # libpq waits forever to connect by default, and notices a silently dead peer
        # only after TCP's own timeouts (hours): bound both, so an unreachable database
        # becomes a 503 and a failed job attempt instead of a hung request or worker.
        connect_args = {
            "connect_timeout": max(2, round(min(10.0, round_trip_timeout_s or 10.0))),
            # Data left unacknowledged this long (ms) ends the connection: a peer that
            # drops packets is noticed in seconds, not after TCP's ~15 minutes of retries.
            "tcp_user_timeout": 10_000,
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
        }
        engine = create_engine(
            url, pool_pre_ping=True, pool_size=5, max_overflow=10, connect_args=connect_args
        )
        if round_trip_timeout_s:
            watchdog.install(engine, round_trip_timeout_s)
    event.listen(engine, "handle_error", _connection_errors)
    return engine


def _connection_errors(context: ExceptionContext) -> BaseException | None:
    """A database that cannot be reached becomes DatabaseUnavailable (503, retryable).

    The one place this translation happens: the API answers 503 ``database_unavailable``
    with Retry-After, and callers see a typed, retryable error instead of a driver's.
    Only connection trouble is translated (no connection could be made, or the one in use
    was lost); a failing statement on a live connection keeps SQLAlchemy's own error.
    """
    if context.is_pre_ping:
        return None  # the pool reconnects on its own, and reports only if that fails
    lost = context.is_disconnect
    connecting = context.connection is None and isinstance(
        context.sqlalchemy_exception, OperationalError | InterfaceError
    )
    if not (lost or connecting):
        return None
    # The driver's message (host, port) stays in the logs, chained as the cause.
    return DatabaseUnavailable("The database cannot be reached right now; try again shortly.")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API read while workers write; FULL makes an accepted upload's row
    # survive power loss, not only a crash; the busy timeout queues writers instead of
    # failing them with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
    # Let SQLAlchemy's "begin" hook issue BEGIN itself (pysqlite would defer it).
    dbapi_connection.isolation_level = None


READ_ONLY = "imgpipe_read_only"


def _sqlite_begin_immediate(connection: Any) -> None:
    # A deferred transaction that reads and then writes can fail at once with "database is
    # locked" when another writer got in between; taking the write lock up front makes
    # writers queue on the busy timeout instead. Read-only sessions must not: in WAL a
    # deferred read never waits for a writer, whereas queueing every read behind the
    # write lock (SQLite's busy handler sleeps in steps of up to 100 ms) gave cache hits
    # a p99 of hundreds of milliseconds under load.
    if connection.get_execution_options().get(READ_ONLY):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> SessionFactory:
    """Sessions for work that writes (use ``with sessions.begin()``)."""
    return sessionmaker(engine, expire_on_commit=False)


def make_read_sessionmaker(engine: Engine) -> SessionFactory:
    """Sessions for queries that only read: status, listings, auth, cache-hit lookups."""
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


def _make_sqlite_folder(url: str) -> None:
    """SQLite creates a missing file but not its folder (``DATA_DIR`` on a first run)."""
    path = make_url(url).database
    if path and path != ":memory:":
        # A folder that cannot be made is reported where the database is first used, as
        # the 503 ``database_unavailable`` every other unreachable database gives.
        with contextlib.suppress(OSError):
            Path(path).parent.mkdir(parents=True, exist_ok=True)


def ping(session: Session) -> None:
    """One round trip to the database (readiness); raises whatever the driver raises."""
    session.execute(text("SELECT 1"))
