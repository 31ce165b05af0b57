"""Audit log and the HMAC chain over the audit log and the chain of custody.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 22:00:00
"""
import datetime as dt

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

GENESIS_HASH = "0" * 64


def _append_only(table: str) -> None:
    """The audit log is append-only in the database itself, as the chain of custody is (see 0001)."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION locard_append_only()"
        )


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("actor_roles", sa.JSON(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("resource", sa.String(length=200), nullable=False),
        sa.Column("resource_id", sa.String(length=200), nullable=True),
        sa.Column("case_id", sa.String(length=36), nullable=True),
        sa.Column("person", sa.String(length=200), nullable=True),
        sa.Column("purpose_case", sa.String(length=64), nullable=True),
        sa.Column("justification", sa.Text(), nullable=True),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("at", "actor", "case_id", "person"):
        op.create_index(f"ix_audit_log_{column}", "audit_log", [column])
    _append_only("audit_log")

    heads = op.create_table(
        "chain_heads",
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("last_id", sa.Integer(), nullable=False),
        sa.Column("last_hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )

    # Not batch mode: on SQLite that would copy the table and lose its append-only triggers.
    op.add_column("custody_events", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("custody_events", sa.Column("entry_hash", sa.String(length=64), nullable=True))

    # Custody events already recorded stay unchained; the chain continues after the last of them.
    last_custody = op.get_bind().execute(sa.text("SELECT COALESCE(MAX(id), 0) FROM custody_events")).scalar() or 0
    now = dt.datetime.now(dt.UTC)
    op.bulk_insert(heads, [
        {"name": "audit", "last_id": 0, "last_hash": GENESIS_HASH, "updated_at": now},
        {"name": "custody", "last_id": int(last_custody), "last_hash": GENESIS_HASH, "updated_at": now},
    ])


def downgrade() -> None:
    op.drop_column("custody_events", "entry_hash")
    op.drop_column("custody_events", "prev_hash")
    if op.get_bind().dialect.name == "postgresql":
        # Chained ids were assigned by Locard, not by the sequence: let the sequence continue after them.
        op.execute("SELECT setval(pg_get_serial_sequence('custody_events', 'id'), "
                   "GREATEST(MAX(id), 1), MAX(id) IS NOT NULL) FROM custody_events")
    op.drop_table("chain_heads")
    op.drop_table("audit_log")
