"""Reprocess and delete: the two use cases that change an existing image."""

from __future__ import annotations

from sqlalchemy import func, select

from imgpipe.db import repo
from imgpipe.db.schema import ImageRow, VariantRow, utcnow
from imgpipe.domain.errors import NotFound
from imgpipe.services import jobs
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.views import ImageView, image_view
from imgpipe.storage import keys


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
    jobs.hand_out(deps, image_id)
    return view


def delete(deps: ServiceDeps, image_id: str, owner: str) -> None:
    """Remove the image; its stored bytes go once no other image shares them."""
    with deps.sessions.begin() as session:
        image = repo.get_image(session, image_id, owner)
        if image is None:
            raise NotFound(f"No image {image_id}.")
        sha256 = image.sha256
        session.delete(image)
        session.flush()
        still_used = session.scalar(
            select(func.count()).select_from(ImageRow).where(ImageRow.sha256 == sha256)
        )
    if not still_used:
        deps.store.delete_prefix(keys.variants_prefix(sha256))
        deps.store.delete_prefix(keys.renders_prefix(sha256))
        deps.store.delete(keys.original(sha256))
