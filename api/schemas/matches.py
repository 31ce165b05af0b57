"""Response models of matches (`api.routes.matches`) and of the plate and national number searches.

A match is answered with both of its sides as the reader may see them (`MatchSideRead.withheld` says why a side is
not shown), how it matched, what a reviewer needs to judge it (`detail`, withheld with a side) and the
examiner's verdict (`status`, `reviewed_by`, `reviewed_at`: given by the review of issue 13).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel

from api.schemas.registers import PersonRead, VehicleRead

Withheld = Literal["not_assigned", "purpose", "unconfirmed", "gone"]


class ArtifactLink(BaseModel):
    """A derived file of a finding (a face crop, a plate crop), read at `url` by whoever may see its case."""

    name: str
    content_type: str | None = None
    url: str


class MatchSideRead(BaseModel):
    """One side of a match: a finding in evidence, or a register record (a vehicle, a person).

    `withheld` is set when the side is not shown: "not_assigned" (a finding in a case the reader may not see:
    nothing of it is named; ask a supervisor about the match id), "purpose" (a finding in another case the reader
    may see, or a person of the register: shown with a stated purpose), "unconfirmed" (a person of the register,
    to an investigator, until an examiner confirms the match), "gone" (a register record deleted since).
    """

    kind: Literal["finding", "vehicle", "person"]
    withheld: Withheld | None = None
    finding_id: str | None = None
    finding_kind: str | None = None  # None for a finding replaced since (the match is superseded)
    evidence_id: str | None = None
    case_id: str | None = None
    case_reference: str | None = None
    analyzer: str | None = None  # the analyzer of a finding; "register" for a register record
    analyzer_version: str | None = None
    record_id: str | None = None  # the vehicle's or person's id in its register
    vehicle: VehicleRead | None = None
    person: PersonRead | None = None
    artifacts: list[ArtifactLink] = []  # a shown finding's crops, for the reviewer to compare both sides


class MatchRead(BaseModel):
    """A match: side `finding` (always a finding) and side `target` (a register record or another finding)."""

    id: str
    modality: str
    finding: MatchSideRead
    target: MatchSideRead
    other_case: bool  # the two findings are in different cases
    score: float
    threshold: float
    method: str
    matcher: str
    matcher_version: str
    detail: dict[str, Any] | None  # both readings etc.; None when a side is withheld
    detail_withheld: bool = False
    status: str
    reviewed_by: str | None
    reviewed_at: dt.datetime | None
    superseded_at: dt.datetime | None
    created_at: dt.datetime


class KeyedFindingRead(BaseModel):
    """A finding a search found, in a case the caller may see, with the keys by which it was found."""

    finding_id: str
    evidence_id: str
    case_id: str
    case_reference: str | None
    kind: str
    analyzer: str
    analyzer_version: str
    label: str | None
    confidence: float | None
    data: dict[str, Any]
    method: Literal["exact", "alternative", "tolerant"]  # read as asked, among its alternatives, or by confusions
    matched_keys: list[str]
    confusions: list[str]  # the OCR confusions between the plate asked for and the one read ("8->B at 3")


class VehicleHitRead(BaseModel):
    vehicle: VehicleRead
    method: Literal["exact", "tolerant"]
    confusions: list[str]


class PlateSearchRead(BaseModel):
    """Vehicles of the register and plates read in evidence that match a plate, exactly or by OCR confusions."""

    plate: str
    key: str
    keys_searched: int
    vehicles: list[VehicleHitRead]
    findings: list[KeyedFindingRead]


class NationalNumberSearchRead(BaseModel):
    """The person registered under a national number, and the findings in evidence naming it."""

    national_number: str
    person: PersonRead | None
    findings: list[KeyedFindingRead]
