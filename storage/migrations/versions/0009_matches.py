"""Matches: links from findings to register records and to findings in other evidence, and the keys findings are
found by from other evidence.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-09 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "matches",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("modality", sa.String(length=20), nullable=False),
        sa.Column("finding_id", sa.String(length=36), nullable=False),
        sa.Column("finding_kind", sa.String(length=100), nullable=False),
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("analyzer", sa.String(length=100), nullable=False),
        sa.Column("analyzer_version", sa.String(length=50), nullable=False),
        sa.Column("target_kind", sa.String(length=20), nullable=False),
        sa.Column("target_id", sa.String(length=36), nullable=False),
        sa.Column("target_evidence_id", sa.String(length=36), nullable=True),
        sa.Column("target_case_id", sa.String(length=36), nullable=True),
        sa.Column("target_analyzer", sa.String(length=100), nullable=False),
        sa.Column("target_version", sa.String(length=50), nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("matcher", sa.String(length=100), nullable=False),
        sa.Column("matcher_version", sa.String(length=50), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reviewed_by", sa.String(length=200), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("superseded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["target_evidence_id"], ["evidence.id"]),
        sa.ForeignKeyConstraint(["target_case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("modality", "finding_id", "target_kind", "target_id", name="uq_matches_sides"),
    )
    op.create_index("ix_matches_finding_id", "matches", ["finding_id"])
    op.create_index("ix_matches_evidence_id", "matches", ["evidence_id"])
    op.create_index("ix_matches_case_id", "matches", ["case_id"])
    op.create_index("ix_matches_target_evidence_id", "matches", ["target_evidence_id"])
    op.create_index("ix_matches_target", "matches", ["target_kind", "target_id"])
    op.create_table(
        "match_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("modality", sa.String(length=20), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("exact", sa.Boolean(), nullable=False),
        sa.Column("finding_id", sa.String(length=36), nullable=False),
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_match_keys_lookup", "match_keys", ["modality", "key"])
    op.create_index("ix_match_keys_evidence_id", "match_keys", ["evidence_id"])


def downgrade() -> None:
    op.drop_index("ix_match_keys_evidence_id", table_name="match_keys")
    op.drop_index("ix_match_keys_lookup", table_name="match_keys")
    op.drop_table("match_keys")
    op.drop_index("ix_matches_target", table_name="matches")
    op.drop_index("ix_matches_target_evidence_id", table_name="matches")
    op.drop_index("ix_matches_case_id", table_name="matches")
    op.drop_index("ix_matches_evidence_id", table_name="matches")
    op.drop_index("ix_matches_finding_id", table_name="matches")
    op.drop_table("matches")
