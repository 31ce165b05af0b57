"""One match per pair, whichever side proposed it and however many matcher actors run at once.

`matches.pair_key` names the two sides of a match in an order that does not depend on which side proposed it
(for a finding-to-finding match, the two finding ids sorted); a unique constraint on it makes two actors that
match both items of a pair at the same moment record one match, not two. Existing rows get their key; a pair
recorded twice already (in both directions) keeps its key on the older row.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-11 10:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def pair_key(modality: str, finding_id: str, target_kind: str, target_id: str) -> str:
    """As storage.matches.pair_key (a migration keeps its own copy: the module may change after it)."""
    if target_kind == "finding":
        first, second = sorted((finding_id, target_id))
        return f"{modality}:{first}:finding:{second}"
    return f"{modality}:{finding_id}:{target_kind}:{target_id}"


def upgrade() -> None:
    with op.batch_alter_table("matches") as batch:
        batch.add_column(sa.Column("pair_key", sa.String(length=120), nullable=True))
    connection = op.get_bind()
    matches = sa.table("matches", sa.column("id", sa.String), sa.column("modality", sa.String),
                       sa.column("finding_id", sa.String), sa.column("target_kind", sa.String),
                       sa.column("target_id", sa.String), sa.column("created_at", sa.DateTime),
                       sa.column("pair_key", sa.String))
    seen: set[str] = set()
    rows = connection.execute(sa.select(matches.c.id, matches.c.modality, matches.c.finding_id,
                                        matches.c.target_kind, matches.c.target_id)
                              .order_by(matches.c.created_at, matches.c.id)).all()
    for row in rows:
        key = pair_key(row.modality, row.finding_id, row.target_kind, row.target_id)
        if key in seen:
            continue
        seen.add(key)
        connection.execute(sa.update(matches).where(matches.c.id == row.id).values(pair_key=key))
    with op.batch_alter_table("matches") as batch:
        batch.create_unique_constraint("uq_matches_pair", ["pair_key"])


def downgrade() -> None:
    with op.batch_alter_table("matches") as batch:
        batch.drop_constraint("uq_matches_pair", type_="unique")
        batch.drop_column("pair_key")
