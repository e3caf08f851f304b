"""job leases, attempts history and dead letters

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ROW_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("images", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("images", sa.Column("lease_owner", sa.String(length=64), nullable=True))
    op.add_column("images", sa.Column("enqueued_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_images_due_at", "images", ["due_at"])
    # Work left by the previous version falls due now, so the reconciler picks it up.
    images = sa.table(
        "images", sa.column("status", sa.String()), sa.column("due_at", sa.DateTime(True))
    )
    op.execute(
        images.update()
        .where(images.c.status.in_(["pending", "processing"]))
        .values(due_at=datetime.now(UTC))
    )
    op.create_table(
        "job_attempts",
        sa.Column("id", _ROW_ID, autoincrement=True, nullable=False),
        sa.Column("image_id", sa.String(length=40), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=False),
        sa.Column("worker", sa.String(length=200), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("error_code", sa.String(length=50), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_job_attempts_image_id", "job_attempts", ["image_id"])
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("image_id", sa.String(length=40), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error_code", sa.String(length=50), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retried_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_dead_letters_image_id", "dead_letters", ["image_id"])
    op.create_index("ix_dead_letters_created_at", "dead_letters", ["created_at"])


def downgrade() -> None:
    op.drop_table("dead_letters")
    op.drop_table("job_attempts")
    op.drop_index("ix_images_due_at", table_name="images")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("enqueued_at")
        batch.drop_column("lease_owner")
        batch.drop_column("due_at")
