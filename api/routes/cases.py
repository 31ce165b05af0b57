"""Cases: create, list, read; evidence and findings per case."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from api.deps import (
    CASE_ROLES,
    CurrentCase,
    CurrentPrincipal,
    SessionDep,
    findings_for,
    require_roles,
    visible_case_ids,
)
from api.principal import Principal
from api.problems import Problem
from api.schemas.analysis import FindingRead
from api.schemas.cases import CaseCreate, CaseRead, EvidenceRead
from storage import accounts, records
from storage.roles import CASE_SYSTEM, INVESTIGATOR, SUPERVISOR

router = APIRouter(prefix="/cases", tags=["cases"])
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
Limit = Annotated[int, Query(ge=1, le=1000)]
KindFilter = Annotated[str | None, Query(max_length=100, description="a finding kind, or a prefix like 'hash.*'")]


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CaseRead)
def create_case(body: CaseCreate, session: SessionDep,
                principal: Principal = require_roles(INVESTIGATOR, SUPERVISOR, CASE_SYSTEM)) -> CaseRead:
    """Open a case; whoever opens it (unless a supervisor, who sees every case) is assigned to it."""
    try:
        case = records.create_case(session, reference=body.reference, title=body.title,
                                   description=body.description, created_by=principal.name)
    except records.DuplicateReference:
        raise Problem(409, "Case exists", f"A case with reference {body.reference!r} exists already.") from None
    if not principal.has(SUPERVISOR):
        accounts.assign(session, case_id=case.id, username=principal.name, assigned_by=principal.name)
    return CaseRead.model_validate(case)


@router.get("", response_model=list[CaseRead])
def list_cases(session: SessionDep, principal: Principal = require_roles(*CASE_ROLES), offset: Offset = 0,
               limit: Limit = 100) -> list[CaseRead]:
    """The cases the caller may see (supervisors: all; others: those they are assigned to)."""
    cases = records.list_cases(session, case_ids=visible_case_ids(session, principal), offset=offset, limit=limit)
    return [CaseRead.model_validate(c) for c in cases]


@router.get("/{case_id}", response_model=CaseRead)
def get_case(case: CurrentCase) -> CaseRead:
    return CaseRead.model_validate(case)


@router.get("/{case_id}/evidence", response_model=list[EvidenceRead])
def list_case_evidence(case: CurrentCase, session: SessionDep, offset: Offset = 0,
                       limit: Limit = 100) -> list[EvidenceRead]:
    items = records.list_evidence(session, case_id=case.id, offset=offset, limit=limit)
    return [EvidenceRead.model_validate(e) for e in items]


@router.get("/{case_id}/findings", response_model=list[FindingRead])
def list_case_findings(request: Request, case: CurrentCase, session: SessionDep, principal: CurrentPrincipal,
                       kind: KindFilter = None, offset: Offset = 0, limit: Limit = 500) -> list[FindingRead]:
    found = records.list_findings(session, case_id=case.id, kind=kind, offset=offset, limit=limit)
    return [FindingRead.model_validate(f) for f in findings_for(request, principal, found)]
