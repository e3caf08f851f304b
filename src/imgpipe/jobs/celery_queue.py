"""Celery as the queue: the same task in-process (embedded) and in scale-out workers.

All Celery settings live in ``celery_settings`` so they can be read in one place. The app
is built by a factory, never at import time, and its tasks are bound afterwards to the
handlers they call, so this module knows nothing about what processing means.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from queue import Empty
from typing import Any

from celery import Celery
from celery.concurrency.thread import TaskPool as ThreadTaskPool
from celery.platforms import EX_OK
from celery.worker import state as worker_state
from kombu.exceptions import ChannelError
from kombu.transport import memory
from kombu.utils.scheduling import FairCycle, round_robin_cycle

from imgpipe.domain.errors import ProcessTimeout
from imgpipe.domain.interrupts import request_stop
from imgpipe.jobs.messages import DeliverWebhook, ModerateImage, ProcessImage
from imgpipe.jobs.queue import ModerationHandler, ProcessHandler, WebhookHandler

PROCESS_TASK = "imgpipe.process_image"
WEBHOOK_TASK = "imgpipe.deliver_webhook"
MODERATE_TASK = "imgpipe.moderate_image"
# kombu's in-process transport. It needs no host, but kombu warns "No hostname was
# supplied" at every start for a URL without one: name one, and say nothing false.
EMBEDDED_BROKER = "memory://localhost/"
# Work handed out again (a lease that expired, a retry that fell due, a message the broker
# lost, a dead letter retried) goes to a queue of its own that every worker drains before
# the normal one, so recovery never waits behind the backlog (docs/reliability.md).
RECOVER_SUFFIX = ".recover"


@dataclass(frozen=True, slots=True)
class QueueConfig:
    broker_url: str  # empty: embedded, in-process
    queue_name: str
    process_timeout_s: float
    max_memory_per_child_mb: int


def celery_settings(config: QueueConfig) -> dict[str, Any]:
    """Every Celery setting imgpipe uses, in one visible block."""
    scheme = config.broker_url.split(":", 1)[0] if config.broker_url else "memory"
    transport_options: dict[str, Any] = {}
    if scheme == "memory":
        # The in-memory transport polls; 20 ms keeps queue latency invisible.
        transport_options["polling_interval"] = 0.02
    elif scheme in ("amqp", "pyamqp"):
        # Without publisher confirms RabbitMQ drops publishes silently under a memory or
        # disk alarm; with them, enqueue raises and the image stays pending for recovery.
        transport_options["confirm_publish"] = True
    elif scheme in ("redis", "rediss"):
        # Redis redelivers an unacked message after this long; it must outlast the hard
        # time limit or a slow job runs twice while the first is still working.
        transport_options["visibility_timeout"] = max(3600, int(config.process_timeout_s * 8))
        # kombu's default rotates the BRPOP key order after every message (fair between
        # queues): the recovery queue must come first every time instead.
        transport_options["queue_order_strategy"] = f"{__name__}:RecoveryFirstCycle"
    process_queue = f"{config.queue_name}.process"
    webhook_queue = webhook_queue_name(config.queue_name)
    return {
        "broker_url": config.broker_url or EMBEDDED_BROKER,
        # The in-process transport, with the recovery queue drained first as on Redis.
        "broker_transport": None if config.broker_url else f"{__name__}:EmbeddedTransport",
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "result_backend": None,
        "task_ignore_result": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        # Image work has its own queue, so light tasks (webhooks, later) never wait
        # behind a backlog of decodes; workers can be pointed at either.
        "task_default_queue": process_queue,
        "task_routes": {
            PROCESS_TASK: {"queue": process_queue},
            WEBHOOK_TASK: {"queue": webhook_queue},
            # Moderation has a queue of its own, so a slow model or API never holds a
            # slot that variants wait for (docs/moderation.md).
            MODERATE_TASK: {"queue": moderation_queue_name(config.queue_name)},
        },
        # Ack after the work. A worker that dies mid-job gets its message acked anyway
        # (not requeued): requeueing would redeliver a job that kills its worker forever.
        # The job's lease in the database expires instead, and the reconciler hands it
        # out again, counting the attempt (docs/reliability.md).
        "task_acks_late": True,
        "task_reject_on_worker_lost": False,
        # One message at a time per worker slot: image jobs are long and uneven, and a
        # prefetched message would wait behind a slow one while another worker idles.
        "worker_prefetch_multiplier": 1,
        # The engine checks PROCESS_TIMEOUT_S between steps and fails the image cleanly;
        # these limits only stop a step that hangs inside libvips.
        "task_soft_time_limit": config.process_timeout_s * 1.5,
        "task_time_limit": config.process_timeout_s * 2 + 10,
        # A child whose resident memory passes this is replaced after its current task.
        "worker_max_memory_per_child": config.max_memory_per_child_mb * 1024,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": True,  # for Flower
        "task_send_sent_event": True,
    }


def webhook_queue_name(queue_name: str) -> str:
    return f"{queue_name}.webhooks"


def moderation_queue_name(queue_name: str) -> str:
    return f"{queue_name}.moderate"


def recover_queue_name(queue_name: str) -> str:
    return f"{queue_name}{RECOVER_SUFFIX}"


def worker_queues(queue_name: str) -> list[str]:
    """The queues every worker consumes: recovery first (see ``RecoveryFirstCycle``)."""
    return [
        recover_queue_name(queue_name),
        f"{queue_name}.process",
        webhook_queue_name(queue_name),
    ]


def _recovery_first(queues: list[str]) -> None:
    queues.sort(key=lambda name: not name.endswith(RECOVER_SUFFIX))  # stable: keeps the rest


class RecoveryFirstCycle(round_robin_cycle):
    """kombu's Redis queue order: recovery queues always first, the rest in turn.

    Redis BRPOP pops from the first non-empty key in the order given, so a recovered job
    is taken before any backlog. Plain priority order would let the image backlog starve
    webhook deliveries; the other queues keep kombu's round robin among themselves.
    """

    def update(self, it: Any) -> None:
        super().update(it)  # type: ignore[no-untyped-call]
        _recovery_first(self.items)

    def rotate(self, last_used: Any) -> Any:
        super().rotate(last_used)  # type: ignore[no-untyped-call]
        _recovery_first(self.items)
        return last_used


class _RecoveryFirstFairCycle(FairCycle):
    """The in-process transport's poll order: recovery queues first, then kombu's turn."""

    def get(self, callback: Any, **kwargs: Any) -> Any:
        for resource in list(self.resources):
            if resource.endswith(RECOVER_SUFFIX):
                try:
                    return self.fun(resource, callback, **kwargs)
                except self.predicate:
                    pass
        return super().get(callback, **kwargs)  # type: ignore[no-untyped-call]


class EmbeddedChannel(memory.Channel):
    def _reset_cycle(self) -> None:
        self._cycle = _RecoveryFirstFairCycle(  # type: ignore[no-untyped-call]
            self._get_and_deliver, self._active_queues, Empty
        )


class EmbeddedTransport(memory.Transport):
    """kombu's in-memory transport (``imgpipe serve``) honouring the recovery queue."""

    Channel = EmbeddedChannel


