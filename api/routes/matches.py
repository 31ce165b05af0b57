"""Matches for review (per item, per case, one by one) and the searches across cases that need no vector index
(by plate, by national number).

Who: investigators, forensic examiners and supervisors (`MATCHING_ROLES`, those who search across cases);
auditors and administrators never see matches (separation of duties), and a case system feeds cases without
reviewing what links them. The role is checked first, so a refusal says nothing of the item or case asked for.

What a reader sees of a match (the rule, for both listings and `GET /matches/{id}`):

* the match is listed when its item or case is one the reader may see (`api.deps.case_visible`); the side in
  that case (the *anchor*: the case listed, the item's case, or for one match the first side the reader may see)
  is always shown;
* a finding in another case is shown (its finding, item, case and reference) only when the reader may see that
  case **and** has stated a purpose (the purpose headers, optional here): following a link into another case is
  consulting data across cases. Without a purpose it is withheld as "purpose"; in a case the reader may not see,
  it is withheld as "not_assigned": nothing of it is named, not even its case. The match's own id is the minimal
  reference: a supervisor (who sees every case) can be asked about it and reads it whole;
* a register record: a vehicle is shown as the vehicle register shows it (plate, make, model, colour and status
  are not personal data; its owner's national number only with a purpose); a person only with a stated purpose
  (withheld as "purpose" in listings, 403 for one match), like the persons register;
* register data behind a match (a person, a vehicle's owner) is withheld from investigators until a forensic
  examiner has confirmed the match (the EU Prüm II rule, `api.routes.reviews`): the person side reads "unconfirmed"
  (with the match's `detail`), a vehicle is shown without its owner; examiners and supervisors see it as above, to
  review it. The first release of a confirmed match's register data to each investigator is logged as a
  "disclosure" (`storage.review_records.MatchDisclosure`; later ones are consultations);
* a finding shown lists its derived files (face and plate crops) as links to `/findings/{id}/artifacts/{n}`,
  so a reviewer compares both sides; `detail` (both readings, the vehicle's status, distances, inliers and
  homography, paired minutiae) is shown only when both sides are, minimised per role like findings
  (`api.deps.minimise`);
* every person a request showed is noted for the audit log (`api.access.note_persons`): a registered person,
  a vehicle's owner, a national number read in text; the other cases shown are noted as `cases_shown`.

Searches (purpose required, audited): `GET /search/plates` looks a plate up in the vehicle register and among the
plates read in evidence of every case the reader may see, exactly and tolerant of the same OCR confusions as the
plate matcher (`storage.plate_keys`); `GET /search/national-numbers` returns the person registered under a
number and the findings naming it. Evidence is found through the keys the cross-matcher indexes
(`storage.match_queries`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy.orm import Session

from api.access import API_PREFIX, note_of, note_persons
from api.deps import (
    MATCHING_ROLES,
    CurrentCase,
    CurrentEvidence,
    Purpose,
    PurposeDep,
    SessionDep,
    case_visible,
    minimise,
    refusal,
    require_roles,
    visible_case_ids,
)
from api.principal import Principal
from api.problems import Problem
from api.routes.persons import person_read
from api.routes.registers import OptionalPurpose
from api.routes.reviews import REVIEW_ROLES
from api.routes.vehicles import vehicle_read
from api.schemas.matches import (
    ArtifactLink,
    KeyedFindingRead,
    MatchRead,
    MatchSideRead,
    NationalNumberSearchRead,
    PlateSearchRead,
    VehicleHitRead,
)
from storage import match_queries, persons, review_records, vehicles
from storage.identifiers import national_number_digits, parse_national_number, plate_key
from storage.match_queries import FindingShown, KeyedFinding
from storage.matches import Match
from storage.plate_keys import confusion_variants, confusions_applied

router = APIRouter(tags=["matches"])
MatchReader = Annotated[Principal, require_roles(*MATCHING_ROLES)]
Offset = Annotated[int, Query(ge=0, le=100_000)]
Limit = Annotated[int, Query(ge=1, le=200)]
Modality = Literal["plate", "entity", "face", "fingerprint", "image"]  # storage.matches.MODALITIES
Status = Literal["candidate", "confirmed", "rejected"]  # storage.matches.MATCH_STATUSES
PLATE_MODALITY, ENTITY_MODALITY = "plate", "entity"
NATIONAL_NUMBER_KIND = "entity.national_number"


@dataclass
class Viewpoint:
    """Who reads the matches, from which case, with which purpose; what was shown is gathered for the audit log."""

    principal: Principal
    anchor: str
    purpose: Purpose | None
    visible: dict[str, bool] = field(default_factory=dict)
    persons: list[str] = field(default_factory=list)
    cases_shown: set[str] = field(default_factory=set)
    disclosed: list[str] = field(default_factory=list)  # confirmed matches whose register data an investigator saw

    def sees(self, session: Session, case_id: str) -> bool:
        if case_id not in self.visible:
            self.visible[case_id] = case_visible(session, self.principal, case_id)
        return self.visible[case_id]


def _finding_side(session: Session, view: Viewpoint, references: dict[str, str], *, finding_id: str,
                  shown: FindingShown | None, evidence_id: str | None, case_id: str | None, analyzer: str,
                  version: str | None) -> MatchSideRead:
    if case_id is None or not view.sees(session, case_id):
        return MatchSideRead(kind="finding", withheld="not_assigned")
    if case_id != view.anchor and view.purpose is None:
        return MatchSideRead(kind="finding", withheld="purpose")
    if case_id != view.anchor:
        view.cases_shown.add(case_id)
    artifacts = [ArtifactLink(name=artifact["name"], content_type=artifact["content_type"],
                              url=f"{API_PREFIX}/findings/{finding_id}/artifacts/{artifact['index']}")
                 for artifact in (shown.artifacts if shown is not None else [])]
    return MatchSideRead(kind="finding", finding_id=finding_id, finding_kind=shown.kind if shown else None,
                         evidence_id=evidence_id, case_id=case_id, case_reference=references.get(case_id),
                         analyzer=analyzer, analyzer_version=version, artifacts=artifacts)


def _register_side(session: Session, view: Viewpoint, match: Match) -> MatchSideRead:
    reviewer = view.principal.has(*REVIEW_ROLES)
    released = reviewer or match.status == "confirmed"  # investigators: only once an examiner has confirmed it
    if match.target_kind == "vehicle":
        vehicle = vehicles.get_vehicle(session, vehicle_id=match.target_id)
        if vehicle is None:
            return MatchSideRead(kind="vehicle", withheld="gone", record_id=match.target_id)
        show_owner = view.purpose is not None and released
        if show_owner and vehicle.owner_national_number:
            view.persons.append(vehicle.owner_national_number)
            if not reviewer:
                view.disclosed.append(match.id)
        return MatchSideRead(kind="vehicle", analyzer=match.target_analyzer, record_id=vehicle.id,
                             vehicle=vehicle_read(vehicle, show_owner=show_owner))
    if view.purpose is None:
        return MatchSideRead(kind="person", withheld="purpose")
    if not released:
        return MatchSideRead(kind="person", withheld="unconfirmed")
    person = persons.get_person_by_id(session, person_id=match.target_id)
    if person is None:
        return MatchSideRead(kind="person", withheld="gone", record_id=match.target_id)
    view.persons.append(person.national_number)
    if not reviewer:
        view.disclosed.append(match.id)
    return MatchSideRead(kind="person", analyzer=match.target_analyzer, record_id=person.id,
                         person=person_read(session, person))


def _read(session: Session, view: Viewpoint, match: Match, references: dict[str, str],
          shown: dict[str, FindingShown]) -> MatchRead:
    side_a = _finding_side(session, view, references, finding_id=match.finding_id,
                           shown=shown.get(match.finding_id, FindingShown(match.finding_kind, [])),
                           evidence_id=match.evidence_id, case_id=match.case_id, analyzer=match.analyzer,
                           version=match.analyzer_version)
    if match.target_kind == "finding":
        side_b = _finding_side(session, view, references, finding_id=match.target_id,
                               shown=shown.get(match.target_id), evidence_id=match.target_evidence_id,
                               case_id=match.target_case_id, analyzer=match.target_analyzer,
                               version=match.target_version)
    else:
        side_b = _register_side(session, view, match)
    hidden = any(side.withheld in ("not_assigned", "purpose", "unconfirmed") for side in (side_a, side_b))
    detail = None if hidden else minimise(view.principal, dict(match.detail))
    if detail is not None and match.finding_kind == NATIONAL_NUMBER_KIND and detail.get("value"):
        view.persons.append(str(detail["value"]))
    return MatchRead(
        id=match.id, modality=match.modality, finding=side_a, target=side_b,
        other_case=match.target_case_id is not None and match.target_case_id != match.case_id,
        score=match.score, threshold=match.threshold, method=match.method, matcher=match.matcher,
        matcher_version=match.matcher_version, detail=detail, detail_withheld=hidden, status=match.status,
        reviewed_by=match.reviewed_by, reviewed_at=match.reviewed_at, superseded_at=match.superseded_at,
        created_at=match.created_at)


def _answer(request: Request, session: Session, view: Viewpoint, found: Sequence[Match]) -> list[MatchRead]:
    """The matches as `view` may see them; the persons and other cases shown go to the audit entry, which is a
    disclosure when the register data of a confirmed match was shown to this investigator for the first time."""
    cases = {case for match in found for case in (match.case_id, match.target_case_id) if case is not None}
    references = match_queries.case_references(session, case_ids=[c for c in cases if view.sees(session, c)])
    shown = match_queries.findings_shown(session, finding_ids=[finding for m in found for finding in (
        m.finding_id, m.target_id if m.target_kind == "finding" else None) if finding is not None])
    answered = [_read(session, view, match, references, shown) for match in found]
    note_persons(request, view.persons)
    note = note_of(request)
    if note is not None and view.cases_shown:
        note.detail["cases_shown"] = sorted(view.cases_shown)
    first = review_records.record_disclosures(session, match_ids=view.disclosed, recipient=view.principal.name)
    if note is not None and first:
        note.action = "disclosure"
        note.detail["disclosed_matches"] = first
    return answered


@router.get("/evidence/{evidence_id}/matches", response_model=list[MatchRead])
def evidence_matches(request: Request, principal: MatchReader, evidence: CurrentEvidence, session: SessionDep,
                     purpose: OptionalPurpose, modality: Modality | None = None, status: Status | None = None,
                     include_superseded: bool = False, offset: Offset = 0, limit: Limit = 50) -> list[MatchRead]:
    """The item's matches (either side), highest score first. Links into other cases are shown with a stated
    purpose and only for cases the caller may see; register persons only with a purpose (see the module)."""
    found = match_queries.list_matches(session, evidence_id=evidence.id, modality=modality, status=status,
                                       include_superseded=include_superseded, offset=offset, limit=limit)
    return _answer(request, session, Viewpoint(principal, evidence.case_id, purpose), found)


@router.get("/cases/{case_id}/matches", response_model=list[MatchRead])
def case_matches(request: Request, principal: MatchReader, case: CurrentCase, session: SessionDep,
                 purpose: OptionalPurpose, modality: Modality | None = None, status: Status | None = None,
                 include_superseded: bool = False, offset: Offset = 0, limit: Limit = 50) -> list[MatchRead]:
    """The case's matches (either side), highest score first; the same rules as an item's."""
    found = match_queries.list_matches(session, case_id=case.id, modality=modality, status=status,
                                       include_superseded=include_superseded, offset=offset, limit=limit)
    return _answer(request, session, Viewpoint(principal, case.id, purpose), found)


@router.get("/matches/{match_id}", response_model=MatchRead)
def get_match(request: Request, principal: MatchReader, match_id: Annotated[str, Path(max_length=64)],
              session: SessionDep, purpose: OptionalPurpose) -> MatchRead:
    """One match, for a reader who may see one of its sides (else 404); a match to a registered person needs a
    stated purpose (403)."""
    match = match_queries.get_match(session, match_id=match_id)
    sides = [] if match is None else [match.case_id, match.target_case_id]
    anchor = next((case for case in sides if case is not None and case_visible(session, principal, case)), None)
    if match is None or anchor is None:
        raise Problem(404, "Match not found", f"There is no match {match_id}.")
    note = note_of(request)
    if note is not None:
        note.case_id, note.resource_id = anchor, match.id
    if match.target_kind == "person" and purpose is None:
        raise refusal(request, 403, "A stated purpose is required",
                      "This match names a person of the register: state a purpose (the purpose headers).")
    return _answer(request, session, Viewpoint(principal, anchor, purpose), [match])[0]


def _keyed_read(found: KeyedFinding, principal: Principal, references: dict[str, str], *,
                asked: str) -> KeyedFindingRead:
    """A finding found by keys: "exact" when it read the key asked, "alternative" when its reader had it only
    among its alternatives, "tolerant" when it holds an OCR confusion of it (the fewest swaps are shown)."""
    matched = sorted(found.keys)
    method: Literal["exact", "alternative", "tolerant"]
    method = ("exact" if found.keys[asked] else "alternative") if asked in found.keys else "tolerant"
    closest = min(matched, key=lambda key: (len(confusions_applied(asked, key)), key), default=asked)
    return KeyedFindingRead(finding_id=found.finding_id, evidence_id=found.evidence_id, case_id=found.case_id,
                            case_reference=references.get(found.case_id), kind=found.kind, analyzer=found.analyzer,
                            analyzer_version=found.analyzer_version, label=found.label,
                            confidence=found.confidence, data=minimise(principal, found.data), method=method,
                            matched_keys=matched,
                            confusions=confusions_applied(asked, closest) if method == "tolerant" else [])


def _found_in_cases(request: Request, session: Session, principal: Principal, *, modality: str,
                    keys: Sequence[str], asked: str, offset: int, limit: int) -> list[KeyedFindingRead]:
    found = match_queries.findings_with_keys(session, modality=modality, keys=keys,
                                             case_ids=visible_case_ids(session, principal), offset=offset,
                                             limit=limit)
    references = match_queries.case_references(session, case_ids=[f.case_id for f in found])
    note = note_of(request)
    if note is not None and found:
        note.detail["cases_shown"] = sorted(references)
    return [_keyed_read(f, principal, references, asked=asked) for f in found]


@router.get("/search/plates", response_model=PlateSearchRead)
def search_plates(request: Request, principal: MatchReader, session: SessionDep, purpose: PurposeDep,
                  plate: Annotated[str, Query(min_length=1, max_length=32,
                                              description="any way of writing it: '1-abc-234' finds 1ABC234")],
                  country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
                  tolerant: bool = True, offset: Offset = 0, limit: Limit = 50) -> PlateSearchRead:
    """Register vehicles and plates read in evidence (every case the caller may see) under this plate, and,
    when `tolerant`, under the plates it may have been misread from (0/O, 1/I, 8/B, 5/S, 2/Z, at most two swaps).
    Owners are shown (and audited); `offset` and `limit` page the findings (the vehicles are few). Needs a
    purpose."""
    key = plate_key(plate)
    if not key:
        raise Problem(422, "Invalid plate", "The plate has no letters or digits.")
    swaps = {key: 0, **(confusion_variants(key) if tolerant else {})}
    keys = list(swaps)
    found = sorted(vehicles.vehicles_by_plate_keys(session, keys=keys, country=country),
                   key=lambda vehicle: (swaps[vehicle.plate_key], vehicle.plate_key, vehicle.country))
    note_persons(request, [vehicle.owner_national_number for vehicle in found if vehicle.owner_national_number])
    hits = [VehicleHitRead(vehicle=vehicle_read(vehicle, show_owner=True),
                           method="exact" if vehicle.plate_key == key else "tolerant",
                           confusions=confusions_applied(key, vehicle.plate_key)) for vehicle in found]
    findings = _found_in_cases(request, session, principal, modality=PLATE_MODALITY, keys=keys, asked=key,
                               offset=offset, limit=limit)
    return PlateSearchRead(plate=plate, key=key, keys_searched=len(keys), vehicles=hits, findings=findings)


@router.get("/search/national-numbers", response_model=NationalNumberSearchRead)
def search_national_numbers(request: Request, principal: MatchReader, session: SessionDep, purpose: PurposeDep,
                            number: Annotated[str, Query(min_length=1, max_length=32,
                                                         description="with or without separators")],
                            offset: Offset = 0, limit: Limit = 50) -> NationalNumberSearchRead:
    """The person registered under a national number and the findings naming it in every case the caller may
    see (text read in evidence). The number is noted for the audit log even when nobody holds it. Needs a
    purpose."""
    digits = national_number_digits(number)
    if not (digits.isascii() and digits.isdigit() and len(digits) == 11) or parse_national_number(digits) is None:
        raise Problem(422, "Invalid national number", f"{number!r} is not a valid national register number.")
    note_persons(request, [digits])
    person = persons.get_person(session, national_number=digits)
    key = f"national_number:{digits}"
    findings = _found_in_cases(request, session, principal, modality=ENTITY_MODALITY, keys=[key], asked=key,
                               offset=offset, limit=limit)
    return NationalNumberSearchRead(national_number=digits, findings=findings,
                                    person=person_read(session, person) if person is not None else None)
