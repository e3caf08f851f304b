"""The queries on-demand render needs: one image's row, as a render sees it."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from imgpipe.db.schema import ImageRow, ModerationRow


@dataclass(frozen=True, slots=True)
class RenderableImage:
    """What decides whether an image may be rendered, and from which bytes."""

    sha256: str
    status: str
    owner: str
    moderation: str | None  # the moderation row's status; None: the image has none


# The moderation status rides along (an outer join on its primary key): one statement,
# built once. Another owner's image is read like any other and refused by the caller,
# which caches rows by id alone.
_BY_ID = (
    select(
        ImageRow.sha256,
        ImageRow.status,
        ImageRow.owner,
        ModerationRow.status.label("moderation"),
    )
    .outerjoin(ModerationRow, ModerationRow.image_id == ImageRow.id)
    .where(ImageRow.id == bindparam("id"), ImageRow.deleted_at.is_(None))
)


def renderable_image(session: Session, image_id: str) -> RenderableImage | None:
    """The image's row (any owner), or None: no such image, or deleted."""
    row = session.execute(_BY_ID, {"id": image_id}).first()
    if row is None:
        return None
    return RenderableImage(str(row.sha256), str(row.status), str(row.owner), row.moderation)
