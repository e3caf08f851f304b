"""The read path: plain queries for status, listings and stored bytes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from imgpipe.db import repo
from imgpipe.domain.errors import BadRequest, NotFound
from imgpipe.domain.ids import is_image_id
from imgpipe.domain.media import ImageFormat
from imgpipe.services import delivery
from imgpipe.services.delivery import FoundVariant
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.views import ImagePage, ImageView, image_view
from imgpipe.storage import keys


@dataclass(frozen=True, slots=True)
class StoredObject:
    media_type: str
    size: int
    etag: str
    chunks: Iterator[bytes]


def get_image(deps: ServiceDeps, image_id: str, owner: str) -> ImageView:
    with deps.read_sessions() as session:
        image = repo.get_image(session, image_id, owner)
        if image is None:
            raise NotFound(f"No image {image_id}.")
        return image_view(image, delivery.public_urls(deps))


def list_images(deps: ServiceDeps, owner: str, limit: int, cursor: str | None) -> ImagePage:
    # A cursor is the last id of the previous page. Anything else would compare as a
    # string and quietly give the whole list or none of it: say so instead.
    if cursor is not None and not is_image_id(cursor):
        raise BadRequest(
            f"cursor must be the next_cursor of a previous page (an image id); got {cursor!r}."
        )
    with deps.read_sessions() as session:
        rows = repo.list_images(session, owner, limit + 1, cursor)
        urls = delivery.public_urls(deps)
        items = [image_view(r, urls) for r in rows[:limit]]
    next_cursor = items[-1].id if len(rows) > limit else None
    return ImagePage(items, next_cursor)


def find_variant(deps: ServiceDeps, image_id: str, owner: str, name: str) -> FoundVariant:
    """The owner's done variant, before any byte is read."""
    with deps.read_sessions() as session:
        image = repo.get_image(session, image_id, owner)
        if image is None:
            raise NotFound(f"No image {image_id}.")
        return delivery.found(image, name)[1]


def open_variant(deps: ServiceDeps, image_id: str, owner: str, name: str) -> StoredObject:
    return open_found(deps, find_variant(deps, image_id, owner, name))


def open_found(deps: ServiceDeps, where: FoundVariant) -> StoredObject:
    size = where.size or deps.store.size(where.key)
    return StoredObject(where.media_type, size, where.etag, deps.store.iter_bytes(where.key))


def open_original(deps: ServiceDeps, image_id: str, owner: str) -> StoredObject:
    with deps.read_sessions() as session:
        image = repo.get_image(session, image_id, owner)
        if image is None:
            raise NotFound(f"No image {image_id}.")
        sha256, fmt, size = image.sha256, ImageFormat(image.format), image.bytes
    key = keys.original(sha256)
    return StoredObject(fmt.media_type, size, f'"{sha256}"', deps.store.iter_bytes(key))


def count_unfinished(deps: ServiceDeps) -> int:
    with deps.read_sessions() as session:
        return repo.count_unfinished(session)
