"""The composition root: the only module that names concrete backends.

``build`` turns settings into a wired set of adapters. Nothing here runs at import time;
each process (serve, api, worker, tests) builds its own container.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic import SecretStr
from sqlalchemy import Engine

from imgpipe import engine as image_engine
from imgpipe import resources
from imgpipe.config import Settings
from imgpipe.db.session import make_read_sessionmaker, make_sessionmaker
from imgpipe.domain.moderation import Policy
from imgpipe.domain.ratelimit import InProcessLimiter, Rate, RateLimiter
from imgpipe.domain.render_options import RenderConfig
from imgpipe.domain.retry import RetryPolicy
from imgpipe.domain.webhooks import parse_schedule
from imgpipe.jobs.celery_queue import (
    CeleryQueue,
    EmbeddedWorker,
    EmbeddedWorkers,
    QueueConfig,
    Workers,
    bind_handlers,
    make_celery,
)
from imgpipe.jobs.messages import DeliverWebhook, ModerateImage, ProcessImage
from imgpipe.moderation.port import Moderator
from imgpipe.notify.egress import AllowList
from imgpipe.notify.signing import new_secret, secret_key
from imgpipe.services import durability, idempotency, moderation, webhooks
from imgpipe.services.background import Periodic
from imgpipe.services.deps import (
    AccessSettings,
    DeliverySettings,
    DurabilitySettings,
    JobSettings,
    ModerationSettings,
    ServiceDeps,
    WebhookSettings,
)
from imgpipe.services.process import process_image
from imgpipe.services.reconcile import reconcile
from imgpipe.services.render_runtime import RenderRuntime
from imgpipe.storage.base import ObjectStore
from imgpipe.storage.factory import store_from_url
from imgpipe.storage.local import LocalStore

EMBEDDED_WORKER_NICENESS = 10
# Moderation inside `serve` yields to variant work as well as to requests: at nice 19 a
# busy moderation thread gets about an eighth of a variant thread's share of a core. Not
# SCHED_IDLE: a thread starved while it holds the GIL would stall the whole process.
EMBEDDED_MODERATION_NICENESS = 19


class VariantActivity:
    """Variant work owed by this process: jobs handed to the embedded queue and not yet
    finished. Under `serve`, a moderation job waits for a lull in it (at most
    ``MODERATION_DEFER_S``) before it takes CPU: on a machine with no core to spare,
    moderation then runs between variant jobs, not during them.

    Counted from the hand-out, not from the job's start: an upload hands out its variant
    job and then its moderation job, and the moderation worker can pick its message up
    first. Counting only running jobs let that moderation job start beside the variants
    it should wait for (bench/moderation_bench.py's p95)."""

    MODERATION_DEFER_S = 10.0

    def __init__(self) -> None:
        self._running = 0
        self._expected: set[str] = set()  # image ids handed out, job not started yet
        self._changed = threading.Condition()

    def expect(self, image_id: str) -> None:
        with self._changed:
            self._expected.add(image_id)

    @contextlib.contextmanager
    def running(self, image_id: str) -> Iterator[None]:
        with self._changed:
            self._running += 1
            self._expected.discard(image_id)
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def wait_for_lull(self, timeout: float | None = None) -> bool:
        """True once no variant job is running or handed out; False after ``timeout``
        (a job whose message was lost holds nothing up for longer than that)."""
        with self._changed:
            return self._changed.wait_for(
                lambda: self._running == 0 and not self._expected,
                self.MODERATION_DEFER_S if timeout is None else timeout,
            )


@dataclass(frozen=True, slots=True)
class _ExpectingQueue:
    """The job queue, telling ``activity`` of every variant job it hands out."""

    queue: CeleryQueue
    activity: VariantActivity

    def enqueue(self, message: ProcessImage, recover: bool = False) -> None:
        self.activity.expect(message.image_id)
        self.queue.enqueue(message, recover=recover)

    def check(self) -> None:
        self.queue.check()

    def depth(self) -> int | None:
        return self.queue.depth()


@dataclass
class Container:
    settings: Settings
    db_engine: Engine
    deps: ServiceDeps
    workers: Workers

    @property
    def staging_dir(self) -> Path:
        return self.deps.staging_dir

    def migrate(self) -> None:
        resources.migrate(self.db_engine)

    def clean_staging(self, older_than_s: float = 3600.0) -> None:
        """Remove uploads a crashed process left half-received in the staging area."""
        if not self.staging_dir.is_dir():
            return
        cutoff = time.time() - older_than_s
        for leftover in self.staging_dir.glob("upload-*"):
            with contextlib.suppress(OSError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()

    def schema_is_current(self) -> bool:
        return resources.schema_is_current(self.db_engine)

    def prepare_prefork(self) -> None:
        """Celery prefork children must not share the parent's pooled connections."""

        def after_fork() -> None:
            self.db_engine.dispose(close=False)

        def child_exit(pid: int | None) -> None:
            if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(pid or os.getpid())  # type: ignore[no-untyped-call]

        self.workers.on_pool_process(after_fork, child_exit)

    def embedded_worker(self) -> EmbeddedWorker | EmbeddedWorkers:
        """This process's worker slots (``serve``): WORKERS for variants and webhooks,
        MODERATION_WORKERS beside them when moderation is on."""
        return self.workers.embedded(self.settings.workers, self.settings.moderation_workers)

    def housekeeping(self) -> list[Periodic]:
        """Background rounds of serve and every worker: webhook attempts that are due,
        the job reconciler (expired leases, due retries, messages the broker lost), and
        forgetting expired idempotency keys."""
        deps = self.deps
        tasks = [
            Periodic(
                "imgpipe-webhooks", self.settings.webhook_sweep_s, lambda: webhooks.sweep(deps)
            ),
            Periodic("imgpipe-reconcile", self.settings.reconcile_s, lambda: reconcile(deps)),
            Periodic(
                "imgpipe-idempotency",
                idempotency.FORGET_EVERY_S,
                lambda: idempotency.forget_expired(deps),
            ),
        ]
        if deps.moderation.enabled:
            tasks.append(
                Periodic(
                    "imgpipe-moderation",
                    self.settings.reconcile_s,
                    lambda: moderation.reconcile(deps),
                )
            )
        for store in (deps.store, deps.durability.replica):
            if isinstance(store, LocalStore):  # temp files of writers killed mid-write
                tasks.append(
                    Periodic("imgpipe-temp-files", 600.0, store.remove_stale_temp_files, True)
                )
        # Purge after DELETE_RETENTION_S, the replica's missing copies, orphan originals,
        # downloads of killed workers (services/durability.py).
        tasks.append(
            Periodic(
                "imgpipe-storage-sweep",
                self.settings.storage_sweep_s,
                lambda: durability.sweep(deps),
                True,
            )
        )
        return tasks

    def check_protection(self) -> None:
        """At start: what each store keeps beyond one copy, for /readyz and /metrics."""
        durability.check_protection(self.deps)

    def housekeeping_when_worker_ready(self) -> None:
        """A Celery worker runs housekeeping in its main process once its pool is up."""
        tasks = self.housekeeping()

        def start() -> None:
            for task in tasks:
                task.start()

        def stop() -> None:
            for task in tasks:
                task.stop()

        self.workers.on_ready(start, stop)

    def close(self) -> None:
        self.db_engine.dispose()


def resolve_secret(
    configured: SecretStr | None,
    kept_at: Path,
    generate: Callable[[], str] = lambda: secrets.token_urlsafe(32),
) -> bytes:
    """The configured secret, else one generated on first start and kept in the data dir.

    Written with O_EXCL and mode 0600, so concurrent first starts agree on one secret
    and no other user can read it.
    """
    if configured is not None:
        return configured.get_secret_value().encode()
    with contextlib.suppress(FileNotFoundError):
        return kept_at.read_bytes().strip()
    kept_at.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(kept_at, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return kept_at.read_bytes().strip()
    with os.fdopen(fd, "wb") as fh:
        fh.write(generate().encode())
    return kept_at.read_bytes().strip()


def build(settings: Settings) -> Container:
    image_engine.configure()
    profiles = resources.load_profiles(settings)
    db_engine = resources.open_database(settings)
    queue_config = QueueConfig(
        broker_url=settings.broker_url,
        queue_name=settings.queue_name,
        process_timeout_s=settings.process_timeout_s,
        max_memory_per_child_mb=settings.worker_max_memory_mb,
    )
    moderator = _moderator(settings)
    celery = make_celery(queue_config)
    queue = CeleryQueue(celery)
    activity = VariantActivity()
    store = store_from_url(settings.storage_url, settings.s3_endpoint_url)
    deps = ServiceDeps(
        sessions=make_sessionmaker(db_engine),
        read_sessions=make_read_sessionmaker(db_engine),
        store=store,
        # Under `serve` moderation waits for the variant jobs handed out here (above).
        queue=_ExpectingQueue(queue, activity) if settings.embedded_queue else queue,
        profiles=profiles,
        limits=settings.limits,
        process_timeout_s=settings.process_timeout_s,
        staging_dir=settings.data_dir / "staging",
        signing_key=resolve_secret(settings.signing_key, settings.data_dir / "signing_key"),
        render=RenderConfig(
            previous_keys=settings.previous_signing_keys,
            allow_unsigned=settings.render_unsigned,
            max_output_pixels=settings.render_max_pixels,
            watermarks_dir=settings.watermarks_folder,
            max_in_flight=settings.render_concurrency,
            intermediate=settings.render_intermediate,
            large_source_eager=settings.render_large_source_eager,
        ),
        render_runtime=RenderRuntime(
            lookup_ttl_s=settings.render_lookup_ttl_s, local_reads=isinstance(store, LocalStore)
        ),
        access=_access(settings),
        webhooks=_webhooks(settings, queue),
        jobs=JobSettings(
            retry=RetryPolicy(settings.max_attempts, settings.retry_base_s, settings.retry_max_s),
            lease_s=settings.lease_s,
            requeue_after_s=settings.requeue_after_s,
        ),
        api_base_url=settings.api_base_url,
        delivery=_delivery(settings),
        durability=DurabilitySettings(
            replica=_replica(settings),
            retention_s=settings.delete_retention_s,
            orphan_grace_s=settings.orphan_grace_s,
        ),
        moderation=ModerationSettings(
            moderator=moderator,
            policy=Policy.parse(settings.moderation_thresholds),
            queue=queue,
            timeout_s=settings.moderation_timeout_s,
        ),
    )

    # The handlers, now that what they run on exists.
    def handle(message: ProcessImage) -> None:
        with activity.running(message.image_id):
            process_image(deps, message)

    def handle_webhook(message: DeliverWebhook) -> None:
        webhooks.deliver(deps, message)

    def handle_moderation(message: ModerateImage) -> None:
        if settings.embedded_queue:  # variants share this process's cores: let them go first
            activity.wait_for_lull()
        moderation.moderate_image(deps, message)

    # Embedded workers share a process with the API; they run niced so requests come first.
    niceness = EMBEDDED_WORKER_NICENESS if settings.embedded_queue else 0
    bind_handlers(
        celery,
        handle,
        worker_niceness=niceness,
        webhook_handler=handle_webhook,
        moderation_handler=handle_moderation if moderator is not None else None,
    )
    moderation_celery = None
    if moderator is not None:
        moderation_celery = make_celery(queue_config)
        bind_handlers(
            moderation_celery,
            None,
            worker_niceness=EMBEDDED_MODERATION_NICENESS if niceness else 0,
            moderation_handler=handle_moderation,
        )
    return Container(
        settings, db_engine, deps, Workers(celery, settings.queue_name, moderation_celery)
    )


def _moderator(settings: Settings) -> Moderator | None:
    """The MODERATION backend, checked now: a missing package or model stops the start."""
    moderator: Moderator
    if settings.moderation == "nudenet":
        from imgpipe.moderation.nudenet_backend import NudeNetModerator

        moderator = NudeNetModerator(settings.nudenet_model)
    elif settings.moderation == "rekognition":
        from imgpipe.moderation.rekognition import RekognitionModerator

        moderator = RekognitionModerator(
            settings.rekognition_endpoint_url or None,
            settings.rekognition_region or None,
            timeout_s=settings.moderation_timeout_s,
        )
    else:
        return None
    moderator.check()
    return moderator


def _delivery(settings: Settings) -> DeliverySettings:
    """PUBLIC_BASE_URL and its mode, checked against the store they need."""
    parsed = urlparse(settings.storage_url)
    on_s3 = parsed.scheme == "s3"
    mode = settings.public_url_mode
    if mode == "auto":
        mode = "bucket" if on_s3 else "api"
    if mode == "bucket" and not on_s3:
        raise ValueError(
            "setting IMGPIPE_PUBLIC_URL_MODE: bucket needs an s3:// IMGPIPE_STORAGE_URL "
            "(a CDN in front of a local disk is a CDN in front of the API: use api)."
        )
    if settings.variant_presign_s and not on_s3:
        raise ValueError(
            "setting IMGPIPE_VARIANT_PRESIGN_S: presigned redirects need an s3:// "
            "IMGPIPE_STORAGE_URL; set it to 0 for a local store."
        )
    return DeliverySettings(
        public_base_url=settings.public_base_url,
        mode=mode,
        bucket_prefix=parsed.path.strip("/") if on_s3 else "",
        presign_s=settings.variant_presign_s,
    )


def _replica(settings: Settings) -> ObjectStore | None:
    url = settings.storage_replica_url
    if not url:
        return None
    if url.rstrip("/") == settings.storage_url.rstrip("/"):
        raise ValueError(
            "setting IMGPIPE_STORAGE_REPLICA_URL: it names the primary store itself; a "
            "replica must be another store (another bucket, region or disk)."
        )
    try:
        return store_from_url(url, settings.replica_s3_endpoint_url or settings.s3_endpoint_url)
    except ValueError as exc:
        message = str(exc).replace("IMGPIPE_STORAGE_URL", "IMGPIPE_STORAGE_REPLICA_URL")
        raise ValueError(message) from None


def _rate_limiter(settings: Settings) -> RateLimiter:
    """Redis when API processes can share it; else buckets in this process."""
    url = settings.rate_limit_redis_url
    if not url and settings.broker_url.startswith(("redis://", "rediss://")):
        url = settings.broker_url
    if url:
        from imgpipe.ratelimit.redis_bucket import RedisLimiter

        return RedisLimiter(url, settings.queue_name)
    return InProcessLimiter()


def _access(settings: Settings) -> AccessSettings:
    return AccessSettings(
        auth_required=settings.auth == "required",
        upload_rate=Rate.parse(settings.rate_limit_uploads),
        request_rate=Rate.parse(settings.rate_limit_requests),
        limiter=_rate_limiter(settings),
    )


def _webhooks(settings: Settings, queue: CeleryQueue) -> WebhookSettings:
    secret = resolve_secret(
        settings.webhook_secret, settings.data_dir / "webhook_secret", new_secret
    )
    try:
        key = secret_key(secret.decode())
    except ValueError as exc:  # the setting is checked here, where the secret is resolved
        raise ValueError(f"setting IMGPIPE_WEBHOOK_SECRET: {exc}") from None
    return WebhookSettings(
        secret_key=key,
        allow=AllowList.parse(settings.webhook_allow_hosts),
        schedule_s=parse_schedule(settings.webhook_retry_schedule),
        retry_for_s=settings.webhook_retry_for_s,
        timeout_s=settings.webhook_timeout_s,
        lease_s=max(120.0, settings.webhook_timeout_s * 3),
        queue=queue,
    )
