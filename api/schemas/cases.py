"""Request and response models of cases and evidence items (Create / Read)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.schemas.base import ReadModel


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

