"""Reprocess and delete: the two use cases that change an existing image."""

from __future__ import annotations

from sqlalchemy import func, select

from imgpipe.db import repo
from imgpipe.db.schema import ImageRow, VariantRow
from imgpipe.domain.errors import NotFound
from imgpipe.domain.states import VariantStatus
from imgpipe.jobs.messages import ProcessImage
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
        for profile in profiles:
            for spec in profile.variants():
                row = existing.get(spec.name)
                if row is None:
                    row = VariantRow(name=spec.name, attempts=0)
                    image.variants.append(row)
                row.profile = profile.name
                row.profile_digest = profile.digest
                row.format = spec.format.value
                row.status = VariantStatus.PENDING.value
                row.error_code = row.error = None
        repo.refresh_status(image)
        session.flush()
        view = image_view(image)
    deps.queue.enqueue(ProcessImage(image_id))
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


def recover_unfinished(deps: ServiceDeps) -> int:
    """Enqueue every image with work left (on start: the queue may have lost it)."""
    with deps.sessions() as session:
        image_ids = repo.unfinished_image_ids(session)
    for image_id in image_ids:
        deps.queue.enqueue(ProcessImage(image_id))
    return len(image_ids)
