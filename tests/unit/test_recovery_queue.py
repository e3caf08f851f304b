"""Work handed out again goes ahead of the backlog, on every broker imgpipe runs on.

A real Celery worker (threads, one slot, as `imgpipe serve` runs it) over the in-process
transport, Redis and RabbitMQ: 30 new jobs are queued, then one recovered job; the
recovered one must be among the first the worker takes, not the 31st. The reconciler's
depth reading must count both queues, or it would take recovered jobs for lost ones.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from celery import Celery

from backends import AMQP_URL, REDIS_URL, check_broker, purge_queue, run_id
from imgpipe.jobs.celery_queue import (
    CeleryQueue,
    EmbeddedWorker,
    QueueConfig,
    bind_handlers,
    make_celery,
    worker_queues,
)
from imgpipe.jobs.messages import ProcessImage

BACKLOG = 30
JOB_S = 0.05

BROKERS = {"embedded": "", "redis": REDIS_URL, "rabbitmq": AMQP_URL}
# RabbitMQ pushes from each consumed queue in turn (no strict order across queues): a
# recovered job may follow the one message the slot had already been given.
FIRST_WITHIN = {"embedded": 1, "redis": 1, "rabbitmq": 3}


class Recorder:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, message: ProcessImage) -> None:
        time.sleep(JOB_S)  # a job takes time, so the backlog is still there
        with self.lock:
            self.seen.append(message.image_id)


@pytest.fixture(params=list(BROKERS))
def broker(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, str]]:
    name = request.param
    url = BROKERS[name]
    if url:
        check_broker(url)
    queue_name = f"imgpipe-test-{run_id()}"
    yield name, url, queue_name
    if url:
        for queue in worker_queues(queue_name):
            purge_queue(url, queue)


def _app(url: str, queue_name: str, recorder: Recorder) -> Celery:
    config = QueueConfig(
        broker_url=url, queue_name=queue_name, process_timeout_s=30, max_memory_per_child_mb=0
    )
    app = make_celery(config)
    bind_handlers(app, recorder)
    return app


@pytest.mark.slow
def test_a_recovered_job_is_taken_before_the_backlog(broker: tuple[str, str, str]) -> None:
    name, url, queue_name = broker
    recorder = Recorder()
    app = _app(url, queue_name, recorder)
    queue = CeleryQueue(app)
    worker = EmbeddedWorker(app, concurrency=1)
    if url:  # a real broker keeps messages sent before any worker runs
        for n in range(BACKLOG):
            queue.enqueue(ProcessImage(f"new-{n}"))
        queue.enqueue(ProcessImage("recovered"), recover=True)
        assert queue.depth() == BACKLOG + 1  # both queues count
        worker.start()
    else:  # the in-process queue lives with its worker: start it, then fill it at once
        worker.start()
        for n in range(BACKLOG):
            queue.enqueue(ProcessImage(f"new-{n}"))
        queue.enqueue(ProcessImage("recovered"), recover=True)
        assert queue.depth() is None  # the reconciler does not guess for `serve`
    try:
        deadline = time.monotonic() + 60
        while len(recorder.seen) < BACKLOG + 1 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.stop()
    assert sorted(recorder.seen) == sorted([*(f"new-{n}" for n in range(BACKLOG)), "recovered"])
    position = recorder.seen.index("recovered")
    # The embedded worker may already hold the first new job when the rest arrive.
    allowed = FIRST_WITHIN[name] + (1 if not url else 0)
    assert position < allowed, f"{name}: recovered job taken {position + 1}th: {recorder.seen}"
    if url:
        assert queue.depth() == 0
