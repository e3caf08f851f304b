"""the original's header facts on each image, so renders need not read the original

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable, no back-fill here: filling it means reading every original (up to 25 MB
    # each, from S3). Images uploaded before this revision get their facts from their first
    # render or processing job instead (docs/render.md, "What a cold render reads").
    op.add_column("images", sa.Column("probe", sa.JSON(none_as_null=True), nullable=True))


def downgrade() -> None:
    op.drop_column("images", "probe")
