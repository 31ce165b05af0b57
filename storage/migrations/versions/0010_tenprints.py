"""The fingerprint gallery: tenprint records of registered persons (a finger, an impression type, a print item).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-10 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenprint_records",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("person_id", sa.String(length=36), nullable=False),
        sa.Column("finger", sa.Integer(), nullable=False),
        sa.Column("impression", sa.String(length=20), nullable=False),
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.Column("template_id", sa.Integer(), nullable=False),
        sa.Column("finding_id", sa.String(length=36), nullable=False),
        sa.Column("nfiq2", sa.Integer(), nullable=True),
        sa.Column("minutiae", sa.Integer(), nullable=False),
        sa.Column("enrolled_by", sa.String(length=200), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("evidence_id"),
        sa.UniqueConstraint("person_id", "finger", "impression", name="uq_tenprint_records_finger"),
    )
    op.create_index("ix_tenprint_records_person_id", "tenprint_records", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_tenprint_records_person_id", table_name="tenprint_records")
    op.drop_table("tenprint_records")
