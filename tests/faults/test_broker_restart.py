"""Restart the broker in the middle of 300 jobs: every queued message is lost, no job is.

A redis-server of the test's own (no persistence) carries the jobs of one `imgpipe api`
and two `imgpipe worker` processes (PostgreSQL, local files). 240 images are uploaded at
once, so a backlog builds up; once 100 are done, redis-server is SIGKILLed, which loses
every queued and every delivered-but-unacknowledged message. Uploads go on while it is
down (they must still be accepted: the database is the source of truth), it comes back
empty on the same port a second later, and the remaining uploads follow. All 300 images
must end `done`, each variant claimed once, within a bounded time.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from faults.stack import (
    FAST_JOBS,
    RedisServer,
    fetch_images,
    queue_name,
    report,
    running_stack,
    statuses,
    upload_all,
    wait_all_terminal,
)
from integration.conftest import upload
from integration.images import noisy

JOBS = 300
FIRST_BATCH = 240
KILL_WHEN_DONE = 100
DOWN_S = 1.0  # the broker is gone this long (at least; uploads go on meanwhile)
SIZE = (320, 240)  # with all three profiles: slower to process than to upload
MIN_LOST = 20  # fewer queued messages at the kill than this and the test proves little
RECOVER_WITHIN_S = 90.0


@pytest.mark.slow
@pytest.mark.timeout(RECOVER_WITHIN_S + 150)
def test_a_broker_restart_loses_messages_but_no_job(tmp_path: Path) -> None:
    inputs = [noisy(*SIZE, seed=70_000 + n, quality=85) for n in range(JOBS)]
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    queue = queue_name()
    settings = {
        "IMGPIPE_BROKER_URL": redis.url,
        "IMGPIPE_QUEUE_NAME": queue,
        "IMGPIPE_STORAGE_URL": f"file://{tmp_path / 'data' / 'objects'}",
        **FAST_JOBS,
    }
    started = time.monotonic()
    try:
        with (
            running_stack(tmp_path / "data", settings) as stack,
            httpx.Client(base_url=stack.base_url, timeout=60) as client,
        ):
            stack.start_api()
            for n in (1, 2):
                stack.start_worker(f"worker{n}", concurrency=2)
            stack.wait_workers_ready(2)

            image_ids = upload_all(stack.base_url, inputs[:FIRST_BATCH], prefix="before")
            deadline = time.monotonic() + 60
            while Counter(statuses(client).values())["done"] < KILL_WHEN_DONE:
                assert time.monotonic() < deadline, f"{KILL_WHEN_DONE} not done in 60 s"
                time.sleep(0.1)
            done_at_kill = Counter(statuses(client).values())["done"]
            lost = redis.queued(f"{queue}.process")

            redis.kill()
            killed = time.monotonic()
            during: Counter[int] = Counter()
            slowest = 0.0
            sent = FIRST_BATCH
            while time.monotonic() - killed < DOWN_S and sent < JOBS:
                began = time.monotonic()
                response = upload(client, inputs[sent], f"during-{sent}.jpg", "image/jpeg")
                slowest = max(slowest, time.monotonic() - began)
                during[response.status_code] += 1
                assert response.status_code == 202, response.text
                image_ids.append(response.json()["id"])
                sent += 1
            down_s = time.monotonic() - killed
            redis.start()  # same port, empty
            restarted = time.monotonic()

            image_ids += upload_all(stack.base_url, inputs[sent:], prefix="after")
            assert len(image_ids) == JOBS
            seen, _ = wait_all_terminal(client, image_ids, timeout=RECOVER_WITHIN_S)
            recovered_s = time.monotonic() - restarted
            left = {i: s for i, s in seen.items() if s != "done"}
            assert not left, (
                f"{len(left)} of {JOBS} images not done {RECOVER_WITHIN_S:.0f}s after the "
                f"broker came back: {dict(list(left.items())[:10])}\n{stack.log_tail()}"
            )
            resources = fetch_images(stack.base_url, image_ids)
            requeue_rounds = sum(
                stack.log_path(role).read_text().count("broker lost messages")
                for role in stack.workers()
            )
    finally:
        redis.stop()

    attempts = Counter(v["attempts"] for r in resources for v in r["variants"].values())
    assert all(r["status"] == "done" for r in resources)
    assert set(attempts) == {1}, f"variants claimed more than once: {attempts}"
    assert lost >= MIN_LOST, f"only {lost} messages were queued at the kill: nothing was tested"
    report(
        "broker restart",
        {
            "jobs": JOBS,
            "done at the kill": done_at_kill,
            "messages lost (queued + unacked at the kill)": lost,
            "broker down": f"{down_s:.1f}s",
            "uploads while down": f"{sum(during.values())} (all 202, slowest {slowest:.2f}s)",
            "broker back -> all done": f"{recovered_s:.1f}s",
            "reconciler rounds that found lost messages": requeue_rounds,
            "total": f"{time.monotonic() - started:.1f}s",
        },
    )
