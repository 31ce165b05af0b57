"""Recording analysis: every attempt ends in an AnalysisRun, and findings are written with their run, once.

The storage end of the messages to and from analyzer actors (`storage.messages`): `evidence_message` reads the
rows an actor needs into an `EvidenceMessage`, and `record_outcome` turns the `RunOutcome` it answers into rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from storage import jobs, matching, textsearch
from storage.messages import EvidenceMessage, Held, HeldTemplate, HeldText, RunOutcome, UpstreamFinding
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


def evidence_message(session: Session, *, evidence_id: str, requires: Sequence[str],
                     pages: list[int] | None = None) -> EvidenceMessage:
    """The evidence item as an analyzer actor receives it, with the findings of the analyzers it `requires`."""
    evidence = session.get_one(Evidence, evidence_id)
    return EvidenceMessage(id=evidence.id, bucket=evidence.bucket, object_key=evidence.object_key,
                           version_id=evidence.version_id, sha256=evidence.sha256, media_type=evidence.media_type,
                           original_filename=evidence.original_filename, declared_kind=evidence.declared_kind,
                           declared_ppi=evidence.declared_ppi,
                           upstream=upstream_findings(session, evidence_id=evidence.id, analyzers=requires),
                           pages=[int(page) for page in pages] if pages else None)


def upstream_findings(session: Session, *, evidence_id: str,
                      analyzers: Sequence[str]) -> dict[str, list[UpstreamFinding]]:
    """The findings on an item of each of `analyzers` that succeeded (absent: failed or not run), oldest first."""
    upstream: dict[str, list[UpstreamFinding]] = {}
    for need in analyzers:
        succeeded = session.scalar(select(Job.id).where(
            Job.evidence_id == evidence_id, Job.kind == "analysis", Job.analyzer == need,
            Job.state == "succeeded").limit(1))
        if succeeded is None:
            continue
        rows = session.scalars(select(Finding).where(Finding.evidence_id == evidence_id,
                                                     Finding.analyzer == need).order_by(Finding.id))
        upstream[need] = [UpstreamFinding(kind=row.kind, label=row.label, confidence=row.confidence, data=row.data)
                          for row in rows]
    return upstream


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
            finding = Finding(id=new_id(), evidence_id=evidence.id, case_id=evidence.case_id, run_id=run.id,
                              analyzer=outcome.analyzer, kind=item.kind, label=item.label,
                              confidence=item.confidence, data=dict(item.data))
            session.add(finding)
            _hold(session, finding, item.held)
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


def _hold(session: Session, finding: Finding, held: Held | None) -> None:
    """Index what a finding hands over: page text into full-text search, templates into the matcher's gallery."""
    if held is None:
        return
    session.flush()
    if isinstance(held, HeldText):
        textsearch.index_page(session, evidence_id=finding.evidence_id, case_id=finding.case_id,
                              finding_id=finding.id, page=held.page, language=held.language, engine=held.engine,
                              content=held.text)
    elif isinstance(held, HeldTemplate):
        matching.add_template(session, evidence_id=finding.evidence_id, case_id=finding.case_id,
                              finding_id=finding.id, iso=held.iso, minutiae=held.minutiae, nfiq2=held.nfiq2)
