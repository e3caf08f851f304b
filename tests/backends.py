"""Real backing services for tests: a database, a queue name and a bucket of their own.

Every test run gets its own PostgreSQL database, broker queue names and S3 bucket, so runs
(and the CI run beside a developer's) can never collide. A service that is not there is
a skip on a laptop and a failure in CI (CI=true): CI must never pass by skipping.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

POSTGRES_ADMIN_URL = os.environ.get(
    "IMGPIPE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("IMGPIPE_TEST_REDIS", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("IMGPIPE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")


def unavailable(what: str, error: BaseException) -> None:
    """Fail in CI, skip elsewhere."""
    message = f"{what} is not reachable: {error}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must run every backend)")
    pytest.skip(message)


def run_id() -> str:
    return uuid.uuid4().hex[:12]


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database for this run; yields its SQLAlchemy URL, drops it afterwards."""
    import psycopg

    name = f"imgpipe_test_{run_id()}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unavailable("PostgreSQL", exc)
        raise
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base.replace('postgresql://', 'postgresql+psycopg://')}/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check_broker(url: str) -> None:
    from kombu.connection import Connection

    try:
        with Connection(url, connect_timeout=5) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1)
    except Exception as exc:  # kombu raises a different type per transport
        unavailable(f"broker {url}", exc)


def purge_queue(url: str, queue: str) -> None:
    from kombu.connection import Connection

    with (
        contextlib.suppress(Exception),
        Connection(url, connect_timeout=5) as connection,  # type: ignore[no-untyped-call]
    ):
        channel = connection.default_channel
        channel.queue_purge(queue)
        channel.queue_delete(queue)


@dataclass(frozen=True)
class BackendSpec:
    """Which engines one configuration uses."""

    name: str
    broker: str | None  # None: embedded; else "redis" or "amqp"
    database: str  # "sqlite" or "postgres"
    storage: str  # "file" or "s3"

    @property
    def embedded(self) -> bool:
        return self.broker is None


EMBEDDED = BackendSpec("embedded", None, "sqlite", "file")
REDIS_PG_S3 = BackendSpec("redis-postgres-s3", "redis", "postgres", "s3")
AMQP_PG_S3 = BackendSpec("amqp-postgres-s3", "amqp", "postgres", "s3")
ALL_BACKENDS = (EMBEDDED, REDIS_PG_S3, AMQP_PG_S3)
