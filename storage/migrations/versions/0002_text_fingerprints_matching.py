"""Declared evidence kind, page text with full-text search, fingerprint templates and match requests.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 21:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _full_text_index() -> None:
    """SQLite: an FTS5 table over `folded`, kept in step by triggers. PostgreSQL: a GIN index on its tsvector."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        op.execute("CREATE VIRTUAL TABLE evidence_text_fts USING fts5(folded, content='evidence_text', "
                   "content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
        op.execute("CREATE TRIGGER evidence_text_fts_insert AFTER INSERT ON evidence_text BEGIN "
                   "INSERT INTO evidence_text_fts(rowid, folded) VALUES (new.id, new.folded); END")
        op.execute("CREATE TRIGGER evidence_text_fts_delete AFTER DELETE ON evidence_text BEGIN "
                   "INSERT INTO evidence_text_fts(evidence_text_fts, rowid, folded) "
                   "VALUES ('delete', old.id, old.folded); END")
    elif dialect == "postgresql":
        op.execute("CREATE INDEX ix_evidence_text_tsv ON evidence_text USING gin (to_tsvector('simple', folded))")


def upgrade() -> None:
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.add_column(sa.Column("declared_kind", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("declared_ppi", sa.Double(), nullable=True))

    op.create_table(
        "evidence_text",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("finding_id", sa.String(length=36), nullable=False),
        sa.Column("page", sa.Integer(), nullable=False),
        sa.Column("language", sa.String(length=10), nullable=True),
        sa.Column("engine", sa.String(length=30), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("folded", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.ForeignKeyConstraint(["finding_id"], ["findings.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("evidence_id", "case_id", "finding_id"):
        op.create_index(f"ix_evidence_text_{column}", "evidence_text", [column])
    _full_text_index()

    op.create_table(
        "fingerprint_templates",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.Column("case_id", sa.String(length=36), nullable=False),
        sa.Column("finding_id", sa.String(length=36), nullable=False),
        sa.Column("iso", sa.LargeBinary(), nullable=False),
        sa.Column("minutiae", sa.Integer(), nullable=False),
        sa.Column("nfiq2", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"]),
        sa.ForeignKeyConstraint(["finding_id"], ["findings.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("evidence_id", "case_id", "finding_id"):
        op.create_index(f"ix_fingerprint_templates_{column}", "fingerprint_templates", [column])

    op.create_table(
        "match_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("probe_evidence_id", sa.String(length=36), nullable=False),
        sa.Column("candidate_evidence_id", sa.String(length=36), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["candidate_evidence_id"], ["evidence.id"]),
        sa.ForeignKeyConstraint(["probe_evidence_id"], ["evidence.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_match_requests_probe_evidence_id", "match_requests", ["probe_evidence_id"])


def downgrade() -> None:
    op.drop_table("match_requests")
    op.drop_table("fingerprint_templates")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE IF EXISTS evidence_text_fts")
    op.drop_table("evidence_text")
    with op.batch_alter_table("evidence", schema=None) as batch_op:
        batch_op.drop_column("declared_ppi")
        batch_op.drop_column("declared_kind")
