"""Webhook events and their retry schedule: pure rules, no I/O."""

from __future__ import annotations

from enum import StrEnum

from imgpipe.domain.errors import ImgpipeError

# Stripe retries for 3 days, GitHub not at all; a day of exponential backoff covers a
# receiver's deploy, outage or weekend-night incident without piling up forever.
DEFAULT_SCHEDULE_S = (5.0, 30.0, 120.0, 600.0, 3600.0, 3 * 3600.0)
DEFAULT_RETRY_FOR_S = 24 * 3600.0


class EventType(StrEnum):
    IMAGE_DONE = "image.done"  # status done or partial: every variant settled
    IMAGE_FAILED = "image.failed"
    IMAGE_FLAGGED = "image.flagged"  # reserved for moderation


class EventStatus(StrEnum):
    PENDING = "pending"  # waiting for its next attempt
    DELIVERED = "delivered"  # a 2xx answer
    FAILED = "failed"  # gave up: no 2xx within the retry window


def event_for_status(image_status: str) -> EventType | None:
    if image_status in ("done", "partial"):
        return EventType.IMAGE_DONE
    if image_status == "failed":
        return EventType.IMAGE_FAILED
    return None


def next_delay_s(schedule: tuple[float, ...], attempt: int) -> float:
    """Wait after failed attempt number ``attempt`` (1-based); the last step repeats."""
    return schedule[min(attempt, len(schedule)) - 1]


def parse_schedule(text: str) -> tuple[float, ...]:
    try:
        steps = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        steps = ()
    if not steps or any(step <= 0 for step in steps):
        raise ValueError(f"must be positive seconds separated by commas; got {text!r}")
    return steps


class BadCallbackUrl(ImgpipeError):
    code = "bad_callback_url"
    status = 400
    title = "The callback URL is not allowed"
