"""One vote per (comparison, annotator); the comparisons each annotator was shown.

Existing votes are deduplicated first: for every annotator and pair of generations (in either order) only
the latest vote (highest id) is kept, as if each re-vote had updated the first one. ``votes.updated_at``
starts as ``created_at``. Every kept vote also records its pair as shown to its annotator, so those votes
can still be changed.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_LOW = "CASE WHEN generation_a_id < generation_b_id THEN generation_a_id ELSE generation_b_id END"
_HIGH = "CASE WHEN generation_a_id < generation_b_id THEN generation_b_id ELSE generation_a_id END"


def upgrade() -> None:
    op.execute(
        "DELETE FROM votes WHERE id NOT IN (SELECT keep FROM (SELECT MAX(id) AS keep FROM votes "
        f"GROUP BY annotator_id, {_LOW}, {_HIGH}) AS latest)"
    )
    op.add_column("votes", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE votes SET updated_at = created_at")
    op.create_index(
        "uq_votes_pair_annotator",
        "votes",
        ["generation_a_id", "generation_b_id", "annotator_id"],
        unique=True,
    )
    op.create_table(
        "comparisons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("generation_a_id", sa.Integer(), nullable=False),
        sa.Column("generation_b_id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["generation_a_id"],
            ["generations.id"],
            name="fk_comparisons_generation_a_id_generations",
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["generation_b_id"],
            ["generations.id"],
            name="fk_comparisons_generation_b_id_generations",
            ondelete="CASCADE",
        ),  # fmt: skip
        sa.ForeignKeyConstraint(
            ["annotator_id"], ["annotators.id"], name="fk_comparisons_annotator_id_annotators"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_comparisons"),
    )
    op.create_index(
        "uq_comparisons_pair_annotator", "comparisons", ["generation_a_id", "generation_b_id", "annotator_id"],
        unique=True,
    )  # fmt: skip
    op.execute(
        "INSERT INTO comparisons (generation_a_id, generation_b_id, annotator_id, created_at) "
        "SELECT generation_a_id, generation_b_id, annotator_id, created_at FROM votes"
    )


def downgrade() -> None:
    op.drop_index("uq_comparisons_pair_annotator", table_name="comparisons")
    op.drop_table("comparisons")
    op.drop_index("uq_votes_pair_annotator", table_name="votes")
    with op.batch_alter_table("votes") as batch:
        batch.drop_column("updated_at")
