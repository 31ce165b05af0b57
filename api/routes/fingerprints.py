"""Fingerprints: 1:1 verification and 1:N search (answered by the matcher workers), and template export.

A result is shown as its reader may see it, whoever asked for it: only candidates in cases visible to the
reader now, and reading it needs a stated purpose like asking for it (it is data across cases)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request, Response, status
from sqlalchemy.orm import Session

from api.access import note_of, note_requested_ids
from api.deps import (
    BIOMETRIC_ROLES,
    MATCHING_ROLES,
    CurrentEvidence,
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
from api.schemas.fingerprints import FingerprintSearchCreate, FingerprintVerificationCreate, MatchRequestRead
from storage import matching
from storage.tables import Evidence, MatchRequest

router = APIRouter(tags=["fingerprints"])
ISO_MEDIA_TYPE = "application/octet-stream"


def _evidence(session: Session, principal: Principal, evidence_id: str, role: str) -> Evidence:
    evidence = visible_evidence(session, principal, evidence_id)
    if evidence is None:
        raise Problem(404, "Evidence not found", f"The {role} {evidence_id} does not exist.")
    return evidence


def _combining(request: Request, probe: Evidence) -> None:
    note = note_of(request)
    if note is not None:
        note.action, note.resource_id = "combination", probe.id


def _request(session: Session, *, kind: str, probe: Evidence, candidate: Evidence | None,
             parameters: dict[str, object], principal: str, max_attempts: int) -> MatchRequest:
    try:
        return matching.request_match(session, kind=kind, probe=probe, candidate=candidate, parameters=parameters,
                                      requested_by=principal, max_attempts=max_attempts)
    except matching.NoTemplate as exc:
        raise Problem(409, "No fingerprint template",
                      f"Evidence {exc.args[0]} has no fingerprint template: it was not analysed as a fingerprint "
                      "(yet), or its analysis found no usable print (see its analysis status).") from exc


@router.post("/fingerprints/verifications", response_model=MatchRequestRead, status_code=status.HTTP_202_ACCEPTED)
def verify(request: Request, body: FingerprintVerificationCreate, session: SessionDep, settings: SettingsDep,
           purpose: PurposeDep, principal: Principal = require_roles(*MATCHING_ROLES)) -> MatchRequest:
    """Compare two prints (Bozorth3); poll `GET /fingerprints/requests/{id}` for the score. Needs a purpose."""
    note_requested_ids(request, probe_evidence_id=body.probe_evidence_id,
                       candidate_evidence_id=body.candidate_evidence_id)
    probe = _evidence(session, principal, body.probe_evidence_id, "probe")
    candidate = _evidence(session, principal, body.candidate_evidence_id, "candidate")
    _combining(request, probe)
    return _request(session, kind=matching.VERIFICATION, probe=probe, candidate=candidate,
                    parameters={"purpose_case": purpose.case_reference},
                    principal=principal.name, max_attempts=settings.job_max_attempts)


@router.post("/fingerprints/searches", response_model=MatchRequestRead, status_code=status.HTTP_202_ACCEPTED)
def search(request: Request, body: FingerprintSearchCreate, session: SessionDep, settings: SettingsDep,
           purpose: PurposeDep, principal: Principal = require_roles(*MATCHING_ROLES)) -> MatchRequest:
    """Search one print against the prints of every case the caller may see (a supervisor: all; the leads name
    the cases), or of `case_ids` (one it may not see: 404); poll the request for ranked candidates. Needs a
    purpose."""
    note_requested_ids(request, probe_evidence_id=body.probe_evidence_id, case_ids=body.case_ids)
    probe = _evidence(session, principal, body.probe_evidence_id, "probe")
    if body.case_ids is not None and (hidden := hidden_cases(session, principal, body.case_ids)):
        raise Problem(404, "Case not found", f"There is no case {hidden[0]}.")
    _combining(request, probe)
    parameters: dict[str, object] = {"limit": body.limit, "purpose_case": purpose.case_reference}
    case_ids = sorted(set(body.case_ids)) if body.case_ids is not None else visible_case_ids(session, principal)
    if case_ids is not None:
        parameters["case_ids"] = case_ids
    return _request(session, kind=matching.SEARCH, probe=probe, candidate=None, parameters=parameters,
                    principal=principal.name, max_attempts=settings.job_max_attempts)


@router.get("/fingerprints/requests/{request_id}", response_model=MatchRequestRead)
def get_request(request: Request, request_id: Annotated[str, Path(max_length=64)], session: SessionDep,
                purpose: PurposeDep, principal: Principal = require_roles(*MATCHING_ROLES)) -> MatchRequestRead:
    """A verification or search request, with its result once it has run, for those who see its probe (and its
    candidate): search candidates only in cases the reader sees. Needs a purpose, like the request did."""
    found = matching.get_request(session, request_id=request_id)
    if found is not None and found.kind not in (matching.VERIFICATION, matching.SEARCH):
        found = None  # a face or image search is read where it was asked (`/search/requests/{id}`)
    probe = visible_evidence(session, principal, found.probe_evidence_id) if found is not None else None
    candidate_hidden = (found is not None and found.candidate_evidence_id is not None
                        and visible_evidence(session, principal, found.candidate_evidence_id) is None)
    if found is None or probe is None or candidate_hidden:
        raise Problem(404, "Match request not found", f"There is no match request {request_id}.")
    result, parameters = request_as_seen(request, session, principal, found=found, probe=probe)
    read = MatchRequestRead.model_validate(found)
    return read.model_copy(update={"result": result, "parameters": parameters})


def request_as_seen(request: Request, session: Session, principal: Principal, *, found: MatchRequest,
                    probe: Evidence) -> tuple[dict[str, Any], dict[str, Any]]:
    """A request's result and parameters as `principal` may see them (candidates and requested cases only in
    the cases they see); the request and the other cases shown are noted for the audit log."""
    listed = visible_case_ids(session, principal)
    visible = set(listed) if listed is not None else None
    result = matching.result_for_cases(found.result, case_ids=visible)
    parameters: dict[str, Any] = dict(found.parameters)
    if visible is not None and isinstance(parameters.get("case_ids"), list):
        parameters["case_ids"] = [case for case in parameters["case_ids"] if case in visible]
    note = note_of(request)
    if note is not None:
        note.case_id, note.resource_id = probe.case_id, found.id
        shown = matching.result_case_ids(result)
        if shown:
            note.detail["cases_shown"] = shown
    return result, parameters


@router.get("/evidence/{evidence_id}/fingerprint-template", response_class=Response,
            responses={200: {"content": {ISO_MEDIA_TYPE: {}},
                             "description": "the print's minutiae as an ISO/IEC 19794-2:2005 record"}})
def template(evidence: CurrentEvidence, session: SessionDep,
             principal: Principal = require_roles(*BIOMETRIC_ROLES)) -> Response:
    """The print's minutiae template in ISO/IEC 19794-2:2005, for exchange with other AFIS."""
    held = matching.template_of(session, evidence_id=evidence.id)
    if held is None:
        raise Problem(404, "No fingerprint template", f"Evidence {evidence.id} has no fingerprint template.")
    return Response(held.iso, media_type=ISO_MEDIA_TYPE, headers={
        "Content-Disposition": f'attachment; filename="{evidence.id}.ist"'})
