"""Image and variant states, and the one rule that rolls variants up into an image."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class VariantStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"


class ImageStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    PARTIAL = "partial"  # some variants done, others failed for good
    FAILED = "failed"


def rollup(variants: Iterable[VariantStatus]) -> ImageStatus:
    """The image's status from its variants' statuses."""
    states = list(variants)
    if not states:
        return ImageStatus.DONE
    if any(s in (VariantStatus.PENDING, VariantStatus.PROCESSING) for s in states):
        if all(s is VariantStatus.PENDING for s in states):
            return ImageStatus.PENDING
        return ImageStatus.PROCESSING
    if all(s is VariantStatus.DONE for s in states):
        return ImageStatus.DONE
    if all(s is VariantStatus.FAILED for s in states):
        return ImageStatus.FAILED
    return ImageStatus.PARTIAL
