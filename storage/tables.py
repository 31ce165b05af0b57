"""The record store's tables (SQLAlchemy 2 declarative models).

The API's request and response models are in `api.schemas`.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; use UTC")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base of every Locard table."""

    type_annotation_map = {dt.datetime: UTCDateTime, dict[str, Any]: JSON}


class Case(Base):
    """An investigation: evidence belongs to exactly one case."""

    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(200))


class Evidence(Base):
    """One evidence item: immutable content identified by its SHA-256, within one case."""

    __tablename__ = "evidence"
    __table_args__ = (UniqueConstraint("case_id", "sha256", name="uq_evidence_case_sha256"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    media_type: Mapped[str] = mapped_column(String(100))
    declared_media_type: Mapped[str | None] = mapped_column(String(200))
    original_filename: Mapped[str | None] = mapped_column(String(500))
    bucket: Mapped[str] = mapped_column(String(100))
    object_key: Mapped[str] = mapped_column(String(1024))
    version_id: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(20))  # "api" or "bucket"
    # What the submitter says the item is ("fingerprint", "document", "photo"), and a fingerprint's scan resolution.
    declared_kind: Mapped[str | None] = mapped_column(String(20))
    declared_ppi: Mapped[float | None] = mapped_column()
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    received_by: Mapped[str] = mapped_column(String(200))

    case: Mapped[Case] = relationship()


class EvidenceObject(Base):
    """Every stored object version known to Locard, and the evidence item it holds.

    This is what makes intake idempotent on bucket/key/version: an object seen twice is looked up here.
    """

    __tablename__ = "evidence_objects"
    __table_args__ = (UniqueConstraint("bucket", "object_key", "version_id", name="uq_evidence_object"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(100))
    object_key: Mapped[str] = mapped_column(String(1024))
    version_id: Mapped[str] = mapped_column(String(200))  # "" for unversioned stores
    evidence_id: Mapped[str | None] = mapped_column(ForeignKey("evidence.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(20))  # "original", "duplicate", "rejected"
    detail: Mapped[str] = mapped_column(Text, default="")
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CustodyEvent(Base):
    """One entry of an evidence item's chain of custody. Append-only: the database refuses updates and deletes."""

    __tablename__ = "custody_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(50))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The HMAC chain over custody (storage.audit): set when the event is flushed. Events written before
    # migration 0003 have none; verification starts at the first chained event.
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    entry_hash: Mapped[str | None] = mapped_column(String(64))


class Job(Base):
    """A durable unit of work (intake of an object, or one analyzer on one evidence item).

    Jobs survive restarts: a worker leases a job, and a lease that runs out makes the job claimable again.
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_claim", "state", "available_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(20))  # "intake" or "analysis"
    dedupe_key: Mapped[str] = mapped_column(String(1200), unique=True)
    evidence_id: Mapped[str | None] = mapped_column(ForeignKey("evidence.id"), index=True)
    analyzer: Mapped[str | None] = mapped_column(String(100))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    state: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|succeeded|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    available_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AnalysisRun(Base):
    """One attempt of one analyzer on one evidence item; every attempt ends in one, success or failure."""

    __tablename__ = "analysis_runs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))
    analyzer: Mapped[str] = mapped_column(String(100))
    analyzer_version: Mapped[str] = mapped_column(String(50))
    models: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20))  # "succeeded" or "failed"
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    worker: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    duration_ms: Mapped[float | None] = mapped_column()


class Finding(Base):
    """A result of analysis about one evidence item (a hash, EXIF data, a detected object, ...)."""

    __tablename__ = "findings"
    __table_args__ = (Index("ix_findings_case_kind", "case_id", "kind"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), index=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    run_id: Mapped[str] = mapped_column(ForeignKey("analysis_runs.id"))
    analyzer: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(100))
    label: Mapped[str | None] = mapped_column(String(500))
    confidence: Mapped[float | None] = mapped_column()
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class EvidenceText(Base):
    """The text of one page of one evidence item (OCR or a PDF's text layer), indexed for full-text search.

    `folded` is the text lower-cased and stripped of accents, so "Liège" and "liege" find each other on every
    backend: SQLite searches it through an FTS5 table, PostgreSQL through a GIN index on its tsvector.
    """

    __tablename__ = "evidence_text"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), index=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    finding_id: Mapped[str] = mapped_column(ForeignKey("findings.id", ondelete="CASCADE"), index=True)
    page: Mapped[int] = mapped_column(Integer)
    language: Mapped[str | None] = mapped_column(String(10))
    engine: Mapped[str] = mapped_column(String(30))
    text: Mapped[str] = mapped_column(Text)
    folded: Mapped[str] = mapped_column(Text)


class FingerprintTemplate(Base):
    """A fingerprint's minutiae template (ISO/IEC 19794-2:2005) held for 1:1 verification and 1:N search."""

    __tablename__ = "fingerprint_templates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), index=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    finding_id: Mapped[str] = mapped_column(ForeignKey("findings.id", ondelete="CASCADE"), index=True)
    iso: Mapped[bytes] = mapped_column(LargeBinary)
    minutiae: Mapped[int] = mapped_column(Integer)
    nfiq2: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MatchRequest(Base):
    """A fingerprint verification (1:1) or search (1:N), run by the matcher workers; its result is kept."""

    __tablename__ = "match_requests"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(30))  # "fingerprint_verification" | "fingerprint_search"
    probe_evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), index=True)
    candidate_evidence_id: Mapped[str | None] = mapped_column(ForeignKey("evidence.id"))
    parameters: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(20), default="queued")  # queued|running|succeeded|failed
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    requested_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()


class IntakeClaim(Base):
    """A key in the evidence bucket that one intake owns: an API upload in progress, or a presigned upload grant.

    It is committed before the object can exist, so the sweep and the webhook leave an upload's object to its
    uploader while the claim is pending, and a presigned grant takes in one object version only.
    """

    __tablename__ = "intake_claims"
    __table_args__ = (UniqueConstraint("bucket", "object_key", name="uq_intake_claim"),
                      Index("ix_intake_claims_state", "state", "expires_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    bucket: Mapped[str] = mapped_column(String(100))
    object_key: Mapped[str] = mapped_column(String(1024))
    kind: Mapped[str] = mapped_column(String(20))  # "upload" or "presigned"
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"))
    actor: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(20), default="pending")  # pending|done|failed
    version_id: Mapped[str | None] = mapped_column(String(200))  # the version taken in under this claim
    evidence_id: Mapped[str | None] = mapped_column(ForeignKey("evidence.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
