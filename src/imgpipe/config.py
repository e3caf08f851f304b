"""Settings: environment (prefix ``IMGPIPE_``), then the TOML file named by ``IMGPIPE_CONFIG``.

Names and defaults are SPEC §3's. Everything is validated when the process starts, and an
error names the exact setting. Components receive the small typed view they need
(``limits``, ``data_dir``), never the whole settings object.
"""

from __future__ import annotations

import math
import os
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from imgpipe.domain.media import Limits
from imgpipe.domain.moderation import DEFAULT_THRESHOLDS, Policy
from imgpipe.domain.ratelimit import Rate
from imgpipe.domain.webhooks import parse_schedule


def usable_cpus() -> int:
    """The CPUs this process may use: its affinity mask, lowered to its cgroup's CPU quota
    where one is set; never the machine's count. In a container pinned to 2 of 64 cores
    (a cpuset) or limited to 2 CPUs' time (`docker run --cpus 2`, a Kubernetes CPU
    limit), `os.cpu_count()` says 64, and 64 worker threads would fight over 2 CPUs of
    time, each throttled in turn."""
    try:
        cpus = max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS)
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota()
    return cpus if quota is None else max(1, min(cpus, quota))


def cgroup_cpu_quota(
    root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The tightest CPU quota on this process's cgroup and its ancestors, in whole CPUs
    rounded up (1.5 CPUs of time: 2, as the JVM and Go count it), or None where none is
    set or cgroups cannot be read. cgroup v2's ``cpu.max`` ("quota period", or "max"),
    or v1's ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us`` (-1: none)."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    quotas: list[int] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: one hierarchy, mounted at the root
            mount, v2 = root, True
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own mount
            mount, v2 = root / "cpu", False
        else:
            continue
        folder = mount / path.lstrip("/")
        for directory in (folder, *folder.parents):
            quota = _cpu_quota(directory, v2)
            if quota is not None:
                quotas.append(quota)
            if directory == mount:
                break
    return min(quotas, default=None)


def _cpu_quota(directory: Path, v2: bool) -> int | None:
    try:
        if v2:
            quota, period = (directory / "cpu.max").read_text().split()
        else:
            quota = (directory / "cpu.cfs_quota_us").read_text().strip()
            period = (directory / "cpu.cfs_period_us").read_text().strip()
        if quota in ("max", "-1"):
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        return None


class _TomlFileSource(PydanticBaseSettingsSource):
    """Keys of the IMGPIPE_CONFIG file, in any case, with or without the prefix."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get("IMGPIPE_CONFIG")
        self._data: dict[str, Any] = {}
        if path:
            with open(path, "rb") as fh:
                raw = tomllib.load(fh)
            for key, value in raw.items():
                self._data[key.lower().removeprefix("imgpipe_")] = value

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGPIPE_", case_sensitive=False, extra="ignore")

    database_url: str = "sqlite:///./imgpipe-data/imgpipe.db"
    # A PostgreSQL statement, ping or commit taking longer ends its connection: 503
    # database_unavailable instead of a request held by a database that stopped answering.
    # 0: no bound.
    database_timeout_s: float = Field(default=30.0, ge=0)
    storage_url: str = "file://./imgpipe-data/objects"
    broker_url: str = ""
    # Any S3-compatible store (MinIO, R2, Ceph); empty means AWS. Credentials come from the
    # usual AWS_* variables.
    s3_endpoint_url: str | None = None
    data_dir: Path = Path("./imgpipe-data")
    # Broker queue names start with this ("<name>.process"), so deployments (and test
    # runs) sharing one broker never take each other's jobs.
    queue_name: str = Field(default="imgpipe", pattern=r"^[A-Za-z0-9_.-]{1,100}$")
    # A Celery worker child past this resident size is replaced after its current job.
    worker_max_memory_mb: int = Field(default=1024, gt=0)
    max_upload_bytes: int = Field(default=26_214_400, gt=0)
    max_pixels: int = Field(default=268_435_456, gt=0)
    max_frames: int = Field(default=500, gt=0)
    # Progressive JPEGs decode whole (about 3.4 bytes of memory a pixel): their own budget.
    max_progressive_pixels: int = Field(default=100_000_000, gt=0)
    # One decoded image (w x h x bands x bytes per sample x frames); README explains 1 GiB.
    max_decode_bytes: int = Field(default=1 << 30, gt=0)
    process_timeout_s: float = Field(default=30.0, gt=0)
    signing_key: SecretStr | None = None
    profiles_file: Path | None = None
    rate_limit_uploads: str = "20/second"
    rate_limit_requests: str = "200/second"
    webhook_secret: SecretStr | None = None
    webhook_allow_hosts: str = ""
    # Where per-key buckets live when API processes must share them. Empty: the broker
    # when it is redis://, else each API process counts on its own (see
    # docs/auth-and-webhooks.md).
    rate_limit_redis_url: str = ""
    # Seconds to wait after failed attempt 1, 2, ...; the last step repeats until
    # WEBHOOK_RETRY_FOR_S after the event.
    webhook_retry_schedule: str = "5,30,120,600,3600,10800"
    webhook_retry_for_s: float = Field(default=86_400.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # How often serve and each worker look for attempts that are due.
    webhook_sweep_s: float = Field(default=5.0, gt=0)
    auth: Literal["auto", "required"] = "auto"
    log_level: str = "INFO"
    # json: one object per line, with image_id (for log pipelines); text: for a terminal.
    log_format: Literal["json", "text"] = "json"
    # In-process worker threads for `imgpipe serve` (libvips releases the GIL while it works).
    workers: int = Field(default_factory=usable_cpus, gt=0)
    # On-demand render (docs/render.md). Unsigned render URLs only when explicitly enabled.
    render_unsigned: bool = False
    # Comma-separated keys still accepted for render signatures after a rotation.
    signing_keys_previous: SecretStr | None = None
    # Largest render output, width x height.
    render_max_pixels: int = Field(default=16_777_216, gt=0)
    # Cold renders at once per API process (default: the CPUs this process may use).
    render_concurrency: int = Field(default_factory=usable_cpus, gt=0)
    # Renders that fit inside it are made from a 1920x1080 copy the worker keeps, instead
    # of decoding the original (docs/render.md, "Render source"). false: always the original.
    render_intermediate: bool = True
    # With it on, the worker also makes the large copy (within 3840x2160) for originals it
    # saves a decode of, after the job; false: the first render that needs it makes it.
    render_large_source_eager: bool = True
    # How long a render may reuse an image's row (sha256, status, owner, moderation) read
    # for an earlier render, in seconds; the process that deletes or moderates an image
    # drops its copy at once (docs/render.md, "Caching"). 0: read it on every request.
    render_lookup_ttl_s: float = Field(default=2.0, ge=0, le=60)
    # Watermark PNGs for `wm=NAME` (NAME.png); default DATA_DIR/watermarks.
    watermarks_dir: Path | None = None
    # The API's own public address (https://api.example.com, or with a path prefix), for
    # the URLs it hands out: signed upload URLs and Location. Empty: the request's Host.
    api_base_url: str = ""
    # Delivery (docs/storage.md, "Delivery"). Where browsers fetch variants: a CDN in front
    # of the bucket or of the API; empty: the image resource lists API URLs only.
    public_base_url: str = ""
    # bucket: PUBLIC_BASE_URL serves the bucket (public_url = the object's name under it);
    # api: it serves the API (public_url = a signed variant URL); auto: bucket on s3://.
    public_url_mode: Literal["auto", "bucket", "api"] = "auto"
    # Private buckets: the variant route answers 302 to a presigned GET valid this long
    # (s3:// only); 0: the API streams the bytes.
    variant_presign_s: int = Field(default=0, ge=0, le=604_800)
    # Durability (docs/storage.md, "Originals beyond one copy"). A second store every
    # original is written to before the 202 (any store URL); empty: none.
    storage_replica_url: str = ""
    # The replica's S3 endpoint when it is another S3-compatible service than the primary's
    # (empty: IMGPIPE_S3_ENDPOINT_URL).
    replica_s3_endpoint_url: str | None = None
    # DELETE hides an image at once; its bytes are purged this long after.
    delete_retention_s: float = Field(default=604_800.0, ge=0)
    # How often serve and each worker run the storage sweeps (purge, replica, orphans).
    storage_sweep_s: float = Field(default=600.0, gt=0)
    # An original no record names is removed once it is this old (an upload whose answer
    # was lost has long been retried or abandoned by then).
    orphan_grace_s: float = Field(default=86_400.0, ge=0)
    # `imgpipe api`: idle keep-alive connections close after this long. A load balancer's
    # idle timeout must be shorter (AWS ALB: 60 s), or it reuses a connection we just closed.
    keep_alive_s: int = Field(default=75, gt=0)
    # Jobs (docs/reliability.md). Claims per variant before it is dead-lettered.
    max_attempts: int = Field(default=5, ge=1, le=100)
    # Retry n waits uniform(0, min(RETRY_MAX_S, RETRY_BASE_S * 2**n)) s: "full jitter".
    retry_base_s: float = Field(default=1.0, gt=0)
    retry_max_s: float = Field(default=300.0, gt=0)
    # A claimed job is the worker's for this long, renewed by heartbeat every third of it;
    # once it runs out (the worker died), the job is handed out again.
    lease_s: float = Field(default=30.0, gt=0)
    # How often serve and every worker look for expired leases, due retries, lost messages.
    reconcile_s: float = Field(default=5.0, gt=0)
    # A job handed to the broker and not claimed for this long may have been lost by it.
    requeue_after_s: float = Field(default=60.0, gt=0)
    # Moderation (docs/moderation.md): off, nudenet (extra `moderation`, AGPL-3.0) or
    # rekognition (boto3). Per-category CATEGORY=REVIEW_AT[:REJECT_AT] scores.
    moderation: Literal["off", "nudenet", "rekognition"] = "off"
    moderation_thresholds: str = DEFAULT_THRESHOLDS
    moderation_timeout_s: float = Field(default=20.0, gt=0)
    # Moderation jobs at once inside `imgpipe serve` (slots of their own, beside WORKERS).
    moderation_workers: int = Field(default=1, gt=0)
    # A NudeNet ONNX file other than the one in the wheel (never downloaded).
    nudenet_model: Path | None = None
    # Rekognition elsewhere than AWS's public endpoint (a VPC endpoint, a test stand-in);
    # region from AWS_REGION / AWS_DEFAULT_REGION unless set here.
    rekognition_endpoint_url: str = ""
    rekognition_region: str = ""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlFileSource(settings_cls))

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        scheme = urlparse(value).scheme.split("+")[0]
        if scheme not in ("sqlite", "postgresql"):
            raise ValueError(f"must be sqlite:///PATH or postgresql+psycopg://..., got {value!r}")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if not value:
            return value
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"must be empty or http(s)://HOST[/PATH], got {value!r}")
        if parsed.query or parsed.fragment:
            raise ValueError(f"must have no query or fragment, got {value!r}")
        return value.rstrip("/")

    @field_validator("public_base_url")
    @classmethod
    def _public_base(cls, value: str) -> str:
        if not value:
            return value
        parts = urlparse(value)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise ValueError(f"must be an http(s) URL like https://cdn.example.com, got {value!r}")
        return value.rstrip("/")

    @field_validator("rate_limit_uploads", "rate_limit_requests")
    @classmethod
    def _rate(cls, value: str) -> str:
        Rate.parse(value)
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("webhook_allow_hosts")
    @classmethod
    def _allow_hosts(cls, value: str) -> str:
        from imgpipe.notify.egress import AllowList

        AllowList.parse(value)
        return value

    @field_validator("moderation_thresholds")
    @classmethod
    def _thresholds(cls, value: str) -> str:
        Policy.parse(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        if value.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, got {value!r}")
        return value.upper()

    @field_validator("profiles_file")
    @classmethod
    def _profiles_exist(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @property
    def limits(self) -> Limits:
        return Limits(
            self.max_upload_bytes,
            self.max_pixels,
            self.max_frames,
            self.max_progressive_pixels,
            self.max_decode_bytes,
        )

    @property
    def watermarks_folder(self) -> Path:
        """Where `wm=NAME` finds NAME.png: WATERMARKS_DIR, or DATA_DIR/watermarks."""
        return self.watermarks_dir or self.data_dir / "watermarks"

    @property
    def previous_signing_keys(self) -> tuple[bytes, ...]:
        raw = self.signing_keys_previous.get_secret_value() if self.signing_keys_previous else ""
        return tuple(k.strip().encode() for k in raw.split(",") if k.strip())

    @property
    def embedded_queue(self) -> bool:
        return not self.broker_url

    @property
    def sqlite_path(self) -> Path | None:
        if not self.database_url.startswith("sqlite"):
            return None
        path = self.database_url.split(":///", 1)[1]
        return Path(path) if path and path != ":memory:" else None


def load_settings() -> Settings:
    return Settings()
