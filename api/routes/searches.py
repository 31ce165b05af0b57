"""Searches by face image and by similar image (1:N across cases), answered by the cross-matching actor.

`POST /search/faces` and `POST /search/images` record a search from a probe item (`storage.searches`) and answer
202 with the request; `GET /search/requests/{id}` shows it with its ranked candidates once answered. The rules are
the fingerprint searches' (`api.routes.fingerprints`):

* who: investigators, forensic examiners and supervisors (`MATCHING_ROLES`), checked first; a stated purpose
  (the purpose headers) to ask and to read, since both consult data across cases; each is audited (asking as a
  "combination" of the probe with every case searched; reading as a consultation naming the cases shown);
* what: the probe must be an item the caller may see (else 404, as for a missing one), and so must every case
  named in `case_ids` (default: every case the caller may see, or all for a supervisor);
* a result is shown as its reader may see it, whoever asked: only candidates in cases visible to the reader now,
  ranked again (`storage.matching.result_for_cases`). A face that is a registered person's reference photo
  names the person (the worker records only the id): shown to those who may read the persons register, with a
  purpose, and noted for the audit log by national number, as the register does.

A probe with nothing to search with (not analysed yet, no face with an embedding, the finding named is not one of
its faces, no image-similarity findings) is refused with 409 and the reason.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, status
from sqlalchemy.orm import Session

from api.access import note_of, note_persons, note_requested_ids
from api.deps import (
    MATCHING_ROLES,
    Purpose,
    PurposeDep,
    SessionDep,
    SettingsDep,
    hidden_cases,
    require_roles,
    visible_case_ids,
    visible_evidence,
)
from api.principal import Principal
from api.problems import Problem
from api.routes.fingerprints import request_as_seen
from api.routes.persons import person_read
from api.routes.registers import REGISTER_READ_ROLES
from api.schemas.searches import FaceSearchCreate, ImageSearchCreate, SearchCreate, SearchRequestRead
from storage import persons, searches
from storage.tables import MatchRequest

router = APIRouter(prefix="/search", tags=["searches"])
Searcher = Annotated[Principal, require_roles(*MATCHING_ROLES)]
REFUSALS = {searches.FACE_SEARCH: "No face to search with", searches.IMAGE_SEARCH: "No picture to search with"}


def _ask(request: Request, session: Session, principal: Principal, purpose: Purpose, *, kind: str,
         body: SearchCreate, finding_id: str | None, extra: dict[str, Any], max_attempts: int) -> MatchRequest:
    note_requested_ids(request, evidence_id=body.evidence_id, finding_id=finding_id, case_ids=body.case_ids)
    probe = visible_evidence(session, principal, body.evidence_id)
    if probe is None:
        raise Problem(404, "Evidence not found", f"The probe {body.evidence_id} does not exist.")
    if body.case_ids is not None and (hidden := hidden_cases(session, principal, body.case_ids)):
        raise Problem(404, "Case not found", f"There is no case {hidden[0]}.")
    note = note_of(request)
    if note is not None:
        note.action, note.resource_id = "combination", probe.id
    parameters: dict[str, Any] = {"limit": body.limit, "purpose_case": purpose.case_reference, **extra}
    case_ids = sorted(set(body.case_ids)) if body.case_ids is not None else visible_case_ids(session, principal)
    if case_ids is not None:
        parameters["case_ids"] = case_ids
    try:
        return searches.request_search(session, kind=kind, probe=probe, finding_id=finding_id,
                                       parameters=parameters, requested_by=principal.name,
                                       max_attempts=max_attempts)
    except searches.NotSearchable as exc:
        raise Problem(409, REFUSALS[kind], f"{exc.reason}.") from exc


@router.post("/faces", response_model=SearchRequestRead, status_code=status.HTTP_202_ACCEPTED)
def search_faces(request: Request, principal: Searcher, body: FaceSearchCreate, session: SessionDep,
                 settings: SettingsDep, purpose: PurposeDep) -> MatchRequest:
    """Search the faces of every case the caller may see (or of `case_ids`) for one face of the probe (its
    largest with an embedding unless `finding_id` names one); poll `GET /search/requests/{id}` for the nearest
    faces, ranked by distance. Needs a purpose."""
    return _ask(request, session, principal, purpose, kind=searches.FACE_SEARCH, body=body,
                finding_id=body.finding_id, extra={}, max_attempts=settings.job_max_attempts)


@router.post("/images", response_model=SearchRequestRead, status_code=status.HTTP_202_ACCEPTED)
def search_images(request: Request, principal: Searcher, body: ImageSearchCreate, session: SessionDep,
                  settings: SettingsDep, purpose: PurposeDep) -> MatchRequest:
    """Search every case the caller may see (or `case_ids`) for pictures like the probe's: near-duplicates by
    PDQ, then the nearest scenes, the first ones verified geometrically when `verify`; poll
    `GET /search/requests/{id}`. Needs a purpose."""
    return _ask(request, session, principal, purpose, kind=searches.IMAGE_SEARCH, body=body, finding_id=None,
                extra={"verify": body.verify}, max_attempts=settings.job_max_attempts)


@router.get("/requests/{request_id}", response_model=SearchRequestRead)
def get_search(request: Request, principal: Searcher, request_id: Annotated[str, Path(max_length=64)],
               session: SessionDep, purpose: PurposeDep) -> SearchRequestRead:
    """A search request, with its result once it has run, for those who see its probe: candidates only in cases
    the reader sees. Needs a purpose, like the request did."""
    found = searches.get_search(session, request_id=request_id)
    probe = visible_evidence(session, principal, found.probe_evidence_id) if found is not None else None
    if found is None or probe is None:
        raise Problem(404, "Search request not found", f"There is no search request {request_id}.")
    result, parameters = request_as_seen(request, session, principal, found=found, probe=probe)
    result = _with_persons(request, session, principal, result)
    read = SearchRequestRead.model_validate(found)
    return read.model_copy(update={"result": result, "parameters": parameters})


def _with_persons(request: Request, session: Session, principal: Principal, result: dict[str, Any]) -> dict[str, Any]:
    """The result with the persons each reference photo's face pictures, for those who may read the persons
    register ("withheld" for others); those shown are noted for the audit log."""
    candidates = result.get("candidates")
    if not isinstance(candidates, list):
        return result
    readable = principal.has(*REGISTER_READ_ROLES)
    shown: list[str] = []
    answered = []
    for entry in candidates:
        person_ids = entry.get("person_ids") if isinstance(entry, dict) else None
        if not person_ids:
            answered.append(entry)
            continue
        if not readable:
            answered.append({**entry, "persons": "withheld"})
            continue
        found = [person for person_id in person_ids
                 if (person := persons.get_person_by_id(session, person_id=str(person_id))) is not None]
        shown += [person.national_number for person in found]
        answered.append({**entry, "persons": [person_read(session, person).model_dump(mode="json")
                                              for person in found]})
    note_persons(request, shown)
    return {**result, "candidates": answered}
