"""The review of matches: examiners' decisions (with the identity of each rejected pair), disclosures of confirmed
matches to investigators, and a match's assignment to an examiner.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-12 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("matches") as batch:
        batch.add_column(sa.Column("assigned_to", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_matches_assigned_to", "matches", ["assigned_to"])
    op.create_table(
        "match_decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("match_id", sa.String(length=36), nullable=False),
        sa.Column("modality", sa.String(length=20), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("examiner", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("rejection_key", sa.String(length=64), nullable=True),
        sa.Column("regions", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["match_id"], ["matches.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_match_decisions_match_id", "match_decisions", ["match_id"])
    op.create_index("ix_match_decisions_rejection_key", "match_decisions", ["rejection_key"])
    op.create_table(
        "match_disclosures",
        sa.Column("match_id", sa.String(length=36), nullable=False),
        sa.Column("recipient", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["match_id"], ["matches.id"]),
        sa.PrimaryKeyConstraint("match_id", "recipient"),
    )


def downgrade() -> None:
    op.drop_table("match_disclosures")
    op.drop_index("ix_match_decisions_rejection_key", table_name="match_decisions")
    op.drop_index("ix_match_decisions_match_id", table_name="match_decisions")
    op.drop_table("match_decisions")
    op.drop_index("ix_matches_assigned_to", table_name="matches")
    with op.batch_alter_table("matches") as batch:
        batch.drop_column("assigned_at")
        batch.drop_column("assigned_to")
