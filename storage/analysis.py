"""Recording analysis: every attempt ends in an AnalysisRun, and findings are written with their run, once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete
from sqlalchemy.orm import Session

from storage import jobs
from storage.schema import AnalysisRun, CustodyEvent, Evidence, Finding, Job


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


def record_outcome(session: Session, *, job_id: int, owner: str, attempt: int, outcome: RunOutcome,
                   retry_in: float | None = None) -> AnalysisRun | None:
    """Close one attempt: record its run and, on success, its findings, fenced by the job lease.

    Returns None (recording nothing) when this owner no longer holds the lease, so a late or duplicate
    result can never add findings twice.
    """
    job = session.get_one(Job, job_id)
    evidence = session.get_one(Evidence, job.evidence_id)
    final_state = "succeeded" if outcome.status == "succeeded" else "failed"
    if not jobs.finish(session, job_id=job_id, owner=owner, state=final_state, error=outcome.error,
                       retry_in=retry_in if final_state == "failed" else None):
        return None
    run = AnalysisRun(evidence_id=evidence.id, job_id=job_id, analyzer=outcome.analyzer,
                      analyzer_version=outcome.analyzer_version, models=outcome.models, status=outcome.status,
                      error=outcome.error, attempt=attempt, worker=outcome.worker, started_at=outcome.started_at,
                      finished_at=outcome.finished_at or dt.datetime.now(dt.UTC), duration_ms=outcome.duration_ms)
    session.add(run)
    session.flush()
    if outcome.status == "succeeded":
        # Only one success per (evidence, analyzer) can hold the lease, but be strict anyway.
        session.execute(delete(Finding).where(Finding.evidence_id == evidence.id,
                                              Finding.analyzer == outcome.analyzer))
        for item in outcome.findings:
            session.add(Finding(evidence_id=evidence.id, case_id=evidence.case_id, run_id=run.id,
                                analyzer=outcome.analyzer, kind=item["kind"], label=item.get("label"),
                                confidence=item.get("confidence"), data=item.get("data", {})))
    session.add(CustodyEvent(evidence_id=evidence.id, actor=outcome.worker or "locard-worker",
                             action="analysed" if outcome.status == "succeeded" else "analysis_failed",
                             detail={"analyzer": outcome.analyzer, "version": outcome.analyzer_version,
                                     "run_id": run.id, "attempt": attempt, "error": outcome.error,
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

