"""Recording analysis: every attempt ends in an AnalysisRun, and findings are written with their run, once."""

from __future__ import annotations

import base64
import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage import jobs, matching, textsearch
from storage.tables import (
    AnalysisRun,
    CustodyEvent,
    Evidence,
    EvidenceText,
    Finding,
    FingerprintTemplate,
    Job,
    new_id,
)

# A finding's data may carry, under this key, material that is held in its own table rather than in the finding:
# page text for full-text search ({"text": ...}), a fingerprint template ({"iso_base64": ...}).
HELD_KEY = "_held"


@dataclass
class RunOutcome:
    """What one analyzer attempt reported (plain data, as it crosses process boundaries)."""

    analyzer: str
    analyzer_version: str
    status: str  # "succeeded" or "failed"
    error: str | None = None
    retryable: bool = False
    models: dict[str, Any] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    worker: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    duration_ms: float | None = None
    recycle: bool = False  # the worker asks to be replaced (over its memory budget, or still large after the job)
    page_count: int | None = None  # pages of the document (paged analyzers)
    pages: list[int] | None = None  # [first, last]: the page range this run read


def record_outcome(session: Session, *, job_id: int, owner: str, attempt: int, outcome: RunOutcome,
                   retry_in: float | None = None, payload: dict[str, Any] | None = None) -> AnalysisRun | None:
    """Close one attempt: record its run and, on success, its findings, fenced by the job lease.

    Returns None (recording nothing) when this owner no longer holds the lease, so a late or duplicate
    result can never add findings twice. `payload`, when given, replaces the job's (a retry's bookkeeping).
    A success replaces the analyzer's earlier findings on the item; a later page range of a document (one job
    per range) adds to the ranges before it and replaces only what its own job recorded.
    """
    job = session.get_one(Job, job_id)
    evidence = session.get_one(Evidence, job.evidence_id)
    final_state = "succeeded" if outcome.status == "succeeded" else "failed"
    if not jobs.finish(session, job_id=job_id, owner=owner, state=final_state, error=outcome.error,
                       retry_in=retry_in if final_state == "failed" else None, payload=payload):
        return None
    run = AnalysisRun(evidence_id=evidence.id, job_id=job_id, analyzer=outcome.analyzer,
                      analyzer_version=outcome.analyzer_version, models=outcome.models, status=outcome.status,
                      error=outcome.error, attempt=attempt, worker=outcome.worker, started_at=outcome.started_at,
                      finished_at=outcome.finished_at or dt.datetime.now(dt.UTC), duration_ms=outcome.duration_ms)
    session.add(run)
    session.flush()
    if outcome.status == "succeeded":
        # Only one success per job can hold the lease, but be strict anyway.
        stale = select(Finding.id).where(Finding.evidence_id == evidence.id, Finding.analyzer == outcome.analyzer)
        if outcome.pages is not None and outcome.pages[0] > 1:
            stale = stale.where(Finding.run_id.in_(select(AnalysisRun.id).where(AnalysisRun.job_id == job_id)))
        stale_ids = list(session.scalars(stale))
        session.execute(delete(EvidenceText).where(EvidenceText.finding_id.in_(stale_ids)))
        session.execute(delete(FingerprintTemplate).where(FingerprintTemplate.finding_id.in_(stale_ids)))
        session.execute(delete(Finding).where(Finding.id.in_(stale_ids)))
        session.flush()
        for item in outcome.findings:
            data = dict(item.get("data", {}))
            held = data.pop(HELD_KEY, None)
            finding = Finding(id=new_id(), evidence_id=evidence.id, case_id=evidence.case_id, run_id=run.id,
                              analyzer=outcome.analyzer, kind=item["kind"], label=item.get("label"),
                              confidence=item.get("confidence"), data=data)
            session.add(finding)
            _hold(session, finding, held)
    session.add(CustodyEvent(evidence_id=evidence.id, actor=outcome.worker or "locard-worker",
                             action="analysed" if outcome.status == "succeeded" else "analysis_failed",
                             detail={"analyzer": outcome.analyzer, "version": outcome.analyzer_version,
                                     "run_id": run.id, "attempt": attempt, "error": outcome.error,
                                     **({"pages": outcome.pages} if outcome.pages else {}),
                                     "findings": len(outcome.findings) if outcome.status == "succeeded" else 0,
                                     "will_retry": retry_in is not None and final_state == "failed"}))
    return run


def record_abandoned(session: Session, job: Job, *, reason: str) -> AnalysisRun | None:
    """Close an attempt whose worker vanished (lease ran out): a failed run, and a retry if attempts remain."""
    if job.kind != "analysis" or job.evidence_id is None:
        jobs.release_expired(session, job, reason=reason)
        return None
    failed = jobs.release_expired(session, job, reason=reason)
    run = AnalysisRun(evidence_id=job.evidence_id, job_id=job.id, analyzer=job.analyzer or "?",
                      analyzer_version="unknown", status="failed", attempt=job.attempts, worker=job.lease_owner,
                      error=f"{reason}" + ("" if failed else "; the job was queued again"))
    session.add(run)
    session.flush()
    session.add(CustodyEvent(evidence_id=job.evidence_id, actor="locard-dispatcher", action="analysis_failed",
                             detail={"analyzer": job.analyzer, "run_id": run.id, "attempt": job.attempts,
                                     "error": reason, "will_retry": not failed}))
    return run



def _hold(session: Session, finding: Finding, held: dict[str, Any] | None) -> None:
    """Index what a finding hands over: page text into full-text search, templates into the matcher's gallery."""
    if not held:
        return
    session.flush()
    if "text" in held:
        textsearch.index_page(session, evidence_id=finding.evidence_id, case_id=finding.case_id,
                              finding_id=finding.id, page=int(held.get("page", 1)), language=held.get("language"),
                              engine=str(held.get("engine", "unknown")), content=str(held["text"]))
    if "iso_base64" in held:
        matching.add_template(session, evidence_id=finding.evidence_id, case_id=finding.case_id,
                              finding_id=finding.id, iso=base64.b64decode(held["iso_base64"]),
                              minutiae=int(held.get("minutiae", 0)), nfiq2=held.get("nfiq2"))