def make_celery(config: QueueConfig) -> Celery:
    """The app, with no task yet: a ``CeleryQueue`` on it can send (tasks go by name)
    before the handlers exist; ``bind_handlers`` adds them before a worker starts."""
    app = Celery("imgpipe", set_as_current=False)
    app.conf.update(celery_settings(config))
    return app


def bind_handlers(
    app: Celery,
    handler: ProcessHandler | None,
    *,
    worker_niceness: int = 0,
    webhook_handler: WebhookHandler | None = None,
    moderation_handler: ModerationHandler | None = None,
) -> None:
    """Register the tasks this app's workers run, each calling the handler given.

    Tasks are this app's alone (shared=False): a shared task is installed in every app
    made later in the process, and Celery keeps the first one for a name, so a second
    app (a test, a second worker) would run the first app's handler."""
    if moderation_handler is not None:

        @app.task(name=MODERATE_TASK, shared=False)  # type: ignore[untyped-decorator]
        def moderate_image(image_id: str) -> None:
            if worker_niceness:
                _lower_thread_priority(worker_niceness)
            moderation_handler(ModerateImage(image_id))

    if webhook_handler is not None:

        @app.task(name=WEBHOOK_TASK, shared=False)  # type: ignore[untyped-decorator]
        def deliver_webhook(event_id: str, attempt: int) -> None:
            webhook_handler(DeliverWebhook(event_id, attempt))

    if handler is not None:

        @app.task(name=PROCESS_TASK, shared=False)  # type: ignore[untyped-decorator]
        def process_image(image_id: str) -> None:
            if worker_niceness:
                _lower_thread_priority(worker_niceness)
            _soft_limit_is_a_timeout()
            handler(ProcessImage(image_id))


