"""The dispatcher's books: how each attempt it leased ends in the record store, and what that end makes ready.

Every attempt ends in a recorded run (`storage.analysis.record_outcome`), fenced by the lease, so a late or
duplicate answer records nothing. A retryable failure is queued again after a backoff that doubles with each
attempt spent. A try whose worker died or was restarting is not charged as an attempt: the job waits out the
restart (growing backoff) and fails only after `worker_max_losses` such tries. An attempt whose lease ran out
(its dispatcher or Ray died) is closed as a failed run and queued again, within `max_attempts`. Each end queues
the next page range of a document and the analyzers that were waiting for this one (`workers.planning`); the
end of an item's last analysis queues its cross-matching (`workers.crossmatch`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import analysis, jobs, matching
from storage.db import transaction
from storage.messages import RunOutcome
from storage.searches import SEARCH_JOB
from storage.settings import Settings
from storage.tables import Evidence, Job, utcnow
from workers import crossmatch
from workers.analyzers.base import Analyzer
from workers.planning import analyzers_to_queue, next_range, ready_to_crossmatch

log = logging.getLogger("locard.dispatcher")
DEATHS_KEY = "worker_deaths"  # in a job's payload: tries on which its worker died or was restarting


def failed(job: jobs.ClaimedJob, error: str, *, retryable: bool = False) -> RunOutcome:
    """A failed outcome recorded by the dispatcher (the worker could not report one)."""
    return RunOutcome(analyzer=job.analyzer or "?", analyzer_version="unknown", status="failed", error=error,
                      retryable=retryable)


def plan(session: Session, *, evidence: Evidence, analyzers: Mapping[str, type[Analyzer]],
         max_attempts: int) -> list[str]:
    """Enqueue the analyzers `workers.planning` says are ready for the evidence; returns those newly queued.
    Once none is left to run, the item's cross-matching is queued (once for the same analysis runs).

    Called when the evidence is planned and whenever one of its analyses ends, in the same transaction.
    """
    states = [(analyzer or "", state) for analyzer, state in session.execute(select(Job.analyzer, Job.state).where(
        Job.evidence_id == evidence.id, Job.kind == "analysis")).tuples()]
    planned = []
    for name in analyzers_to_queue(analyzers, media_type=evidence.media_type, declared_kind=evidence.declared_kind,
                                   job_states=states):
        _, new = jobs.enqueue(session, kind="analysis", dedupe_key=f"analysis:{evidence.id}:{name}",
                              evidence_id=evidence.id, analyzer=name, max_attempts=max_attempts)
        if new:
            planned.append(name)
    if not planned and ready_to_crossmatch(states):
        crossmatch.enqueue(session, evidence_id=evidence.id, max_attempts=max_attempts)
    return planned


class Bookkeeper:
    """Closes, renews and reaps the attempts that one dispatcher (`owner`) leased."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session], analyzers: Mapping[str, type[Analyzer]],
                 *, owner: str) -> None:
        self.settings = settings
        self.factory = factory
        self.analyzers = analyzers
        self.owner = owner

    def plan(self, session: Session, evidence_id: str) -> list[str]:
        """Enqueue what is ready to run on the evidence (see `plan`)."""
        return plan(session, evidence=session.get_one(Evidence, evidence_id), analyzers=self.analyzers,
                    max_attempts=self.settings.job_max_attempts)

    def close(self, job: jobs.ClaimedJob, outcome: RunOutcome, *, retry_in: float | None = None,
              payload: dict[str, Any] | None = None) -> None:
        """Record the attempt's run; a retryable failure with attempts left is queued again after a backoff."""
        if retry_in is None and outcome.retryable and job.attempts_spent < job.max_attempts:
            retry_in = 2.0**job.attempts_spent
        with transaction(self.factory) as session:
            run = analysis.record_outcome(session, job_id=job.id, owner=self.owner, attempt=job.attempt,
                                          outcome=outcome, retry_in=retry_in, payload=payload)
            if run is not None and job.evidence_id is not None:
                if retry_in is None:
                    self._next_pages(session, job, outcome)
                self.plan(session, job.evidence_id)
        if run is None:
            log.warning("job %d: lease lost before its result came back; result discarded", job.id)

    def close_lost(self, job: jobs.ClaimedJob, reason: str, *, counted: bool = True) -> None:
        """A try that ended because the worker was lost: queued again after the restart, not as an attempt.

        `counted` losses (the worker died or was restarting while it held this job) are bounded by
        `worker_max_losses`, so a file that kills its worker every time still ends in a failed run.
        """
        deaths = int(job.payload.get(DEATHS_KEY, 0)) + int(counted)
        if counted and deaths >= self.settings.worker_max_losses:
            self.close(job, failed(job, f"the worker died {deaths} times on this item; last: {reason}"))
            return
        # Ray restarts a dead actor, which reloads its models: wait that long, longer each time it happens again.
        retry_in = self.settings.worker_restart_seconds * 2.0 ** (deaths - 1) if counted else 0.0
        payload = {**job.payload, jobs.LOSSES_KEY: int(job.payload.get(jobs.LOSSES_KEY, 0)) + 1, DEATHS_KEY: deaths}
        outcome = failed(job, f"{reason}; queued again (not counted as an attempt)", retryable=True)
        self.close(job, outcome, retry_in=retry_in, payload=payload)

    def _next_pages(self, session: Session, job: jobs.ClaimedJob, outcome: RunOutcome) -> None:
        """Queue the next page range of a document once a range has ended (behind the work already waiting)."""
        total = outcome.page_count or job.payload.get("page_count")
        after = next_range(outcome.pages or job.payload.get("pages"), total, self.settings)
        if after is not None and total and job.evidence_id is not None:
            jobs.enqueue(session, kind="analysis", evidence_id=job.evidence_id, analyzer=job.analyzer,
                         dedupe_key=f"analysis:{job.evidence_id}:{job.analyzer}:p{after.first}-{after.last}",
                         payload={"pages": [after.first, after.last], "page_count": int(total)},
                         max_attempts=job.max_attempts)

    def renew(self, job_ids: Sequence[int]) -> None:
        """Extend the leases of the attempts in flight."""
        with transaction(self.factory) as session:
            jobs.renew(session, owner=self.owner, job_ids=job_ids, lease_seconds=self.settings.job_lease_seconds)

    def reap_expired(self) -> int:
        """Close attempts whose lease ran out: their worker or dispatcher stopped mid-analysis."""
        with transaction(self.factory) as session:
            stale = jobs.expired(session, now=utcnow())
            for job in stale:
                if job.kind in ("match", SEARCH_JOB) and job.attempts >= job.max_attempts:
                    matching.finish_request(session, request_id=job.payload["request_id"], result=None,
                                            error="the matcher stopped answering; the request was abandoned")
                analysis.record_abandoned(
                    session, job, reason=f"attempt {job.attempts} abandoned: its lease ran out "
                                         f"(holder {job.lease_owner} stopped mid-work)")
                if job.kind == "analysis" and job.evidence_id is not None:
                    self.plan(session, job.evidence_id)
        return len(stale)
