"""Request and response schemas of the case API (Create / Read / Update)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ReadModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class CaseCreate(BaseModel):
    """A new case."""

    reference: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    title: str = Field(min_length=1, max_length=300)
    description: str = Field(default="", max_length=10_000)


class CaseRead(ReadModel):
    id: str
    reference: str
    title: str
    description: str
    created_at: dt.datetime
    created_by: str


class EvidenceRead(ReadModel):
    id: str
    case_id: str
    sha256: str
    size: int
    media_type: str
    declared_media_type: str | None
    original_filename: str | None
    bucket: str
    object_key: str
    version_id: str | None
    source: str
    received_at: dt.datetime
    received_by: str
    declared_kind: str | None = None
    declared_ppi: float | None = None


class CustodyEventRead(ReadModel):
    id: int
    at: dt.datetime
    actor: str
    action: str
    detail: dict[str, Any]


class EvidenceDetail(EvidenceRead):
    custody: list[CustodyEventRead]


class UploadResult(BaseModel):
    """The evidence item an upload ended in; `created` is false when the content was already held."""

    created: bool
    evidence: EvidenceRead


EvidenceKind = Literal["fingerprint", "document", "photo"]


class PresignedUploadCreate(BaseModel):
    filename: str = Field(min_length=1, max_length=300)
    evidence_kind: EvidenceKind | None = Field(default=None, description="'fingerprint' routes it to the "
                                                                         "fingerprint analyzer")


class PresignedUploadRead(BaseModel):
    url: str
    method: str = "PUT"
    bucket: str
    key: str
    expires_at: dt.datetime


class JobRead(ReadModel):
    id: int
    analyzer: str | None
    state: str
    attempts: int
    max_attempts: int
    last_error: str | None
    updated_at: dt.datetime


class AnalysisRunRead(ReadModel):
    id: str
    analyzer: str
    analyzer_version: str
    models: dict[str, Any]
    status: str
    error: str | None
    attempt: int
    worker: str | None
    started_at: dt.datetime | None
    finished_at: dt.datetime
    duration_ms: float | None


class AnalysisStatus(BaseModel):
    """Where the analysis of one evidence item stands."""

    evidence_id: str
    state: str  # "planning", "running", "done"
    jobs: list[JobRead]
    runs: list[AnalysisRunRead]


class FindingRead(ReadModel):
    id: str
    evidence_id: str
    case_id: str
    run_id: str
    analyzer: str
    kind: str
    label: str | None
    confidence: float | None
    data: dict[str, Any]
    created_at: dt.datetime


class WebhookAck(BaseModel):
    records: int
    queued: int


class IntakeFailureRead(ReadModel):
    id: int
    dedupe_key: str
    attempts: int
    last_error: str | None
    updated_at: dt.datetime


class TextHitRead(BaseModel):
    """One page of one evidence item whose text matches a search."""

    evidence_id: str
    case_id: str
    case_reference: str
    page: int
    language: str | None
    engine: str
    snippet: str
    rank: float


class FingerprintVerificationCreate(BaseModel):
    """Compare two fingerprints (1:1): both items must have been analysed as fingerprints."""

    probe_evidence_id: str = Field(min_length=1, max_length=64)
    candidate_evidence_id: str = Field(min_length=1, max_length=64)


class FingerprintSearchCreate(BaseModel):
    """Search one fingerprint against every print held (1:N), across cases unless `case_ids` limits it."""

    probe_evidence_id: str = Field(min_length=1, max_length=64)
    limit: int = Field(default=20, ge=1, le=100)
    case_ids: list[str] | None = Field(default=None, max_length=100)


class MatchRequestRead(ReadModel):
    """A verification or search request; `result` holds the scores once `status` is "succeeded"."""

    id: str
    kind: str
    probe_evidence_id: str
    candidate_evidence_id: str | None
    parameters: dict[str, Any]
    status: str
    result: dict[str, Any]
    error: str | None
    requested_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None


class AuditEntryRead(ReadModel):
    """One entry of the audit log, with its place in the hash chain."""

    id: int
    at: dt.datetime
    actor: str
    actor_roles: list[str]
    action: str
    resource: str
    resource_id: str | None
    case_id: str | None
    person: str | None
    purpose_case: str | None
    justification: str | None
    recipients: list[str]
    outcome: str
    detail: dict[str, Any]
    prev_hash: str
    entry_hash: str


class ChainVerification(BaseModel):
    """The result of checking one hash chain (the audit log, or the chain of custody) from its start."""

    chain: str
    ok: bool
    checked: int
    unchained: int
    first_bad_id: int | None
    reason: str | None
    checkpoint: str | None = None  # the newest signed checkpoint the chain was checked against
