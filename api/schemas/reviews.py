"""Request and response models of the review of matches (`api.routes.reviews`): decisions, reopenings,
assignments, an examiner's queue and the calibration of each matcher setting."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.base import ReadModel

MIN_REASON, MAX_REASON = 10, 4000


class DecisionCreate(BaseModel):
    """An examiner's verdict on a candidate match, with the reason for it (kept with the match, for the record)."""

    model_config = ConfigDict(extra="forbid")
    verdict: Literal["confirmed", "rejected"]  # storage.review_records.VERDICTS
    reason: str = Field(min_length=MIN_REASON, max_length=MAX_REASON)


class ReopenCreate(BaseModel):
    """A supervisor's reopening of a decided match, with the reason for it."""

    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=MIN_REASON, max_length=MAX_REASON)


class AssignmentUpdate(BaseModel):
    """The examiner whose queue the match goes to; None puts it back in the queue of every examiner of its cases."""

    model_config = ConfigDict(extra="forbid")
    examiner: str | None = Field(min_length=1, max_length=200)


class DecisionRead(ReadModel):
    """One entry of a match's review history: a verdict, or a supervisor's reopening."""

    id: int
    match_id: str
    verdict: Literal["confirmed", "rejected", "reopened"]
    reason: str
    examiner: str
    at: dt.datetime
    score: float
    threshold: float


class AssignmentRead(BaseModel):
    match_id: str
    assigned_to: str | None
    assigned_at: dt.datetime | None


class QueueItemRead(BaseModel):
    """A match waiting for review, as a work list shows it: how it matched and where, no personal data (open it
    with `GET /matches/{id}`, which shows both sides by the usual rules)."""

    match_id: str
    modality: str
    score: float
    threshold: float
    method: str
    matcher: str
    matcher_version: str
    case_id: str  # the first of its sides' cases the reader may see
    case_reference: str | None
    evidence_id: str | None  # that side's item
    target_kind: Literal["finding", "vehicle", "person"]
    other_case: bool  # the two findings are in different cases
    assigned_to: str | None
    created_at: dt.datetime


class CalibrationRead(BaseModel):
    """The reviewed matches of one matcher setting (modality and threshold): how many were reviewed, confirmed and
    rejected, and the observed false-match rate (rejected / reviewed; None before any review)."""

    modality: str
    threshold: float
    reviewed: int
    confirmed: int
    rejected: int
    false_match_rate: float | None