class CeleryQueue:
    def __init__(self, app: Celery) -> None:
        self._app = app

    def enqueue(self, message: ProcessImage, recover: bool = False) -> None:
        if recover:
            queue = recover_queue_name(self._queue_name())
            self._app.send_task(PROCESS_TASK, args=[message.image_id], queue=queue)
        else:
            self._app.send_task(PROCESS_TASK, args=[message.image_id])

    def enqueue_webhook(self, message: DeliverWebhook) -> None:
        self._app.send_task(WEBHOOK_TASK, args=[message.event_id, message.attempt])

    def enqueue_moderation(self, message: ModerateImage) -> None:
        self._app.send_task(MODERATE_TASK, args=[message.image_id])

    def check(self) -> None:
        with self._app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1)

    def _queue_name(self) -> str:
        return str(self._app.conf.task_default_queue).removesuffix(".process")

    def depth(self) -> int | None:
        """Messages waiting in the process and recovery queues, or None where the broker
        cannot say."""
        queues = [self._app.conf.task_default_queue, recover_queue_name(self._queue_name())]
        try:
            with self._app.connection_for_read() as connection:
                if self._app.conf.broker_transport:  # the in-process queue of `serve`
                    return None
                return sum(_queue_depth(connection, queue) for queue in queues)
        except Exception:  # an unreachable broker: unknown, not zero
            return None


def _queue_depth(connection: Any, queue: str) -> int:
    # A new channel per queue: on RabbitMQ a passive declare of a missing queue closes
    # the channel it was sent on.
    with connection.channel() as channel:
        try:
            _, count, _ = channel.queue_declare(queue=queue, passive=True)
        except (ChannelError, *connection.channel_errors):
            return 0  # not declared yet (Redis drops an empty list's key): empty
        return int(count)


class AppThreadPool(ThreadTaskPool):  # type: ignore[misc]
    """Celery's thread pool, running each task through the worker's own app.

    On the thread pool Celery looks a task up in the *current* app, which on a thread
    it did not set up is the process's default app, not the worker's: with unshared
    tasks that app has none, and a second app's worker would otherwise run the first's
    handler. Each pool thread makes the worker's app its current one as it starts."""

    executor: ThreadPoolExecutor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.executor.shutdown(wait=False)  # the parent's: no thread of it started yet
        self.executor = ThreadPoolExecutor(max_workers=self.limit, initializer=self.app.set_current)


