"""Typed dependencies: settings, a session per request, the store, the principal, roles, purpose, load-or-404.

Access rules (the case API's side of EU Directive 2016/680):

* every route but health and the token endpoint needs a principal (`api.access.AccessMiddleware`);
* a case is visible to supervisors, and to the investigators, forensic examiners and case systems assigned
  to it; to anyone else it does not exist (404, never 403: a refusal would confirm that it exists);
* consulting data across cases (full-text search of every case, fingerprint search and verification)
  needs a stated purpose: the reference of a case the principal is assigned to and a justification, in the
  `X-Locard-Purpose-Case` and `X-Locard-Purpose-Justification` headers; both are written to the audit log.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Path, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.access import note_of, note_persons, route_template
from api.principal import Principal
from api.problems import Problem
from storage import accounts, records
from storage.objectstore import ObjectStore
from storage.roles import CASE_DATA_ROLES, FORENSIC_EXAMINER, INVESTIGATOR, SUPERVISOR
from storage.settings import Settings
from storage.tables import Case, Evidence, Finding

CASE_ROLES = CASE_DATA_ROLES  # roles that work with case data
ALL_CASES_ROLES = (SUPERVISOR,)
UPLOAD_ROLES = CASE_ROLES
MATCHING_ROLES = (INVESTIGATOR, FORENSIC_EXAMINER, SUPERVISOR)
BIOMETRIC_ROLES = (FORENSIC_EXAMINER, SUPERVISOR)  # who sees embeddings and minutiae, not only their results
PURPOSE_CASE_HEADER = "X-Locard-Purpose-Case"
PURPOSE_JUSTIFICATION_HEADER = "X-Locard-Purpose-Justification"
MIN_JUSTIFICATION = 10

__all__ = ["CurrentCase", "CurrentEvidence", "CurrentPrincipal", "Principal", "Purpose",
           "PurposeDep", "SessionDep", "SettingsDep", "StoreDep", "refusal", "require_roles"]


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(request: Request) -> Iterator[Session]:
    """A session in one transaction; the request's audit entry is written in it, so both commit together."""
    note = note_of(request)
    with request.app.state.session_factory() as session:
        with session.begin():
            yield session
            if note is not None and not note.written:
                note.path = route_template(request)
                note.write(session, outcome="ok")
        if note is not None:
            note.written = True


def get_store(request: Request) -> ObjectStore:
    store: ObjectStore = request.app.state.store
    return store


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]  # committed before the response is sent
StoreDep = Annotated[ObjectStore, Depends(get_store)]


def get_principal(request: Request) -> Principal:
    """The caller, authenticated by `AccessMiddleware` before the request was routed."""
    principal = getattr(request.state, "principal", None)
    if not isinstance(principal, Principal):
        raise Problem(401, "Authentication required", "This route needs a principal.")
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


def refusal(request: Request, status: int, title: str, detail: str) -> Problem:
    """A refusal to raise, its reason noted for the request's audit entry (`detail["reason"]`)."""
    note = note_of(request)
    if note is not None:
        note.detail["reason"] = detail
    return Problem(status, title, detail)


def require_roles(*roles: str) -> Any:
    """A dependency that lets only principals holding one of `roles` through: the principal, or a 403 whose
    reason goes to the request's audit entry."""

    def check(request: Request, principal: CurrentPrincipal) -> Principal:
        if not principal.has(*roles):
            raise refusal(request, 403, "Not permitted", f"This needs one of the roles: {', '.join(roles)}.")
        return principal

    return Depends(check)


def visible_case_ids(session: Session, principal: Principal) -> list[str] | None:
    """The cases this principal may see: None for all (supervisors), else its assignments."""
    if principal.has(*ALL_CASES_ROLES):
        return None
    if not principal.has(*CASE_ROLES):
        return []
    return sorted(accounts.assigned_case_ids(session, username=principal.name))


def case_visible(session: Session, principal: Principal, case_id: str) -> bool:
    if principal.has(*ALL_CASES_ROLES):
        return True
    return principal.has(*CASE_ROLES) and accounts.is_assigned(session, case_id=case_id, username=principal.name)


def hidden_cases(session: Session, principal: Principal, case_ids: Sequence[str]) -> list[str]:
    """Those of `case_ids` that do not exist or that this principal may not see, in the order given."""
    wanted = list(dict.fromkeys(case_ids))
    existing = set(session.scalars(select(Case.id).where(Case.id.in_(wanted)))) if wanted else set()
    visible = visible_case_ids(session, principal)
    allowed = existing if visible is None else existing & set(visible)
    return [case_id for case_id in wanted if case_id not in allowed]


