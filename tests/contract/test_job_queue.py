"""The job-queue contract, run against every broker imgpipe supports: the embedded
in-process transport (`serve`), Redis and RabbitMQ. A new queue engine is proved by
passing this file. Each case builds the queue exactly as the container does
(jobs/celery_queue.py) on queue names of its own, with a real worker consuming it.

What every engine must do: deliver each message to its handler (image jobs and webhook
attempts on their own queues), keep delivering after a handler raised, report whether the
broker is reachable, and say how many jobs wait (or that it cannot tell)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from backends import AMQP_URL, REDIS_URL, check_broker, purge_queue, run_id
from imgpipe.jobs.celery_queue import (
    CeleryQueue,
    EmbeddedWorker,
    QueueConfig,
    bind_handlers,
    make_celery,
    worker_queues,
)
from imgpipe.jobs.messages import DeliverWebhook, ProcessImage
from imgpipe.jobs.queue import ProcessHandler, WebhookHandler

# Generous: a delivery takes milliseconds; the bound only stops a broken engine hanging
# the suite, and must hold on a loaded 2-core machine.
DELIVERY_TIMEOUT_S = 60.0


@dataclass
class Received:
    """What the handlers saw, with a way to wait for it."""

    images: list[str] = field(default_factory=list)
    webhooks: list[tuple[str, int]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        with self.changed:
            while not done():
                left = deadline - time.monotonic()
                assert left > 0, f"not delivered in {DELIVERY_TIMEOUT_S} s: {self}"
                self.changed.wait(left)


@dataclass
class Engine:
    name: str
    url: str  # empty: embedded
    queue_name: str
    received: Received
    queue: CeleryQueue
    start_worker: Callable[[], None]


def handlers(received: Received) -> tuple[ProcessHandler, WebhookHandler]:
    """Handlers that note what reached them in ``received``."""

    def on_image(message: ProcessImage) -> None:
        if message.image_id.startswith("boom"):
            raise RuntimeError("a handler that fails must not stop the worker")
        with received.changed:
            received.images.append(message.image_id)
            received.changed.notify_all()

    def on_webhook(message: DeliverWebhook) -> None:
        with received.changed:
            received.webhooks.append((message.event_id, message.attempt))
            received.changed.notify_all()

    return on_image, on_webhook


@pytest.fixture(params=["embedded", "redis", "amqp"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = {"embedded": "", "redis": REDIS_URL, "amqp": AMQP_URL}[request.param]
    if url:
        check_broker(url)  # a skip on a laptop without it, a failure in CI
    queue_name = f"imgpipe-contract-{run_id()}"
    received = Received()

    config = QueueConfig(url, queue_name, process_timeout_s=30, max_memory_per_child_mb=1024)
    on_image, on_webhook = handlers(received)
    app = make_celery(config)
    bind_handlers(app, on_image, webhook_handler=on_webhook)
    workers: list[EmbeddedWorker] = []

    def start_worker() -> None:
        worker = EmbeddedWorker(app, concurrency=2)
        worker.start()
        workers.append(worker)

    yield Engine(request.param, url, queue_name, received, CeleryQueue(app), start_worker)
    for worker in workers:
        worker.stop()
    if url:
        for queue in worker_queues(queue_name):
            purge_queue(url, queue)
    app.close()


def test_every_message_reaches_its_handler_once(engine: Engine) -> None:
    engine.start_worker()
    ids = [f"img_{i}" for i in range(20)]
    for image_id in ids:
        engine.queue.enqueue(ProcessImage(image_id))
    engine.received.wait_for(lambda: len(engine.received.images) >= len(ids))
    time.sleep(0.5)  # a duplicate would arrive right behind
    assert sorted(engine.received.images) == sorted(ids)


def test_webhook_attempts_travel_on_their_own_queue(engine: Engine) -> None:
    engine.start_worker()
    engine.queue.enqueue_webhook(DeliverWebhook("evt_1", 3))
    engine.queue.enqueue(ProcessImage("img_after_webhook"))
    engine.received.wait_for(lambda: bool(engine.received.webhooks and engine.received.images))
    assert engine.received.webhooks == [("evt_1", 3)]
    assert engine.received.images == ["img_after_webhook"]


def test_a_failing_handler_does_not_stop_the_worker(engine: Engine) -> None:
    engine.start_worker()
    engine.queue.enqueue(ProcessImage("boom_1"))
    engine.queue.enqueue(ProcessImage("img_next"))
    engine.received.wait_for(lambda: "img_next" in engine.received.images)


def test_a_later_app_in_the_process_runs_its_own_handlers(engine: Engine) -> None:
    # Celery's shared tasks and its thread pool's "current app" once sent every job of a
    # later app in the process (tests; a CLI command after `serve` built its app) to the
    # handler of the first app made. The case's app exists; a second one gets a worker.
    other = Received()
    on_image, on_webhook = handlers(other)
    other_name = f"{engine.queue_name}-other"
    config = QueueConfig(engine.url, other_name, process_timeout_s=30, max_memory_per_child_mb=0)
    other_app = make_celery(config)
    bind_handlers(other_app, on_image, webhook_handler=on_webhook)
    # One worker at a time: on a real broker, Celery's workers in one process would share
    # kombu's one event loop (production runs one worker per process).
    other_worker = EmbeddedWorker(other_app, concurrency=1)
    other_worker.start()
    try:
        CeleryQueue(other_app).enqueue(ProcessImage("img_other"))
        CeleryQueue(other_app).enqueue_webhook(DeliverWebhook("evt_other", 1))
        other.wait_for(lambda: bool(other.images and other.webhooks))
    finally:
        other_worker.stop()
        if engine.url:
            for queue in worker_queues(other_name):
                purge_queue(engine.url, queue)
        other_app.close()
    assert (other.images, other.webhooks) == (["img_other"], [("evt_other", 1)])
    assert (engine.received.images, engine.received.webhooks) == ([], [])


def test_check_passes_on_a_reachable_broker(engine: Engine) -> None:
    engine.queue.check()


def test_depth_counts_waiting_jobs_or_says_it_cannot(engine: Engine) -> None:
    for i in range(3):
        engine.queue.enqueue(ProcessImage(f"img_waiting_{i}"))
    depth = engine.queue.depth()
    if engine.name == "embedded":
        assert depth is None  # the in-process transport cannot tell; the reconciler knows
        return
    assert depth == 3
    engine.start_worker()
    engine.received.wait_for(lambda: len(engine.received.images) >= 3)
    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while engine.queue.depth() != 0:  # acked after the work: the count drops right after
        assert time.monotonic() < deadline
        time.sleep(0.1)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0", "amqp://guest:guest@127.0.0.1:1//"])
def test_an_unreachable_broker_fails_check_and_has_no_depth(url: str) -> None:
    config = QueueConfig(url, f"imgpipe-contract-{run_id()}", 30, 1024)
    app = make_celery(config)
    app.conf.broker_connection_timeout = 2
    queue = CeleryQueue(app)
    try:
        with pytest.raises(Exception):  # noqa: B017 - each transport raises its own type
            queue.check()
        assert queue.depth() is None  # unknown, never a false zero
    finally:
        app.close()
