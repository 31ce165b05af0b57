"""Keyword-only data access for cases, evidence, custody, analysis and findings."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.tables import AnalysisRun, Case, CustodyEvent, Evidence, Finding, Job


class DuplicateReference(Exception):
    """A case with this reference exists already."""


def create_case(session: Session, *, reference: str, title: str, description: str, created_by: str) -> Case:
    if session.scalar(select(Case.id).where(Case.reference == reference)) is not None:
        raise DuplicateReference(reference)
    case = Case(reference=reference, title=title, description=description, created_by=created_by)
    session.add(case)
    session.flush()
    return case


def get_case(session: Session, *, case_id: str) -> Case | None:
    return session.get(Case, case_id)


def list_cases(session: Session, *, case_ids: Sequence[str] | None = None, offset: int = 0,
               limit: int = 100) -> Sequence[Case]:
    """Cases, newest first; only those in `case_ids` when it is given."""
    query = select(Case)
    if case_ids is not None:
        query = query.where(Case.id.in_(list(case_ids)))
    return session.scalars(query.order_by(Case.created_at.desc(), Case.id).offset(offset).limit(limit)).all()


def get_evidence(session: Session, *, evidence_id: str) -> Evidence | None:
    return session.get(Evidence, evidence_id)


def list_evidence(session: Session, *, case_id: str, offset: int = 0, limit: int = 100) -> Sequence[Evidence]:
    return session.scalars(select(Evidence).where(Evidence.case_id == case_id)
                           .order_by(Evidence.received_at, Evidence.id).offset(offset).limit(limit)).all()


def custody_of(session: Session, *, evidence_id: str) -> Sequence[CustodyEvent]:
    return session.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == evidence_id)
                           .order_by(CustodyEvent.id)).all()


def add_custody(session: Session, *, evidence_id: str, actor: str, action: str, detail: dict[str, object]) -> None:
    session.add(CustodyEvent(evidence_id=evidence_id, actor=actor, action=action, detail=detail))


def jobs_of(session: Session, *, evidence_id: str) -> Sequence[Job]:
    return session.scalars(select(Job).where(Job.evidence_id == evidence_id, Job.kind == "analysis")
                           .order_by(Job.id)).all()


def runs_of(session: Session, *, evidence_id: str) -> Sequence[AnalysisRun]:
    return session.scalars(select(AnalysisRun).where(AnalysisRun.evidence_id == evidence_id)
                           .order_by(AnalysisRun.finished_at, AnalysisRun.id)).all()


def plan_pending(session: Session, *, evidence_id: str) -> bool:
    """True while the evidence item waits for its analysis to be planned."""
    return session.scalar(select(func.count()).select_from(Job).where(
        Job.evidence_id == evidence_id, Job.kind == "plan", Job.state.in_(("queued", "running")))) != 0


def list_findings(session: Session, *, evidence_id: str | None = None, case_id: str | None = None,
                  kind: str | None = None, offset: int = 0, limit: int = 500) -> Sequence[Finding]:
    """Findings, oldest first; `kind` is one kind, or a prefix ending in ".*" ("hash.*"); nothing else is a wildcard
    (`%` and `_` are escaped, so "%.*" and "_bjects.*" match only kinds that begin with those very characters)."""
    query = select(Finding)
    if evidence_id is not None:
        query = query.where(Finding.evidence_id == evidence_id)
    if case_id is not None:
        query = query.where(Finding.case_id == case_id)
    if kind:
        query = query.where(Finding.kind == kind) if not kind.endswith(".*") else \
            query.where(Finding.kind.startswith(kind[:-1], autoescape=True))
    return session.scalars(query.order_by(Finding.created_at, Finding.id).offset(offset).limit(limit)).all()


def get_finding(session: Session, *, finding_id: str) -> Finding | None:
    return session.get(Finding, finding_id)


def failed_intake(session: Session, *, limit: int = 100) -> Sequence[Job]:
    """Objects in the bucket that could not be taken in, with the reason (they stay in the bucket)."""
    return session.scalars(select(Job).where(Job.kind == "intake", Job.state == "failed")
                           .order_by(Job.id.desc()).limit(limit)).all()
