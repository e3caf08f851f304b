"""soft delete and replica bookkeeping

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    # None everywhere: with a replica configured, the sweep copies every existing original.
    op.add_column("images", sa.Column("replicated_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_images_deleted_at", "images", ["deleted_at"])


def downgrade() -> None:
    op.drop_index("ix_images_deleted_at", table_name="images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("replicated_at")
        batch.drop_column("deleted_at")
