"""Job messages carry ids only: the database holds the truth about the work."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProcessImage:
    """Make every variant of this image that is not done yet."""

    image_id: str


@dataclass(frozen=True, slots=True)
class DeliverWebhook:
    """Make attempt number ``attempt`` to deliver this webhook event."""

    event_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ModerateImage:
    """Score this image with the moderation backend, if its moderation is due."""

    image_id: str
