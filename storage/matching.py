"""Fingerprint templates held for matching, and match requests (1:1 verification, 1:N search) with their results.

A request is recorded with a durable job of kind "match"; the dispatcher hands it to a matcher worker and
records the result here, so a request survives restarts like any analysis.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import jobs
from storage.tables import Case, Evidence, FingerprintTemplate, MatchRequest, utcnow

VERIFICATION = "fingerprint_verification"
SEARCH = "fingerprint_search"


class NoTemplate(Exception):
    """The evidence item has no fingerprint template (not analysed yet, or not a usable print)."""


def add_template(session: Session, *, evidence_id: str, case_id: str, finding_id: str, iso: bytes, minutiae: int,
                 nfiq2: int | None) -> None:
    session.add(FingerprintTemplate(evidence_id=evidence_id, case_id=case_id, finding_id=finding_id, iso=iso,
                                    minutiae=minutiae, nfiq2=nfiq2))


def template_of(session: Session, *, evidence_id: str) -> FingerprintTemplate | None:
    """The newest template of an evidence item (one per item: a new analysis replaces its findings)."""
    return session.scalar(select(FingerprintTemplate).where(FingerprintTemplate.evidence_id == evidence_id)
                          .order_by(FingerprintTemplate.id.desc()).limit(1))


def templates_after(session: Session, *, after_id: int, limit: int = 10_000) -> Sequence[FingerprintTemplate]:
    """Templates added after `after_id`, oldest first (how a matcher's gallery catches up)."""
    return session.scalars(select(FingerprintTemplate).where(FingerprintTemplate.id > after_id)
                           .order_by(FingerprintTemplate.id).limit(limit)).all()


def live_template_ids(session: Session, *, ids: Sequence[int]) -> set[int]:
    """Which of these template ids still exist (templates go when their evidence is analysed again)."""
    if not ids:
        return set()
    return set(session.scalars(select(FingerprintTemplate.id).where(FingerprintTemplate.id.in_(list(ids)))))


def request_match(session: Session, *, kind: str, probe: Evidence, candidate: Evidence | None,
                  parameters: dict[str, Any], requested_by: str, max_attempts: int = 3) -> MatchRequest:
    """Record a verification or search request and queue it for the matcher workers."""
    if kind not in (VERIFICATION, SEARCH):
        raise ValueError(f"unknown match kind {kind!r}")
    if template_of(session, evidence_id=probe.id) is None:
        raise NoTemplate(probe.id)
    if candidate is not None and template_of(session, evidence_id=candidate.id) is None:
        raise NoTemplate(candidate.id)
    request = MatchRequest(kind=kind, probe_evidence_id=probe.id,
                           candidate_evidence_id=candidate.id if candidate else None, parameters=parameters,
                           requested_by=requested_by)
    session.add(request)
    session.flush()
    jobs.enqueue(session, kind="match", dedupe_key=f"match:{request.id}", evidence_id=probe.id,
                 payload={"request_id": request.id}, max_attempts=max_attempts)
    return request


def get_request(session: Session, *, request_id: str) -> MatchRequest | None:
    return session.get(MatchRequest, request_id)


def mark_running(session: Session, *, request_id: str) -> None:
    request = session.get_one(MatchRequest, request_id)
    if request.status == "queued":
        request.status = "running"


def finish_request(session: Session, *, request_id: str, result: dict[str, Any] | None, error: str | None) -> None:
    """Close a request with its result, or as failed with the reason."""
    request = session.get_one(MatchRequest, request_id)
    request.status = "failed" if error else "succeeded"
    request.result = result or {}
    request.error = error
    request.finished_at = utcnow()


def describe_templates(session: Session, *, template_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Evidence, case and quality of each template, for a search result."""
    if not template_ids:
        return {}
    rows = session.execute(
        select(FingerprintTemplate.id, FingerprintTemplate.evidence_id, FingerprintTemplate.case_id,
               FingerprintTemplate.minutiae, FingerprintTemplate.nfiq2, Case.reference, Evidence.original_filename)
        .join(Case, Case.id == FingerprintTemplate.case_id)
        .join(Evidence, Evidence.id == FingerprintTemplate.evidence_id)
        .where(FingerprintTemplate.id.in_(list(template_ids)))).all()
    return {row[0]: {"evidence_id": row[1], "case_id": row[2], "minutiae": row[3], "nfiq2": row[4],
                     "case_reference": row[5], "filename": row[6]} for row in rows}


def result_for_cases(result: dict[str, Any], *, case_ids: Collection[str] | None) -> dict[str, Any]:
    """A search result with only the candidates in `case_ids` (None: all), ranked again from 1."""
    candidates = result.get("candidates")
    if case_ids is None or not isinstance(candidates, list):
        return dict(result)
    allowed = set(case_ids)
    kept = [dict(entry) for entry in candidates if isinstance(entry, dict) and entry.get("case_id") in allowed]
    for rank, entry in enumerate(kept, start=1):
        entry["rank"] = rank
    return {**result, "candidates": kept}


def result_case_ids(result: dict[str, Any]) -> list[str]:
    """The cases a search result's candidates belong to."""
    candidates = result.get("candidates")
    if not isinstance(candidates, list):
        return []
    return sorted({str(entry["case_id"]) for entry in candidates if isinstance(entry, dict) and "case_id" in entry})
