"""Where each hash chain begins: `chain_origins`, so that only custody recorded before 0003 may lack hashes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 16:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    origins = op.create_table(
        "chain_origins",
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("unchained_through", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    bind = op.get_bind()
    # The custody events that 0003 left unchained: those before the first chained one, or, while none is chained
    # yet, those up to where 0003 set the head. Every audit entry is chained.
    first_chained = bind.execute(sa.text("SELECT MIN(id) FROM custody_events WHERE entry_hash IS NOT NULL")).scalar()
    if first_chained is not None:
        custody = int(first_chained) - 1
    else:
        custody = int(bind.execute(sa.text("SELECT last_id FROM chain_heads WHERE name = 'custody'")).scalar() or 0)
    op.bulk_insert(origins, [{"name": "audit", "unchained_through": 0},
                             {"name": "custody", "unchained_through": custody}])
    if bind.dialect.name == "sqlite":
        for verb in ("UPDATE", "DELETE"):
            op.execute(f"CREATE TRIGGER chain_origins_no_{verb.lower()} BEFORE {verb} ON chain_origins "
                       "BEGIN SELECT RAISE(ABORT, 'chain_origins is append-only'); END")
    elif bind.dialect.name == "postgresql":
        op.execute("CREATE TRIGGER chain_origins_append_only BEFORE UPDATE OR DELETE ON chain_origins "
                   "FOR EACH ROW EXECUTE FUNCTION locard_append_only()")


def downgrade() -> None:
    op.drop_table("chain_origins")  # its triggers go with it
