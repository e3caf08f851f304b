"""Delivery without an API process in the way: public URLs, signed variant URLs, redirects.

``PUBLIC_BASE_URL`` names a CDN in front of either the bucket (``bucket`` mode: a variant's
public URL is its object name under the base; the object carries its own Content-Type and
Cache-Control, services/durability.py repairs old ones) or the API (``api`` mode: a signed
variant URL that needs no key, answered ``public, immutable``). Whether an image may be
delivered without a key at all is decided in one place, domain/delivery.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from imgpipe.db import repo
from imgpipe.db.schema import ImageRow, VariantRow
from imgpipe.domain.delivery import DeliveryFacts, deliverable_publicly
from imgpipe.domain.errors import NotFound, NotReady
from imgpipe.domain.media import ImageFormat
from imgpipe.domain.moderation import check_keyless
from imgpipe.domain.signing import sign_variant, verify_variant
from imgpipe.domain.states import VariantStatus
from imgpipe.services.deps import DeliverySettings, ServiceDeps


@dataclass(frozen=True, slots=True)
class FoundVariant:
    """A done variant's stored object, before any byte is read."""

    key: str
    media_type: str
    size: int | None
    etag: str


@dataclass(frozen=True, slots=True)
class PublicUrls:
    """Builds ``public_url`` for the variants of an image resource."""

    settings: DeliverySettings
    signing_key: bytes
    moderation_enabled: bool = False

    def for_variant(self, image: ImageRow, variant: VariantRow) -> str | None:
        facts = DeliveryFacts(
            deleted=image.deleted_at is not None,
            variant_done=variant.status == VariantStatus.DONE.value
            and variant.storage_key is not None,
            moderation=_moderation_status(image),
            moderation_enabled=self.moderation_enabled,
        )
        if not deliverable_publicly(facts) or variant.storage_key is None:
            return None
        base = self.settings.public_base_url
        if self.settings.mode == "bucket":
            prefix = self.settings.bucket_prefix
            return (
                f"{base}/{prefix}/{variant.storage_key}"
                if prefix
                else (f"{base}/{variant.storage_key}")
            )
        version = variant.profile_digest
        signature = sign_variant(self.signing_key, image.id, variant.name, version)
        return f"{base}/v1/images/{image.id}/variants/{variant.name}?v={version}&sig={signature}"


def public_urls(deps: ServiceDeps) -> PublicUrls | None:
    """None when PUBLIC_BASE_URL is unset: the resource then has no ``public_url`` at all."""
    if not deps.delivery.public_base_url:
        return None
    return PublicUrls(deps.delivery, deps.signing_key, deps.moderation.enabled)


def _moderation_status(image: ImageRow) -> str | None:
    return image.moderation.status if image.moderation is not None else None


def found(image: ImageRow, name: str) -> tuple[VariantRow, FoundVariant]:
    """The image's done variant ``name``: NotFound / NotReady otherwise."""
    variant = repo.variant_by_name(image, name)
    if variant is None:
        raise NotFound(f"Image {image.id} has no variant {name!r}.")
    if variant.status != VariantStatus.DONE.value or variant.storage_key is None:
        raise NotReady(f"Variant {name!r} is {variant.status}; try again when it is done.")
    key = variant.storage_key
    # The key is content-addressed (original sha256 + profile digest), so it is the ETag.
    etag = '"' + key.rsplit("/", 2)[-2][:16] + "-" + key.rsplit("/", 1)[-1] + '"'
    return variant, FoundVariant(key, ImageFormat(variant.format).media_type, variant.bytes, etag)


def signed_variant(
    deps: ServiceDeps, image_id: str, name: str, version: str, signature: str
) -> FoundVariant:
    """A variant asked for by its signed URL, with no key: 403 for a bad signature, 404
    for an image that may not be delivered publicly or a version that is not current."""
    verify_variant(
        (deps.signing_key, *deps.render.previous_keys), image_id, name, version, signature
    )
    with deps.read_sessions() as session:
        image = repo.get_image_any_owner(session, image_id)
        if image is None or image.deleted_at is not None:
            raise NotFound(f"No image {image_id}.")
        variant, where = found(image, name)
        # Held by moderation: the same answer a signed render gets (403 or 409, no-store).
        check_keyless(_moderation_status(image), deps.moderation.enabled)
        if variant.profile_digest != version:
            # The URL names bytes this variant no longer has (its profile changed): a CDN
            # must never keep the new bytes under the old, immutable URL.
            raise NotFound(f"Variant {name!r} of {image_id} is not at version {version!r}.")
    return where


def redirect_url(deps: ServiceDeps, where: FoundVariant) -> str | None:
    """With VARIANT_PRESIGN_S, a presigned GET of the object (private buckets); else None."""
    if deps.delivery.presign_s <= 0:
        return None
    return deps.store.presigned_get(where.key, deps.delivery.presign_s)
