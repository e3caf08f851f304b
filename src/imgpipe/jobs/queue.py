"""The queue port: services enqueue messages; adapters deliver them to a handler."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from imgpipe.jobs.messages import DeliverWebhook, ModerateImage, ProcessImage

ProcessHandler = Callable[[ProcessImage], None]
WebhookHandler = Callable[[DeliverWebhook], None]
ModerationHandler = Callable[[ModerateImage], None]


class JobQueue(Protocol):
    def enqueue(self, message: ProcessImage, recover: bool = False) -> None:
        """Hand the message to the broker; raise if the broker did not take it.

        ``recover``: work handed out again (lease expired, retry due, message lost, dead
        letter retried), which workers take before any new work."""

    def check(self) -> None:
        """Raise unless the broker is reachable now."""

    def depth(self) -> int | None:
        """Jobs waiting in the broker, or None where the broker cannot tell."""


class WebhookQueue(Protocol):
    def enqueue_webhook(self, message: DeliverWebhook) -> None:
        """Hand a delivery attempt to the broker's webhook queue; raise if not taken."""


class ModerationQueue(Protocol):
    def enqueue_moderation(self, message: ModerateImage) -> None:
        """Hand a moderation job to the broker's moderation queue; raise if not taken."""
