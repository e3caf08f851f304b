"""Fixtures for the fault-injection suite: proxies in front of real services, and stacks.

Every proxy and process a test starts is stopped by the fixture that started it; every
socket is on 127.0.0.1. Shared helpers come from the end-to-end suite.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from backends import REDIS_URL, BackendSpec, check_broker, postgres_database, purge_queue, run_id
from faults.proxy import FaultProxy
from integration.conftest import ImgpipeServer

PG_HOST, PG_PORT = "127.0.0.1", 5432
REDIS_PG_FILE = BackendSpec("redis-postgres-file", "redis", "postgres", "file")


def through(url: str, proxy: FaultProxy) -> str:
    """``url`` with the PostgreSQL address replaced by the proxy's."""
    address = f"{PG_HOST}:{PG_PORT}"
    assert address in url, f"{url} does not point at {address}"
    return url.replace(address, proxy.address)


@pytest.fixture
def pg_proxy() -> Iterator[FaultProxy]:
    with FaultProxy((PG_HOST, PG_PORT)) as proxy:
        yield proxy


@pytest.fixture
def scaled_stack(
    tmp_path: Path, pg_proxy: FaultProxy
) -> Iterator[Callable[[dict[str, str]], ImgpipeServer]]:
    """`imgpipe api` + `imgpipe worker` on Redis and a PostgreSQL database of their own,
    reached through ``pg_proxy``; extra settings per test. Stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(extra: dict[str, str]) -> ImgpipeServer:
            check_broker(REDIS_URL)
            database = stack.enter_context(postgres_database())
            queue = f"imgpipe-test-{run_id()}"
            stack.callback(purge_queue, REDIS_URL, f"{queue}.process")
            settings = {
                "IMGPIPE_DATABASE_URL": through(database, pg_proxy),
                "IMGPIPE_BROKER_URL": REDIS_URL,
                "IMGPIPE_QUEUE_NAME": queue,
                **extra,
            }
            server = ImgpipeServer(tmp_path / "data", REDIS_PG_FILE, settings)
            server.start()
            stack.callback(server.stop)
            return server

        yield start


def poll(what: str, check: Callable[[], bool], timeout: float = 30.0, every: float = 0.2) -> float:
    """Wait until ``check()`` is true; the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with contextlib.suppress(httpx.TransportError):
            if check():
                return time.monotonic() - started
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout}s")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures the crash tests measured (faults/stack.py `report`), after the run,
    so that they show without `-s`."""
    from faults.stack import FIGURES

    if FIGURES:
        terminalreporter.section("fault-injection figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