class EmbeddedWorker:
    """A Celery worker on threads inside this process (``imgpipe serve``).

    libvips releases the GIL while it decodes, resizes and encodes, so worker threads use
    every core without a process per worker.
    """

    def __init__(self, app: Celery, concurrency: int, queues: list[str] | None = None) -> None:
        if queues is None:
            queues = worker_queues(str(app.conf.task_default_queue).removesuffix(".process"))
            if WEBHOOK_TASK not in app.tasks:
                queues.pop()
        self._controller = app.WorkController(
            queues=queues,
            pool_cls=AppThreadPool,
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
        worker_state.should_stop = None  # a worker stopped earlier in this process left it set
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        # Stopped from its own thread: the event loop checks Celery's shutdown flag on
        # every turn and shuts the worker down there. Stopping it from this thread would
        # send cancels on the AMQP connection the loop thread is reading, and the loop
        # would eat the broker's replies: the stop then waited out a socket timeout.
        worker_state.should_stop = EX_OK
        self._thread.join(timeout)
        if self._thread.is_alive():  # a loop stuck in a task: stop it from here after all
            self._controller.stop(in_sighandler=False)
            self._thread.join(timeout)


class EmbeddedWorkers:
    """Several embedded workers started and stopped together: each has its own slots,
    so work on one queue (moderation) never waits for, or holds, a slot of another."""

    def __init__(self, workers: list[EmbeddedWorker]) -> None:
        self._workers = workers

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def stop(self, timeout: float = 30.0) -> None:
        for worker in self._workers:
            worker.stop(timeout)


@dataclass(frozen=True, slots=True)
class Workers:
    """What consumes this process's jobs: the app whose tasks run variants and webhooks,
    and, with moderation on, an app of its own for ``serve``'s moderation slots (a
    worker's queue selection is kept on its app, so one app cannot feed two workers
    different queues). The container builds it; the CLI starts it embedded or as
    ``celery worker``, and hooks process-level work onto Celery's signals through it, so
    nothing outside this module touches a Celery object."""

    app: Celery
    queue_name: str
    moderation_app: Celery | None = None

    def embedded(
        self, concurrency: int, moderation_concurrency: int
    ) -> EmbeddedWorker | EmbeddedWorkers:
        """Variant (and webhook) slots; with moderation on, moderation slots of its own
        beside them, so a moderation job never holds a slot a variant waits for."""
        variants = EmbeddedWorker(self.app, concurrency)
        if self.moderation_app is None:
            return variants
        moderators = EmbeddedWorker(
            self.moderation_app, moderation_concurrency, [moderation_queue_name(self.queue_name)]
        )
        return EmbeddedWorkers([variants, moderators])

    def run(self, argv: list[str]) -> int:
        """``celery worker`` in this process (``imgpipe worker``); its exit status."""
        return run_worker(self.app, argv)

    @staticmethod
    def on_pool_process(started: Callable[[], None], exiting: Callable[[int | None], None]) -> None:
        """Call ``started`` in each prefork pool process as it starts, ``exiting`` (with
        its pid) as it exits."""
        from celery.signals import worker_process_init, worker_process_shutdown

        def on_init(**_: object) -> None:
            started()

        def on_shutdown(pid: int | None = None, **_: object) -> None:
            exiting(pid)

        worker_process_init.connect(on_init, weak=False)
        worker_process_shutdown.connect(on_shutdown, weak=False)

    @staticmethod
    def on_ready(start: Callable[[], None], stop: Callable[[], None]) -> None:
        """Call ``start`` in the worker's main process once its pool is up, ``stop`` as
        it shuts down."""
        from celery.signals import worker_ready, worker_shutdown

        def on_start(**_: object) -> None:
            start()

        def on_stop(**_: object) -> None:
            stop()

        worker_ready.connect(on_start, weak=False)
        worker_shutdown.connect(on_stop, weak=False)


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


def run_worker(app: Celery, argv: list[str]) -> int:
    """Run ``celery worker`` in this process and return its exit status.

    ``Celery.worker_main`` and ``Celery.start`` drop the status: under click 8 a
    non-standalone ``main`` returns it instead of raising, and Celery does not pass the
    return value on. A worker whose pool could not start ("Unrecoverable error") would
    then exit 0, and a supervisor with restart-on-failure would leave it dead.
    """
    from celery.bin.celery import celery as celery_command

    celery_command.params[0].default = app
    try:
        status = celery_command.main(args=argv, standalone_mode=False)
    finally:
        celery_command.params[0].default = None
    return status if isinstance(status, int) else 0


def _soft_timeout(signum: int, frame: object) -> None:
    reason = "Processing ran past the worker's soft time limit (a step stuck inside the decoder)"
    # Recorded as well as raised: a raise that lands inside a callback from libvips is
    # lost (domain/interrupts.py), and the engine's deadline reads the record.
    request_stop(reason)
    raise ProcessTimeout(f"{reason}.")


def _soft_limit_is_a_timeout() -> None:
    """Make Celery's soft time limit raise ProcessTimeout (``timeout``: permanent) instead
    of SoftTimeLimitExceeded, which the engine cannot name and so would retry as
    ``internal_error`` up to MAX_ATTEMPTS times, each as long. billiard installs its own
    SIGUSR1 handler after every initializer hook, so it is replaced here, in the task,
    which runs on the pool process's main thread (the only one that may set handlers)."""
    soft = getattr(signal, "SIGUSR1", None)
    if soft is not None and threading.current_thread() is threading.main_thread():
        signal.signal(soft, _soft_timeout)
