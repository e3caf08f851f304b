"""What the use cases need, handed in by the container (the composition root)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from imgpipe.db.session import SessionFactory
from imgpipe.domain.media import Limits, ProbeCache
from imgpipe.domain.moderation import Policy
from imgpipe.domain.profiles import ProfileSet
from imgpipe.domain.ratelimit import InProcessLimiter, Rate, RateLimiter
from imgpipe.domain.render_options import RenderConfig
from imgpipe.domain.retry import RetryPolicy
from imgpipe.domain.webhooks import DEFAULT_RETRY_FOR_S, DEFAULT_SCHEDULE_S
from imgpipe.jobs.queue import JobQueue, ModerationQueue, WebhookQueue
from imgpipe.moderation.port import Moderator
from imgpipe.notify.egress import AllowList, Resolver, system_resolver
from imgpipe.services.render_runtime import RenderRuntime
from imgpipe.storage.base import ObjectStore, Protection


@dataclass(frozen=True)
class AccessSettings:
    """API keys and rate limits (SPEC §4)."""

    auth_required: bool = False  # IMGPIPE_AUTH=required, even before any key exists
    upload_rate: Rate = field(default_factory=lambda: Rate(20, 1.0))
    request_rate: Rate = field(default_factory=lambda: Rate(200, 1.0))
    limiter: RateLimiter = field(default_factory=InProcessLimiter)
    idempotency_ttl_s: float = 24 * 3600.0


@dataclass(frozen=True)
class WebhookSettings:
    """Where webhooks may go, how they are signed, and how long they are retried."""

    secret_key: bytes = b""
    allow: AllowList = field(default_factory=AllowList)
    resolve: Resolver = system_resolver
    schedule_s: tuple[float, ...] = DEFAULT_SCHEDULE_S
    retry_for_s: float = DEFAULT_RETRY_FOR_S
    timeout_s: float = 10.0
    # An attempt handed to the queue is the sender's for this long; after it, the sweep
    # sends it again (a worker died, or the broker lost the message).
    lease_s: float = 120.0
    queue: WebhookQueue | None = None


@dataclass(frozen=True)
class JobSettings:
    """Leases, retries and reconciliation of image jobs (docs/reliability.md)."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease_s: float = 30.0
    requeue_after_s: float = 60.0


@dataclass(frozen=True)
class DeliverySettings:
    """Where browsers fetch variants from (docs/storage.md, "Delivery")."""

    public_base_url: str = ""  # empty: no public URLs, everything as before
    mode: str = "api"  # "bucket": a CDN serves the bucket; "api": a CDN in front of the API
    bucket_prefix: str = ""  # object names start with it (s3://bucket/PREFIX)
    presign_s: int = 0  # >0: the variant route redirects to a presigned GET this long


@dataclass(frozen=True)
class DurabilitySettings:
    """Originals beyond one copy (docs/storage.md)."""

    replica: ObjectStore | None = None
    retention_s: float = 604_800.0
    orphan_grace_s: float = 86_400.0
    temp_grace_s: float = 3600.0
    # Filled at start by services.durability.check_protection: store name -> what it keeps.
    protection: dict[str, Protection | str] = field(default_factory=dict)


@dataclass(frozen=True)
class ModerationSettings:
    """MODERATION and its policy (docs/moderation.md). ``moderator`` None: off."""

    moderator: Moderator | None = None
    policy: Policy = field(default_factory=Policy)
    queue: ModerationQueue | None = None
    timeout_s: float = 20.0

    @property
    def enabled(self) -> bool:
        return self.moderator is not None


@dataclass(frozen=True)
class ServiceDeps:
    sessions: SessionFactory  # for work that writes: `with sessions.begin()`
    read_sessions: SessionFactory  # for queries that only read
    store: ObjectStore
    queue: JobQueue
    profiles: ProfileSet
    limits: Limits
    process_timeout_s: float
    staging_dir: Path
    signing_key: bytes
    access: AccessSettings = field(default_factory=AccessSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    render: RenderConfig = field(default_factory=RenderConfig)
    # Render's locks, slots and bounded caches in this process (services/render_runtime.py).
    render_runtime: RenderRuntime = field(default_factory=RenderRuntime)
    jobs: JobSettings = field(default_factory=JobSettings)
    # Originals' header facts for renders, by sha256 (bounded; per process).
    probes: ProbeCache = field(default_factory=ProbeCache)
    moderation: ModerationSettings = field(default_factory=ModerationSettings)
    # API_BASE_URL, without a trailing slash; empty: URLs follow each request's Host.
    api_base_url: str = ""
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    durability: DurabilitySettings = field(default_factory=DurabilitySettings)
