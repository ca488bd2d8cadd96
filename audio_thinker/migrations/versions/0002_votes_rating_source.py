"""Pairwise votes; ratings.source (human | oracle | judge) and ratings.lead_time_s.

Existing ratings become ``source = 'human'`` (the server default) with an unknown lead time.
The allowed sources are checked by ``audio_thinker.store`` (SQLite cannot add a CHECK to an existing
table without copying it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("ratings", sa.Column("lead_time_s", sa.Float(), nullable=True))
    op.add_column(
        "ratings", sa.Column("source", sa.String(16), nullable=False, server_default=sa.text("'human'"))
    )
    op.create_table(
        "votes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation_a_id", sa.Integer(), nullable=False),
        sa.Column("generation_b_id", sa.Integer(), nullable=False),
        sa.Column("swapped", sa.Boolean(), nullable=False),
        sa.Column("choice", sa.String(8), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("choice IN ('A', 'B', 'tie', 'both_bad')", name="ck_votes_choice"),
        sa.ForeignKeyConstraint(
            ["generation_a_id"],
            ["generations.id"],
            name="fk_votes_generation_a_id_generations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["generation_b_id"],
            ["generations.id"],
            name="fk_votes_generation_b_id_generations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["annotator_id"], ["annotators.id"], name="fk_votes_annotator_id_annotators"),
        sa.PrimaryKeyConstraint("id", name="pk_votes"),
    )
    op.create_index("ix_votes_annotator_id", "votes", ["annotator_id"])


def downgrade() -> None:
    op.drop_index("ix_votes_annotator_id", table_name="votes")
    op.drop_table("votes")
    op.drop_column("ratings", "source")
    op.drop_column("ratings", "lead_time_s")
