"""The SQL schema: one row per image, one per (image, variant)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class ImageRow(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100), default="default")
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    bytes: Mapped[int] = mapped_column(Integer)
    format: Mapped[str] = mapped_column(String(10))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(Integer, default=1)
    # The name it was uploaded under, sanitised (domain/filenames.py); None before 0006.
    filename: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(20), index=True)
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    image_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The job (docs/reliability.md). A job may be claimed once due_at has passed; a claim
    # sets lease_owner and pushes due_at one lease ahead (the heartbeat keeps pushing it),
    # so a dead worker's job falls due again by itself. None: nothing left to do.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # When a message for this job was last handed to the broker (to notice lost ones).
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The pHash (16 hex digits) and its four 16-bit bands, each indexed after the owner:
    # near-duplicate lookups probe the bands (domain/similarity.py) instead of scanning.
    phash: Mapped[str | None] = mapped_column(String(16), nullable=True)
    phash_b0: Mapped[int | None] = mapped_column(Integer, nullable=True)
    phash_b1: Mapped[int | None] = mapped_column(Integer, nullable=True)
    phash_b2: Mapped[int | None] = mapped_column(Integer, nullable=True)
    phash_b3: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # DELETE sets it: the image is hidden at once and purged DELETE_RETENTION_S later.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    # When the original was known to be in the replica store (None: not yet, or no replica).
    replicated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The original's header facts, every ProbeResult field (domain/media.py probe_facts),
    # recorded at upload so a render made from the render source never reads the original.
    # None: uploaded before 0010; the first render (or processing job) fills it in.
    probe: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)

    variants: Mapped[list[VariantRow]] = relationship(
        back_populates="image",
        cascade="all, delete-orphan",
        order_by="VariantRow.id",
        lazy="selectin",
    )
    # None: uploaded while MODERATION was off (services/moderation.py).
    moderation: Mapped[ModerationRow | None] = relationship(
        cascade="all, delete-orphan", lazy="selectin", uselist=False
    )

    __table_args__ = (
        Index("ix_images_owner_id", "owner", "id"),
        Index("ix_images_owner_phash_b0", "owner", "phash_b0"),
        Index("ix_images_owner_phash_b1", "owner", "phash_b1"),
        Index("ix_images_owner_phash_b2", "owner", "phash_b2"),
        Index("ix_images_owner_phash_b3", "owner", "phash_b3"),
    )


class VariantRow(Base):
    __tablename__ = "variants"

    # 64-bit: at 100M uploads a day with 5 variants, a 32-bit id runs out within a week.
    # SQLite's INTEGER PRIMARY KEY is already a 64-bit rowid (and must stay INTEGER).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    profile: Mapped[str] = mapped_column(String(100))
    profile_digest: Mapped[str] = mapped_column(String(32))
    format: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    bytes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    storage_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(50), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    image: Mapped[ImageRow] = relationship(back_populates="variants")

    __table_args__ = (UniqueConstraint("image_id", "name", name="uq_variants_image_name"),)


class UploadRow(Base):
    """A direct-to-storage upload announced by POST /v1/uploads, until it is completed."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # the future image id
    owner: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str | None] = mapped_column(String(200), nullable=True)
    declared_bytes: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ApiKeyRow(Base):
    """An API key: only its sha256 is kept; the key itself is shown once, at creation."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # key_..., for list/revoke
    owner: Mapped[str] = mapped_column(String(100), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(20))  # the first characters, for people
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    callback_url: Mapped[str | None] = mapped_column(Text, nullable=True)  # default webhook
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class IdempotencyRow(Base):
    """An Idempotency-Key of POST /v1/images: the request it stood for, and its answer."""

    __tablename__ = "idempotency_keys"

    owner: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    image_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # None: in flight
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class WebhookEventRow(Base):
    """One event for one callback URL; the database schedules its attempts (due_at)."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # evt_..., the webhook-id
    owner: Mapped[str] = mapped_column(String(100))
    image_id: Mapped[str] = mapped_column(String(40), index=True)
    type: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[str] = mapped_column(Text)  # the JSON body, fixed when the event happens
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (Index("ix_webhook_events_status_due", "status", "due_at"),)


class WebhookDeliveryRow(Base):
    """One attempt to deliver an event: what came back (or what went wrong), and when."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    image_id: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)


class JobAttemptRow(Base):
    """One claim of an image's job: who took it, when, and how it ended."""

    __tablename__ = "job_attempts"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)  # the highest variant attempt it claimed
    lease_owner: Mapped[str] = mapped_column(String(64))
    worker: Mapped[str] = mapped_column(String(200))  # host-pid
    variants: Mapped[list[str]] = mapped_column(JSON)
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # done, partial, failed, retry (some variants wait for another attempt), lost
    outcome: Mapped[str | None] = mapped_column(String(20), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(50), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class DeadLetterRow(Base):
    """Variants of an image that ran out of attempts, kept until someone retries them."""

    __tablename__ = "dead_letters"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)  # dlq_...
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    owner: Mapped[str] = mapped_column(String(100))
    variants: Mapped[list[str]] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str] = mapped_column(String(50))
    error: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    retried_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ModerationRow(Base):
    """An image's moderation: its verdict and its job (a lease of its own, like variants').

    The job columns mirror ``images``: claimable once ``due_at`` has passed, held by
    ``lease_owner`` until then, ``due_at`` None once there is nothing left to do.
    """

    __tablename__ = "moderations"

    image_id: Mapped[str] = mapped_column(
        ForeignKey("images.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(20), index=True)
    labels: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    model: Mapped[str | None] = mapped_column(String(100), nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(50), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class ModerationDecisionRow(Base):
    """Every verdict on an image, the model's and each admin's: who, when, what, why."""

    __tablename__ = "moderation_decisions"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(20))  # what the image became
    previous_status: Mapped[str | None] = mapped_column(String(20), nullable=True)
    decided_by: Mapped[str] = mapped_column(String(200))  # model:NAME, key:ID (owner), cli:USER
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    labels: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