def visible_case_or_404(request: Request, session: Session, principal: Principal, case_id: str) -> Case:
    """The case, noted in the request's audit entry; 404 (the same as a missing case) when hidden from the caller."""
    case = records.get_case(session, case_id=case_id)
    if case is None or not case_visible(session, principal, case.id):
        raise Problem(404, "Case not found", f"There is no case {case_id}.")
    note = note_of(request)
    if note is not None:
        note.case_id = case.id
    return case


def load_case(request: Request, session: SessionDep, principal: CurrentPrincipal,
              case_id: Annotated[str, Path(max_length=64)]) -> Case:
    return visible_case_or_404(request, session, principal, case_id)


def visible_evidence(session: Session, principal: Principal, evidence_id: str) -> Evidence | None:
    """The evidence item, or None when it does not exist or its case is hidden from this principal."""
    evidence = records.get_evidence(session, evidence_id=evidence_id)
    if evidence is None or not case_visible(session, principal, evidence.case_id):
        return None
    return evidence


def load_evidence(request: Request, session: SessionDep, principal: CurrentPrincipal,
                  evidence_id: Annotated[str, Path(max_length=64)]) -> Evidence:
    evidence = visible_evidence(session, principal, evidence_id)
    if evidence is None:
        raise Problem(404, "Evidence not found", f"There is no evidence item {evidence_id}.")
    note = note_of(request)
    if note is not None:
        note.case_id, note.resource_id = evidence.case_id, evidence.id
    return evidence


CurrentCase = Annotated[Case, Depends(load_case)]
CurrentEvidence = Annotated[Evidence, Depends(load_evidence)]


@dataclass(frozen=True)
class Purpose:
    """Why data across cases is consulted: a case the principal works on, and a justification."""

    case_id: str
    case_reference: str
    justification: str


def require_purpose(
        request: Request, session: SessionDep, principal: CurrentPrincipal,
        purpose_case: Annotated[str | None, Header(alias=PURPOSE_CASE_HEADER, max_length=64)] = None,
        justification: Annotated[str | None, Header(alias=PURPOSE_JUSTIFICATION_HEADER, max_length=1000)] = None,
) -> Purpose:
    """The stated purpose of a consultation across cases, checked against the principal's assignments."""
    if not purpose_case or not justification or len(justification.strip()) < MIN_JUSTIFICATION:
        raise Problem(403, "A stated purpose is required",
                      f"Searching data across cases needs the {PURPOSE_CASE_HEADER} header (the reference of a "
                      f"case you work on) and {PURPOSE_JUSTIFICATION_HEADER} (why, at least {MIN_JUSTIFICATION} "
                      "characters).")
    case = session.scalar(select(Case).where(Case.reference == purpose_case))
    if case is None or not case_visible(session, principal, case.id):
        raise Problem(403, "Purpose not accepted",
                      f"{purpose_case!r} is not a case you are assigned to; a purpose must name one.")
    note = note_of(request)
    if note is not None:
        note.purpose_case, note.justification = case.reference, justification.strip()
        note.case_id = note.case_id or case.id
    return Purpose(case.id, case.reference, justification.strip())


PurposeDep = Annotated[Purpose, Depends(require_purpose)]


def minimise(principal: Principal, data: dict[str, Any]) -> dict[str, Any]:
    """A finding's data as this role may see it: biometric vectors and minutiae only for examiners."""
    if principal.has(*BIOMETRIC_ROLES):
        return data
    return _without(data, BIOMETRIC_KEYS)


BIOMETRIC_KEYS = frozenset({"embedding", "vector", "minutiae_points"})


def _without(value: Any, keys: frozenset[str]) -> Any:
    if isinstance(value, dict):
        return {k: ("withheld" if k in keys and v is not None else _without(v, keys)) for k, v in value.items()}
    if isinstance(value, list):
        return [_without(item, keys) for item in value]
    return value


def findings_for(request: Request, principal: Principal, findings: Sequence[Finding]) -> list[dict[str, Any]]:
    """Findings as this principal may see them; the data subjects they name are noted for the audit log."""
    note_persons(request, [f.label for f in findings if f.kind in PERSON_KINDS and f.label])
    return [{**_finding_fields(f), "data": minimise(principal, f.data)} for f in findings]


PERSON_KINDS = frozenset({"entity.national_number"})  # findings whose label identifies a person


def _finding_fields(finding: Finding) -> dict[str, Any]:
    return {"id": finding.id, "evidence_id": finding.evidence_id, "case_id": finding.case_id,
            "run_id": finding.run_id, "analyzer": finding.analyzer, "kind": finding.kind, "label": finding.label,
            "confidence": finding.confidence, "created_at": finding.created_at}
