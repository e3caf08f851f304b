"""The queries on-demand render needs: one image's row, as a render sees it, and the
back-fill of the original's header facts for images uploaded before they were recorded."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from imgpipe.db.schema import ImageRow, ModerationRow
from imgpipe.domain.media import ProbeResult, probe_facts, probe_from_facts


@dataclass(frozen=True, slots=True)
class RenderableImage:
    """What decides whether an image may be rendered, and from which bytes."""

    sha256: str
    status: str
    owner: str
    moderation: str | None  # the moderation row's status; None: the image has none
    bytes: int = 0  # the original's size (the decode-cost check needs it)
    # The original's header facts; None: not recorded (uploaded before 0010) or recorded
    # by another version: the render probes the original and records them.
    probe: ProbeResult | None = None


# The moderation status rides along (an outer join on its primary key): one statement,
# built once. Another owner's image is read like any other and refused by the caller,
# which caches rows by id alone.
_BY_ID = (
    select(
        ImageRow.sha256,
        ImageRow.status,
        ImageRow.owner,
        ModerationRow.status.label("moderation"),
        ImageRow.bytes,
        ImageRow.probe,
    )
    .outerjoin(ModerationRow, ModerationRow.image_id == ImageRow.id)
    .where(ImageRow.id == bindparam("id"), ImageRow.deleted_at.is_(None))
)

# Every row of the original (one original may serve several images: content-addressed)
# whose facts are missing. Facts are a function of the bytes alone, so any image of the
# same sha256 may record them for all; a row that has them keeps them.
_RECORD_PROBE = (
    update(ImageRow)
    .where(ImageRow.sha256 == bindparam("sha"), ImageRow.probe.is_(None))
    .values(probe=bindparam("facts", type_=ImageRow.__table__.c.probe.type))
    .execution_options(synchronize_session=False)
)


def renderable_image(session: Session, image_id: str) -> RenderableImage | None:
    """The image's row (any owner), or None: no such image, or deleted."""
    row = session.execute(_BY_ID, {"id": image_id}).first()
    if row is None:
        return None
    return RenderableImage(
        str(row.sha256),
        str(row.status),
        str(row.owner),
        row.moderation,
        int(row.bytes),
        probe_from_facts(row.probe),
    )


def record_probe(session: Session, sha256: str, facts: ProbeResult) -> int:
    """Record the original's facts on its images that lack them; how many rows took them."""
    result = session.execute(_RECORD_PROBE, {"sha": sha256, "facts": probe_facts(facts)})
    return int(getattr(result, "rowcount", 0) or 0)
