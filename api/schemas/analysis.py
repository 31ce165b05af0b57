"""Response models of analysis: jobs, runs, findings and full-text hits."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel

from api.schemas.base import ReadModel


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

