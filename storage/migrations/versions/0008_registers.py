"""Record stores: the persons register (and reference photos), the vehicle register (and its status history),
face watchlists and their members.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "persons",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("national_number", sa.String(length=11), nullable=False),
        sa.Column("family_name", sa.String(length=200), nullable=False),
        sa.Column("given_names", sa.String(length=200), nullable=False),
        sa.Column("family_folded", sa.String(length=200), nullable=False),
        sa.Column("given_folded", sa.String(length=200), nullable=False),
        sa.Column("date_of_birth", sa.Date(), nullable=True),
        sa.Column("nationality", sa.String(length=2), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("national_number"),
    )
    op.create_index("ix_persons_family_folded", "persons", ["family_folded"])
    op.create_index("ix_persons_given_folded", "persons", ["given_folded"])
    op.create_table(
        "person_photos",
        sa.Column("person_id", sa.String(length=36), nullable=False),
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.PrimaryKeyConstraint("person_id", "evidence_id"),
    )
    op.create_index("ix_person_photos_evidence_id", "person_photos", ["evidence_id"])
    op.create_table(
        "vehicles",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("plate", sa.String(length=32), nullable=False),
        sa.Column("plate_key", sa.String(length=32), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("make", sa.String(length=100), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("colour", sa.String(length=100), nullable=False),
        sa.Column("owner_national_number", sa.String(length=11), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_authority", sa.String(length=200), nullable=True),
        sa.Column("status_date", sa.Date(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("plate_key", "country", name="uq_vehicles_plate_key_country"),
    )
    op.create_index("ix_vehicles_plate_key", "vehicles", ["plate_key"])
    op.create_index("ix_vehicles_owner_national_number", "vehicles", ["owner_national_number"])
    op.create_table(
        "vehicle_status_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("vehicle_id", sa.String(length=36), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("authority", sa.String(length=200), nullable=True),
        sa.Column("status_date", sa.Date(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["vehicle_id"], ["vehicles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_vehicle_status_history_vehicle_id", "vehicle_status_history", ["vehicle_id"])
    op.create_table(
        "watchlists",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_watchlists_expires_at", "watchlists", ["expires_at"])
    op.create_table(
        "watchlist_members",
        sa.Column("watchlist_id", sa.String(length=36), nullable=False),
        sa.Column("person_id", sa.String(length=36), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("added_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["watchlist_id"], ["watchlists.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["person_id"], ["persons.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("watchlist_id", "person_id"),
    )
    op.create_index("ix_watchlist_members_person_id", "watchlist_members", ["person_id"])


def downgrade() -> None:
    op.drop_index("ix_watchlist_members_person_id", table_name="watchlist_members")
    op.drop_table("watchlist_members")
    op.drop_index("ix_watchlists_expires_at", table_name="watchlists")
    op.drop_table("watchlists")
    op.drop_index("ix_vehicle_status_history_vehicle_id", table_name="vehicle_status_history")
    op.drop_table("vehicle_status_history")
    op.drop_index("ix_vehicles_owner_national_number", table_name="vehicles")
    op.drop_index("ix_vehicles_plate_key", table_name="vehicles")
    op.drop_table("vehicles")
    op.drop_index("ix_person_photos_evidence_id", table_name="person_photos")
    op.drop_table("person_photos")
    op.drop_index("ix_persons_given_folded", table_name="persons")
    op.drop_index("ix_persons_family_folded", table_name="persons")
    op.drop_table("persons")
