"""Who may see an image without an API key: the one rule for public and signed delivery.

Every keyless path (``public_url`` in the image resource, signed variant URLs, the
redirect to a presigned GET) asks ``deliverable_publicly`` and nothing else, so a later
rule (moderation's "served to owners and admins only until approved", SPEC §7) is one
change here.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgpipe.domain.moderation import keyless_refusal


@dataclass(frozen=True, slots=True)
class DeliveryFacts:
    """What the rule looks at, read from the image's record."""

    deleted: bool
    variant_done: bool
    # SPEC §7: with moderation on, keyless delivery waits for "approved"
    # (domain/moderation.py: keyless_refusal, the rule renders follow too).
    moderation: str | None = None  # the image's moderation status; None: it has none
    moderation_enabled: bool = False


def deliverable_publicly(facts: DeliveryFacts) -> bool:
    if facts.deleted or not facts.variant_done:
        return False
    return keyless_refusal(facts.moderation, facts.moderation_enabled) is None
