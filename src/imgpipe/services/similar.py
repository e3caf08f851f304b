"""Near-duplicates: the owner's images whose pHash is within a Hamming distance."""

from __future__ import annotations

from dataclasses import dataclass

from imgpipe.db import repo
from imgpipe.domain import similarity
from imgpipe.domain.errors import NotFound, NotReady
from imgpipe.services.deps import ServiceDeps
from imgpipe.services.views import ImageView, image_view


@dataclass(frozen=True, slots=True)
class SimilarImage:
    distance: int
    image: ImageView


def similar(
    deps: ServiceDeps, image_id: str, owner: str, max_distance: int, limit: int
) -> list[SimilarImage]:
    """Nearest first (ties: newest first), at most limit, never the image itself."""
    with deps.read_sessions() as session:
        image = repo.get_image(session, image_id, owner)
        if image is None:
            raise NotFound(f"No image {image_id}.")
        value = similarity.parse(image.phash or "")
        if value is None:
            raise NotReady(
                f"Image {image_id} has no perceptual hash yet; try again once it is processed."
            )
        probes = [similarity.band_probes(b, max_distance) for b in similarity.bands(value)]
        near: list[tuple[int, str]] = []
        for other_id, other_hash in repo.phash_candidates(session, owner, probes):
            other = similarity.parse(other_hash)
            if other_id == image_id or other is None:
                continue
            distance = similarity.hamming(value, other)
            if distance <= max_distance:
                near.append((distance, other_id))
        near.sort(key=lambda item: item[1], reverse=True)
        near.sort(key=lambda item: item[0])
        near = near[:limit]
        rows = {r.id: r for r in repo.images_by_ids(session, owner, [i for _, i in near])}
        return [SimilarImage(d, image_view(rows[i])) for d, i in near if i in rows]
