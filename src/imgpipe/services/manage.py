"""Reprocess, delete and restore: the use cases that change an existing image."""

from __future__ import annotations

from imgpipe.db import repo
from imgpipe.db.schema import VariantRow, utcnow
from imgpipe.domain.errors import NotFound
from imgpipe.services import delivery, jobs
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.views import ImageView, image_view


def reprocess(
    deps: ServiceDeps, image_id: str, owner: str, profile_names: list[str] | None
) -> ImageView:
    """Run all (or the named) profiles again; repeating it is harmless."""
    profiles = deps.profiles.select(profile_names)
    with deps.sessions.begin() as session:
        image = repo.get_image(session, image_id, owner)
        if image is None:
            raise NotFound(f"No image {image_id}.")
        existing = {v.name: v for v in image.variants}
        names: list[str] = []
        for profile in profiles:
            for spec in profile.variants():
                row = existing.get(spec.name)
                if row is None:
                    row = VariantRow(name=spec.name, attempts=0)
                    image.variants.append(row)
                row.profile = profile.name
                row.profile_digest = profile.digest
                row.format = spec.format.value
                names.append(spec.name)
        # A new job: fresh attempts, and any worker still on the old one loses its lease.
        jobs.reset_for_retry(session, image, names, utcnow())
        session.flush()
        view = image_view(image)
    deps.render_runtime.forget_image(image_id)  # its status changed
    jobs.hand_out(deps, image_id)
    return view


def delete(deps: ServiceDeps, image_id: str, owner: str) -> None:
    """Hide the image at once; the purge sweep removes its bytes DELETE_RETENTION_S later
    (services/durability.py), and an admin can restore it until then."""
    with deps.sessions.begin() as session:
        image = repo.get_image(session, image_id, owner)
        if image is None:
            raise NotFound(f"No image {image_id}.")
        image.deleted_at = utcnow()
        # No more work on it: the reconciler hands out only what is due.
        image.due_at = None
        image.lease_owner = None
    # Renders in this process are 404 at once; in others within RENDER_LOOKUP_TTL_S.
    deps.render_runtime.forget_image(image_id)


def restore(deps: ServiceDeps, image_id: str) -> ImageView:
    """Undo a DELETE while its retention lasts (admin); 404 once past it or purged."""
    with deps.sessions.begin() as session:
        image = repo.get_deleted_image(session, image_id)
        if image is None:
            live = repo.get_image_any_owner(session, image_id)
            if live is not None and live.deleted_at is None:
                return image_view(live, delivery.public_urls(deps))  # nothing to undo
            raise NotFound(f"No deleted image {image_id} to restore.")
        deleted_at = image.deleted_at
        assert deleted_at is not None
        if (utcnow() - deleted_at).total_seconds() > deps.durability.retention_s:
            raise NotFound(
                f"Image {image_id} was deleted longer than DELETE_RETENTION_S ago; "
                "it is being purged and cannot be restored."
            )
        image.deleted_at = None
        unfinished = bool(repo.variants_to_do(image))
        if unfinished:
            image.due_at = utcnow()
        session.flush()
        view = image_view(image, delivery.public_urls(deps))
    deps.render_runtime.forget_image(image_id)
    if unfinished:
        jobs.hand_out(deps, image_id)
    return view
