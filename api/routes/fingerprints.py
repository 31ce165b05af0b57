"""Fingerprints: 1:1 verification and 1:N search (answered by the matcher workers), and template export."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status
from sqlalchemy.orm import Session

from api.deps import CurrentEvidence, CurrentPrincipal, SessionDep, SettingsDep
from api.problems import Problem
from api.schemas import FingerprintSearchCreate, FingerprintVerificationCreate, MatchRequestRead
from storage import matching, records
from storage.schema import Evidence, MatchRequest

router = APIRouter(tags=["fingerprints"])
ISO_MEDIA_TYPE = "application/octet-stream"


def _evidence(session: Session, evidence_id: str, role: str) -> Evidence:
    evidence = records.get_evidence(session, evidence_id=evidence_id)
    if evidence is None:
        raise Problem(404, "Evidence not found", f"The {role} {evidence_id} does not exist.")
    return evidence


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
def verify(body: FingerprintVerificationCreate, session: SessionDep, settings: SettingsDep,
           principal: CurrentPrincipal) -> MatchRequest:
    """Compare two prints (Bozorth3); poll `GET /fingerprints/requests/{id}` for the score."""
    probe = _evidence(session, body.probe_evidence_id, "probe")
    candidate = _evidence(session, body.candidate_evidence_id, "candidate")
    return _request(session, kind=matching.VERIFICATION, probe=probe, candidate=candidate, parameters={},
                    principal=principal.name, max_attempts=settings.job_max_attempts)


@router.post("/fingerprints/searches", response_model=MatchRequestRead, status_code=status.HTTP_202_ACCEPTED)
def search(body: FingerprintSearchCreate, session: SessionDep, settings: SettingsDep,
           principal: CurrentPrincipal) -> MatchRequest:
    """Search one print against every print held, across cases; poll the request for ranked candidates."""
    probe = _evidence(session, body.probe_evidence_id, "probe")
    parameters: dict[str, object] = {"limit": body.limit}
    if body.case_ids is not None:
        parameters["case_ids"] = body.case_ids
    return _request(session, kind=matching.SEARCH, probe=probe, candidate=None, parameters=parameters,
                    principal=principal.name, max_attempts=settings.job_max_attempts)


@router.get("/fingerprints/requests/{request_id}", response_model=MatchRequestRead)
def get_request(request_id: Annotated[str, Path(max_length=64)], session: SessionDep,
                principal: CurrentPrincipal) -> MatchRequest:
    """A verification or search request, with its result once it has run."""
    request = matching.get_request(session, request_id=request_id)
    if request is None:
        raise Problem(404, "Match request not found", f"There is no match request {request_id}.")
    return request


@router.get("/evidence/{evidence_id}/fingerprint-template", response_class=Response,
            responses={200: {"content": {ISO_MEDIA_TYPE: {}},
                             "description": "the print's minutiae as an ISO/IEC 19794-2:2005 record"}})
def template(evidence: CurrentEvidence, session: SessionDep) -> Response:
    """The print's minutiae template in ISO/IEC 19794-2:2005, for exchange with other AFIS."""
    held = matching.template_of(session, evidence_id=evidence.id)
    if held is None:
        raise Problem(404, "No fingerprint template", f"Evidence {evidence.id} has no fingerprint template.")
    return Response(held.iso, media_type=ISO_MEDIA_TYPE, headers={
        "Content-Disposition": f'attachment; filename="{evidence.id}.ist"'})
