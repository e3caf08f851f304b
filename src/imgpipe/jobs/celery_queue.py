"""Celery as the queue: the same task in-process (embedded) and in scale-out workers.

All Celery settings live in ``celery_settings`` so they can be read in one place. The app
is built by a factory, never at import time; the task calls the handler it was given, so
this module knows nothing about what processing means.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

from celery import Celery

from imgpipe.jobs.messages import ProcessImage
from imgpipe.jobs.queue import ProcessHandler

PROCESS_TASK = "imgpipe.process_image"
EMBEDDED_BROKER = "memory://"


def celery_settings(broker_url: str, process_timeout_s: float) -> dict[str, Any]:
    return {
        "broker_url": broker_url or EMBEDDED_BROKER,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Ack after the work, so a worker that dies mid-job leaves the message queued.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # One message at a time per worker slot: image jobs are long and uneven.
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": process_timeout_s * 2,
        "task_time_limit": process_timeout_s * 4,
        "worker_hijack_root_logger": False,
        "broker_connection_retry_on_startup": True,
        # The in-memory transport polls; 20 ms keeps queue latency invisible.
        "broker_transport_options": {"polling_interval": 0.02},
    }


def make_celery(
    broker_url: str,
    process_timeout_s: float,
    handler: ProcessHandler,
    worker_niceness: int = 0,
) -> Celery:
    app = Celery("imgpipe", set_as_current=False)
    app.conf.update(celery_settings(broker_url, process_timeout_s))

    @app.task(name=PROCESS_TASK)  # type: ignore[untyped-decorator]
    def process_image(image_id: str) -> None:
        if worker_niceness:
            _lower_thread_priority(worker_niceness)
        handler(ProcessImage(image_id))

    return app


_thread_state = threading.local()


def _lower_thread_priority(niceness: int) -> None:
    """Make this worker thread (and the libvips threads it starts) yield to the API.

    On Linux nice values belong to threads, and threads inherit them when created: in
    `imgpipe serve`, image work then runs at a lower priority than the request threads
    in the same process, so uploads stay fast while the CPU is busy with variants.
    """
    if getattr(_thread_state, "niced", False):
        return
    _thread_state.niced = True
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), niceness)


class CeleryQueue:
    def __init__(self, app: Celery) -> None:
        self._app = app

    def enqueue(self, message: ProcessImage) -> None:
        self._app.send_task(PROCESS_TASK, args=[message.image_id])

    def check(self) -> None:
        with self._app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)


class EmbeddedWorker:
    """A Celery worker on threads inside this process (``imgpipe serve``).

    libvips releases the GIL while it decodes, resizes and encodes, so worker threads use
    every core without a process per worker.
    """

    def __init__(self, app: Celery, concurrency: int) -> None:
        self._controller = app.WorkController(
            pool_cls="threads",
            concurrency=concurrency,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
        )
        self._thread = threading.Thread(
            target=self._controller.start, name="imgpipe-worker", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._controller.stop(in_sighandler=False)
        self._thread.join(timeout)
