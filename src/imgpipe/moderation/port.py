"""The moderation port: what every backend does."""

from __future__ import annotations

from typing import Protocol

from imgpipe.domain.moderation import Label, ModerationImage


class Moderator(Protocol):
    # What the image resource names as ``moderation.model`` (backend and model version).
    model: str
    # The longer side of the copy the backend is given (engine/moderation_input.py).
    max_side: int

    def check(self) -> None:
        """Raise ValueError naming the setting unless the backend can work (at start)."""

    def classify(self, image: ModerationImage) -> list[Label]:
        """Score the image. Raise ModerationUnavailable (transient) or ModerationRefused."""
