"""Moderation rules: statuses, labels, the threshold policy and who may see what.

A backend (imgpipe.moderation) scores an image: a list of labels, each with a score in
0-1 and the category it counts toward (None: informative only, such as a detected face).
``Policy`` turns those scores into a verdict by per-category thresholds
(``MODERATION_THRESHOLDS``); ``check_keyless`` is the one rule for what keyless delivery
(signed render URLs, public URLs) may serve while moderation is on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar

from imgpipe.domain.errors import ImgpipeError


class ModerationStatus(StrEnum):
    PENDING = "pending"  # queued or running, or waiting for a retry after an error
    APPROVED = "approved"
    REVIEW = "review"  # a score passed a review threshold: an admin decides
    REJECTED = "rejected"
    ERROR = "error"  # the last attempt failed; retried like any transient failure
    OFF = "off"  # uploaded while MODERATION was off


# Served to their owner and admins only, until an admin decides.
HELD = frozenset({ModerationStatus.REVIEW, ModerationStatus.REJECTED})


class Decision(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"

    @property
    def status(self) -> ModerationStatus:
        return ModerationStatus.APPROVED if self is Decision.APPROVE else ModerationStatus.REJECTED


# The categories a backend maps its own labels to; thresholds are set per category.
CATEGORIES = (
    "nudity",
    "suggestive",
    "violence",
    "disturbing",
    "hate",
    "drugs",
    "alcohol",
    "gambling",
    "gestures",
)

# review_at[:reject_at] per category. Nudity and hate symbols are the ones most
# deployments must never serve unreviewed; swimwear and alcohol only go to review when
# the model is nearly sure. A category left out counts for nothing.
DEFAULT_THRESHOLDS = (
    "nudity=0.6:0.85,suggestive=0.8,violence=0.6:0.9,disturbing=0.6:0.9,"
    "hate=0.5:0.85,drugs=0.8,alcohol=0.95,gambling=0.9,gestures=0.9"
)


@dataclass(frozen=True, slots=True)
class Label:
    name: str  # the backend's own label name (FEMALE_BREAST_EXPOSED, Explicit Nudity)
    score: float  # 0-1
    category: str | None = None  # one of CATEGORIES, or None: not counted


@dataclass(frozen=True, slots=True)
class Threshold:
    review_at: float | None  # None: never sends to review
    reject_at: float | None  # None: never rejects on its own


@dataclass(frozen=True, slots=True)
class Policy:
    thresholds: Mapping[str, Threshold] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Policy:
        """``CATEGORY=REVIEW_AT[:REJECT_AT],...``; ``-`` for "never"; scores 0-1."""
        thresholds: dict[str, Threshold] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, sep, value = item.partition("=")
            name = name.strip().lower()
            if not sep or name not in CATEGORIES:
                raise ValueError(
                    f"each threshold is CATEGORY=REVIEW_AT[:REJECT_AT] with CATEGORY one of "
                    f"{', '.join(CATEGORIES)}; got {item!r}"
                )
            review_text, _, reject_text = value.partition(":")
            review, reject = _score(review_text, item), _score(reject_text or "-", item)
            if review is not None and reject is not None and reject < review:
                raise ValueError(f"the reject threshold is below the review one in {item!r}")
            thresholds[name] = Threshold(review, reject)
        return cls(thresholds)

    def verdict(self, labels: Iterable[Label]) -> ModerationStatus:
        """Rejected if any category reaches its reject threshold, review if any reaches
        its review threshold, else approved. A category's score is its best label's."""
        best: dict[str, float] = {}
        for label in labels:
            if label.category is not None:
                best[label.category] = max(best.get(label.category, 0.0), label.score)
        status = ModerationStatus.APPROVED
        for category, score in best.items():
            threshold = self.thresholds.get(category)
            if threshold is None:
                continue
            if threshold.reject_at is not None and score >= threshold.reject_at:
                return ModerationStatus.REJECTED
            if threshold.review_at is not None and score >= threshold.review_at:
                status = ModerationStatus.REVIEW
        return status


def _score(text: str, item: str) -> float | None:
    text = text.strip()
    if text == "-":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"a threshold is a score from 0 to 1 or '-'; got {item!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a threshold is a score from 0 to 1 or '-'; got {item!r}")
    return value


@dataclass(frozen=True, slots=True)
class ModerationImage:
    """What a backend sees: a small upright sRGB copy, as raw RGB and as a JPEG."""

    width: int
    height: int
    rgb: bytes  # width * height * 3, row-major
    jpeg: bytes


def reported(labels: Iterable[Label]) -> list[Label]:
    """The labels an image resource shows: those that count, best score first."""
    counted = [label for label in labels if label.category is not None]
    return sorted(counted, key=lambda label: (-label.score, label.name))


# --- who may receive an image's outputs ------------------------------------------------

# A refusal today may be an image tomorrow (once approved): no cache may keep it.
_NO_STORE = {"Cache-Control": "no-store"}


class HeldForReview(ImgpipeError):
    response_headers: ClassVar[dict[str, str]] = _NO_STORE
    code = "held_for_review"
    status = 403
    title = "The image is held for review"


class ContentRejected(ImgpipeError):
    response_headers: ClassVar[dict[str, str]] = _NO_STORE
    code = "content_rejected"
    status = 403
    title = "The image was rejected by moderation"


class ModerationPending(ImgpipeError):
    response_headers: ClassVar[dict[str, str]] = _NO_STORE
    code = "moderation_pending"
    status = 409
    title = "The image has not been approved yet"
    retryable = True


def keyless_refusal(status: str | None, enabled: bool) -> ImgpipeError | None:
    """Why an output of this image may not go to a request without an API key, or None.

    With moderation on, only ``approved`` images (and those uploaded while it was off)
    are delivered without a key, so a CDN never caches anything unreviewed. The owner's
    and admins' keyed requests do not come here.
    """
    if status is None or status in (ModerationStatus.OFF.value, ModerationStatus.APPROVED.value):
        return None
    if status == ModerationStatus.REVIEW.value:
        return HeldForReview(
            "An admin must review this image before it is delivered without an API key."
        )
    if status == ModerationStatus.REJECTED.value:
        return ContentRejected("This image was rejected; only its owner and admins can see it.")
    if not enabled:  # moderation was turned off while this image waited: nothing to wait for
        return None
    return ModerationPending(
        "This image is still being moderated; keyless delivery starts once it is approved."
    )


def check_keyless(status: str | None, enabled: bool) -> None:
    """Raise ``keyless_refusal``'s error, if any."""
    refusal = keyless_refusal(status, enabled)
    if refusal is not None:
        raise refusal


# --- backend failures --------------------------------------------------------------------


class ModerationUnavailable(ImgpipeError):
    """The backend could not answer now (a network error, throttling, a timeout)."""

    code = "moderation_unavailable"
    status = 503
    title = "The moderation backend is unavailable"
    retryable = True


class ModerationRefused(ImgpipeError):
    """The backend refused this image for good (a format or size it does not take)."""

    code = "moderation_refused"
    status = 422
    title = "The moderation backend refused the image"
