"""PostgreSQL unreachable for a window, through a proxy the test controls.

During the outage the API answers 503 ``database_unavailable`` with Retry-After (never a
500) and /readyz names the database; once it is back, uploads are accepted again and every
accepted image completes.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from faults.conftest import poll
from faults.proxy import Fault, FaultProxy
from imgpipe.db.session import make_engine
from imgpipe.domain.errors import DatabaseUnavailable
from integration.conftest import (
    ImgpipeServer,
    assert_done,
    assert_problem,
    upload,
    upload_ok,
    wait_done,
)
from integration.images import unique_png

OUTAGE_S = 6.0


def test_api_answers_503_while_postgres_is_unreachable_and_recovers(
    scaled_stack: Callable[[dict[str, str]], ImgpipeServer], pg_proxy: FaultProxy
) -> None:
    server = scaled_stack({})
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        before = wait_done(client, upload_ok(client, unique_png(1), "before.png")["id"])
        assert_done(before)

        pg_proxy.set(Fault.REFUSE)  # connects refused, live connections reset
        statuses: Counter[int] = Counter()
        slowest = 0.0
        started = time.monotonic()
        seed = 100
        while time.monotonic() - started < OUTAGE_S:
            seed += 1
            for send in (
                partial(upload, client, unique_png(seed), "during.png"),
                partial(client.get, f"/v1/images/{before['id']}"),
                partial(client.get, "/v1/images"),
            ):
                sent = time.monotonic()
                response = send()
                slowest = max(slowest, time.monotonic() - sent)
                statuses[response.status_code] += 1
                assert_problem(response, 503, "database_unavailable")
                assert int(response.headers["retry-after"]) > 0
        ready = client.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["database"].startswith("error"), ready.text
        assert ready.json()["checks"]["storage"] == "ok", ready.text
        assert set(statuses) == {503}, statuses
        # Refused connections fail fast: no request waits on a dead database.
        assert slowest < 5.0, f"slowest answer during the outage took {slowest:.2f}s"

        pg_proxy.set(Fault.PASS)
        back = time.monotonic()
        poll("/readyz after the outage", lambda: client.get("/readyz").status_code == 200)
        recovered_s = time.monotonic() - back
        after = [upload_ok(client, unique_png(1000 + i), f"after-{i}.png") for i in range(5)]
        for image in after:
            assert_done(wait_done(client, image["id"], timeout=90))
        # The image finished before the outage is untouched.
        assert client.get(f"/v1/images/{before['id']}").json()["status"] == "done"
    print(
        f"\nFIGURES database outage: {sum(statuses.values())} requests in {OUTAGE_S:.0f}s, "
        f"all 503 database_unavailable, slowest {slowest * 1000:.0f} ms; "
        f"ready {recovered_s:.2f}s after the database came back; 5/5 uploads after it done"
    )


def test_only_connection_trouble_becomes_database_unavailable(
    tmp_path: Path, pg_proxy: FaultProxy
) -> None:
    """No connection, or a lost one: DatabaseUnavailable. A bad statement: SQLAlchemy's."""
    (tmp_path / "a-file").write_text("not a folder")  # so no folder can be made there
    unreachable = make_engine(f"sqlite:///{tmp_path / 'a-file' / 'db.sqlite'}")
    with pytest.raises(DatabaseUnavailable) as refused:
        unreachable.connect()
    assert refused.value.retryable and refused.value.status == 503
    unreachable.dispose()

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.connect() as connection, pytest.raises(OperationalError):
        connection.exec_driver_sql("SELECT * FROM no_such_table")
    engine.dispose()

    pg_proxy.set(Fault.REFUSE)
    postgres = make_engine(f"postgresql+psycopg://postgres@{pg_proxy.address}/postgres")
    try:
        with pytest.raises(DatabaseUnavailable):
            postgres.connect()
    finally:
        postgres.dispose()


ROUND_TRIP_TIMEOUT_S = 3.0
# A request may meet the bound twice (its pooled connection's ping, then a new
# connection's connect_timeout) plus the watchdog's tick: about 7 s. Three times that.
BLACKHOLE_ANSWER_BOUND_S = 21.0


def test_a_database_that_black_holes_packets_is_503_within_a_bound(
    scaled_stack: Callable[[dict[str, str]], ImgpipeServer], pg_proxy: FaultProxy
) -> None:
    """Packets swallowed, nothing refused or reset: without a bound on each round trip,
    every request would wait on TCP (hours). db/watchdog.py ends the connection instead."""
    server = scaled_stack({"IMGPIPE_DATABASE_TIMEOUT_S": str(ROUND_TRIP_TIMEOUT_S)})
    base = server.base_url
    with httpx.Client(base_url=base, timeout=120) as client:
        before = wait_done(client, upload_ok(client, unique_png(7), "before.png")["id"])
        assert_done(before)

        pg_proxy.set(Fault.BLACKHOLE)

        def timed(method: str, path: str, **kw: object) -> tuple[httpx.Response, float]:
            sent = time.monotonic()
            response = httpx.request(method, base + path, timeout=120, **kw)  # type: ignore[arg-type]
            return response, time.monotonic() - sent

        no_options: dict[str, Any] = {}
        upload: dict[str, Any] = {"files": {"file": ("b.png", unique_png(8))}}
        calls = [("GET", f"/v1/images/{before['id']}", no_options)] * 6
        calls += [("GET", "/v1/images", no_options)] * 2
        calls += [("POST", "/v1/images", upload)] * 2
        with ThreadPoolExecutor(len(calls)) as pool:
            answers = list(pool.map(lambda call: timed(call[0], call[1], **call[2]), calls))
        ready, ready_s = timed("GET", "/readyz")
        slowest = max(seconds for _, seconds in answers)
        for response, _ in answers:
            assert_problem(response, 503, "database_unavailable")
            assert int(response.headers["retry-after"]) > 0
        assert ready.status_code == 503, ready.text
        assert slowest < BLACKHOLE_ANSWER_BOUND_S, f"slowest answer {slowest:.1f}s"
        assert ready_s < BLACKHOLE_ANSWER_BOUND_S, f"/readyz took {ready_s:.1f}s"

        pg_proxy.set(Fault.PASS)
        back = time.monotonic()
        poll("/readyz after the black hole", lambda: client.get("/readyz").status_code == 200)
        recovered_s = time.monotonic() - back
        after = upload_ok(client, unique_png(9), "after.png")
        assert_done(wait_done(client, after["id"], timeout=90))
    print(
        f"\nFIGURES database black hole: {len(answers)} concurrent requests all 503 "
        f"database_unavailable, slowest {slowest:.1f}s (bound {ROUND_TRIP_TIMEOUT_S:.0f}s a "
        f"round trip), /readyz 503 in {ready_s:.1f}s; ready {recovered_s:.1f}s after it ended"
    )
