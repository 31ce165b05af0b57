"""Request and response models of fingerprint verification and search."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from api.schemas.base import ReadModel


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

