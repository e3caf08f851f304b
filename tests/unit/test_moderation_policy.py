"""The moderation rules: thresholds to verdicts, and what keyless delivery may serve."""

from __future__ import annotations

import pytest

from imgpipe.config import Settings
from imgpipe.domain.moderation import (
    DEFAULT_THRESHOLDS,
    ContentRejected,
    HeldForReview,
    Label,
    ModerationPending,
    ModerationStatus,
    Policy,
    check_keyless,
    reported,
)
from imgpipe.moderation.rekognition import labels_of

POLICY = Policy.parse("nudity=0.6:0.85,violence=0.5,hate=-:0.8")


@pytest.mark.parametrize(
    ("labels", "status"),
    [
        ([], ModerationStatus.APPROVED),
        ([Label("FACE_FEMALE", 0.99, None)], ModerationStatus.APPROVED),  # counts for nothing
        ([Label("a", 0.59, "nudity")], ModerationStatus.APPROVED),
        ([Label("a", 0.60, "nudity")], ModerationStatus.REVIEW),
        ([Label("a", 0.85, "nudity")], ModerationStatus.REJECTED),
        ([Label("a", 0.99, "violence")], ModerationStatus.REVIEW),  # no reject threshold
        ([Label("a", 0.79, "hate")], ModerationStatus.APPROVED),  # never sent to review
        ([Label("a", 0.80, "hate")], ModerationStatus.REJECTED),
        ([Label("a", 0.99, "alcohol")], ModerationStatus.APPROVED),  # not in this policy
        # the best label of a category decides, and any rejection wins over a review
        ([Label("a", 0.2, "nudity"), Label("b", 0.7, "nudity")], ModerationStatus.REVIEW),
        ([Label("a", 0.9, "violence"), Label("b", 0.9, "nudity")], ModerationStatus.REJECTED),
    ],
)
def test_scores_map_to_a_verdict_by_category_thresholds(
    labels: list[Label], status: ModerationStatus
) -> None:
    assert POLICY.verdict(labels) == status


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("nudity", "CATEGORY=REVIEW_AT"),
        ("nakedness=0.5", "CATEGORY=REVIEW_AT"),
        ("nudity=high", "score from 0 to 1"),
        ("nudity=1.5", "score from 0 to 1"),
        ("nudity=0.9:0.5", "below the review one"),
    ],
)
def test_a_bad_threshold_is_refused_at_start_naming_the_setting(text: str, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Policy.parse(text)
    with pytest.raises(ValueError, match="moderation_thresholds"):
        Settings(moderation_thresholds=text)


def test_the_default_thresholds_parse_and_cover_every_category() -> None:
    policy = Policy.parse(DEFAULT_THRESHOLDS)
    assert policy.verdict([Label("x", 0.9, "nudity")]) == ModerationStatus.REJECTED
    assert policy.verdict([Label("x", 0.7, "nudity")]) == ModerationStatus.REVIEW
    assert Settings().moderation == "off"


def test_reported_labels_are_the_counted_ones_best_first() -> None:
    labels = [Label("FACE_MALE", 0.9), Label("b", 0.3, "nudity"), Label("a", 0.8, "violence")]
    assert [x.name for x in reported(labels)] == ["a", "b"]


def test_rekognition_labels_take_their_top_level_category_and_a_0_to_1_score() -> None:
    labels = labels_of(
        [
            {"Name": "Violence", "ParentName": "", "Confidence": 97.5},
            {"Name": "Graphic Violence", "ParentName": "Violence", "Confidence": 97.5},
            {"Name": "Blood & Gore", "ParentName": "Graphic Violence", "Confidence": 96.0},
            {"Name": "Nudity", "ParentName": "Explicit Nudity", "Confidence": 60.0},
            {"Name": "Weird New Thing", "ParentName": "", "Confidence": 99.0},
        ]
    )
    by_name = {x.name: x for x in labels}
    assert by_name["Blood & Gore"] == Label("Blood & Gore", 0.96, "violence")
    assert by_name["Nudity"].category == "nudity"  # its parent was not in the answer
    assert by_name["Weird New Thing"].category is None


@pytest.mark.parametrize(
    ("status", "enabled", "refused"),
    [
        (None, True, None),  # uploaded before moderation was on
        ("off", True, None),
        ("approved", True, None),
        ("pending", True, ModerationPending),
        ("error", True, ModerationPending),
        ("review", True, HeldForReview),
        ("rejected", True, ContentRejected),
        ("pending", False, None),  # moderation turned off: nothing left to wait for
        ("review", False, HeldForReview),  # a hold stays until an admin decides
        ("rejected", False, ContentRejected),
    ],
)
def test_keyless_delivery_waits_for_approval(
    status: str | None, enabled: bool, refused: type[Exception] | None
) -> None:
    if refused is None:
        check_keyless(status, enabled)
        return
    with pytest.raises(refused) as caught:
        check_keyless(status, enabled)
    error = caught.value
    assert getattr(error, "response_headers", {}).get("Cache-Control") == "no-store"
