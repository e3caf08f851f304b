"""variant ids are 64-bit

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # SQLite's INTEGER PRIMARY KEY is a 64-bit rowid already; only real servers change.
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("variants", "id", type_=sa.BigInteger(), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("variants", "id", type_=sa.Integer(), existing_nullable=False)
