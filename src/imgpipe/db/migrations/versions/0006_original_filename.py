"""the uploaded file name, sanitised, on each image

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: images uploaded before this revision have no name on record.
    op.add_column("images", sa.Column("filename", sa.String(length=255), nullable=True))


def downgrade() -> None:
    op.drop_column("images", "filename")
