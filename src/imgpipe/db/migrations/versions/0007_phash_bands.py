"""pHash bands for near-duplicate lookups, backfilled from each image's metadata

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0005"
branch_labels = None
depends_on = None

_BANDS = ("phash_b0", "phash_b1", "phash_b2", "phash_b3")
_PAGE = 1000


def upgrade() -> None:
    op.add_column("images", sa.Column("phash", sa.String(length=16), nullable=True))
    for band in _BANDS:
        op.add_column("images", sa.Column(band, sa.Integer(), nullable=True))
    _backfill()
    # Indexes after the backfill: cheaper to build once than to maintain row by row.
    for band in _BANDS:
        op.create_index(f"ix_images_owner_{band}", "images", ["owner", band])


def _backfill() -> None:
    """Copy the pHash each processed image already has in its metadata into the new
    columns, a page of rows at a time (keyset on id) so memory stays flat."""
    images = sa.table(
        "images",
        sa.column("id", sa.String()),
        sa.column("metadata", sa.JSON()),
        sa.column("phash", sa.String()),
        *(sa.column(band, sa.Integer()) for band in _BANDS),
    )
    bind = op.get_bind()
    last = ""
    while True:
        rows = bind.execute(
            sa.select(images.c.id, images.c.metadata)
            .where(images.c.id > last)
            .order_by(images.c.id)
            .limit(_PAGE)
        ).all()
        if not rows:
            return
        updates = [u for u in (_bands_of(r.id, r.metadata) for r in rows) if u is not None]
        if updates:
            bind.execute(
                images.update()
                .where(images.c.id == sa.bindparam("image_id"))
                .values({name: sa.bindparam(f"new_{name}") for name in ("phash", *_BANDS)}),
                updates,
            )
        last = rows[-1].id


def _bands_of(image_id: str, metadata: Any) -> dict[str, Any] | None:
    # The rule of domain/similarity.py, frozen here: a migration must not change meaning
    # when the application code moves on.
    phash = metadata.get("phash") if isinstance(metadata, dict) else None
    if not isinstance(phash, str) or len(phash) != 16:
        return None
    try:
        value = int(phash, 16)
    except ValueError:
        return None
    row: dict[str, Any] = {"image_id": image_id, "new_phash": phash}
    for i, band in enumerate(_BANDS):
        row[f"new_{band}"] = value >> (16 * (3 - i)) & 0xFFFF
    return row


def downgrade() -> None:
    for band in _BANDS:
        op.drop_index(f"ix_images_owner_{band}", table_name="images")
    with op.batch_alter_table("images") as batch:
        for band in reversed(_BANDS):
            batch.drop_column(band)
        batch.drop_column("phash")
