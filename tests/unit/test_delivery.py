"""Keyless delivery: the one rule, signed variant URLs, and the settings that choose how."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgpipe.api.schemas import VariantOut
from imgpipe.config import Settings
from imgpipe.container import _delivery, _replica
from imgpipe.domain.delivery import DeliveryFacts, deliverable_publicly
from imgpipe.domain.errors import BadSignature
from imgpipe.domain.signing import sign_variant, verify_variant


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (DeliveryFacts(deleted=False, variant_done=True), True),
        (DeliveryFacts(deleted=True, variant_done=True), False),
        (DeliveryFacts(deleted=False, variant_done=False), False),
        (DeliveryFacts(deleted=False, variant_done=True, moderation="approved"), True),
        (DeliveryFacts(deleted=False, variant_done=True, moderation="review"), False),
        (DeliveryFacts(deleted=False, variant_done=True, moderation="rejected"), False),
        (
            DeliveryFacts(
                deleted=False, variant_done=True, moderation="pending", moderation_enabled=True
            ),
            False,
        ),
        # Moderation turned off while the image waited: nothing is left to wait for.
        (DeliveryFacts(deleted=False, variant_done=True, moderation="pending"), True),
        # A verdict given stands even after moderation is turned off.
        (DeliveryFacts(deleted=False, variant_done=True, moderation="rejected"), False),
    ],
)
def test_only_done_live_and_approved_variants_are_deliverable_without_a_key(
    facts: DeliveryFacts, expected: bool
) -> None:
    assert deliverable_publicly(facts) is expected


def test_a_variant_signature_covers_image_name_and_version() -> None:
    signature = sign_variant(b"k", "img_1", "medium", "abc")
    verify_variant([b"old", b"k"], "img_1", "medium", "abc", signature)
    for image_id, name, version in (
        ("img_2", "medium", "abc"),
        ("img_1", "large", "abc"),
        ("img_1", "medium", "abd"),
    ):
        with pytest.raises(BadSignature):
            verify_variant([b"k"], image_id, name, version, signature)


def test_public_url_mode_follows_the_store_and_refuses_what_cannot_work(tmp_path: Path) -> None:
    local = f"file://{tmp_path}"
    assert _delivery(Settings(storage_url=local, public_base_url="https://c.test")).mode == "api"
    on_s3 = _delivery(Settings(storage_url="s3://b/prod", public_base_url="https://c.test"))
    assert (on_s3.mode, on_s3.bucket_prefix) == ("bucket", "prod")
    with pytest.raises(ValueError, match="IMGPIPE_PUBLIC_URL_MODE"):
        _delivery(Settings(storage_url=local, public_url_mode="bucket"))
    with pytest.raises(ValueError, match="IMGPIPE_VARIANT_PRESIGN_S"):
        _delivery(Settings(storage_url=local, variant_presign_s=60))
    with pytest.raises(ValueError, match="IMGPIPE_STORAGE_REPLICA_URL"):
        _replica(Settings(storage_url=local, storage_replica_url=local + "/"))
    with pytest.raises(ValueError, match="must be an http"):
        Settings(public_base_url="cdn.example.com")


def test_the_resource_has_no_public_url_field_unless_there_is_one() -> None:
    base = {
        "status": "done",
        "format": "webp",
        "width": 1,
        "height": 1,
        "bytes": 1,
        "url": "/v1/images/i/variants/v",
        "error": None,
        "attempts": 1,
    }
    assert "public_url" not in VariantOut.model_validate(base).model_dump()
    with_url = VariantOut.model_validate({**base, "public_url": "https://c.test/x"}).model_dump()
    assert with_url["public_url"] == "https://c.test/x"
