"""Indexes of the identity graph: the best live matches of a node without sorting all of them.

`storage.graph.neighbourhood` asks, per node, for its best live matches (confirmed first, then by score, at most a
limit). On a node with 10^4 matches the existing indexes find them all and the database sorts them; these
indexes hold only live matches (`superseded_at IS NULL`, partial on SQLite and PostgreSQL), after the lookup
columns (a register record; a side A finding; an item on either side, with the kind and modality the item's
lookups filter on) in the order asked (status, score, id; then superseded_at, without which SQLite does not read
them alone), so the first `limit` entries are the answer. `match_keys` gains one covering the items and findings
that read a key.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-13 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

LIVE = sa.text("superseded_at IS NULL")
MATCH_INDEXES = {
    "ix_matches_live_target": ["target_kind", "target_id"],
    "ix_matches_live_finding": ["finding_id"],
    "ix_matches_live_evidence": ["evidence_id", "target_kind", "modality"],
    "ix_matches_live_target_evidence": ["target_evidence_id", "target_kind", "modality"],
}
ORDER = ["status", "score", "id", "superseded_at"]  # the order asked; superseded_at makes it covering on SQLite


def upgrade() -> None:
    for name, columns in MATCH_INDEXES.items():
        op.create_index(name, "matches", columns + ORDER, sqlite_where=LIVE, postgresql_where=LIVE)
    op.create_index("ix_match_keys_items", "match_keys", ["modality", "key", "exact", "evidence_id", "finding_id"])


def downgrade() -> None:
    op.drop_index("ix_match_keys_items", table_name="match_keys")
    for name in reversed(list(MATCH_INDEXES)):
        op.drop_index(name, table_name="matches")
