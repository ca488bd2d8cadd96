"""Private uploads: items.owner_id (who uploaded the clip and asked) and items.shared (in the common queue).

Existing items stay shared, except studio uploads (``source = 'upload'``): their uploader was not recorded,
so they become private to nobody (out of every queue) until an admin shares them. Ratings and votes on
them are kept.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, without a foreign key: SQLite can add one only by copying the table, and dropping
    # the old items table would cascade-delete its generations and ratings. Annotators are never deleted.
    op.add_column("items", sa.Column("owner_id", sa.Integer(), nullable=True))
    op.add_column("items", sa.Column("shared", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.create_index("ix_items_owner_id", "items", ["owner_id"])
    op.execute("UPDATE items SET shared = false WHERE source = 'upload'")


def downgrade() -> None:
    op.drop_index("ix_items_owner_id", table_name="items")
    op.drop_column("items", "shared")
    op.drop_column("items", "owner_id")
