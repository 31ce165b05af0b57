"""The durable job queue: nothing is lost while workers are down, and a dead worker's lease runs out.

Claiming uses a conditional UPDATE (compare-and-set on state and lease), which is safe on both SQLite and
PostgreSQL with any number of dispatchers. Completing a job is fenced by the lease owner, so a worker whose
lease was taken over can never record a second result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage.tables import Job, utcnow

TERMINAL = ("succeeded", "failed")
# In a job's payload: how many of its tries ended because the worker was lost or restarting, not by the analyzer.
# Every try counts in `attempts` (and has its run); these are not charged against `max_attempts`.
LOSSES_KEY = "worker_losses"


@dataclass(frozen=True)
class ClaimedJob:
    """A snapshot of a job that this owner now holds the lease on."""

    id: int
    kind: str
    evidence_id: str | None
    analyzer: str | None
    payload: dict[str, Any]
    attempt: int
    max_attempts: int

    @property
    def attempts_spent(self) -> int:
        """Attempts charged against `max_attempts`: tries whose worker was lost are not (see `LOSSES_KEY`)."""
        return self.attempt - int(self.payload.get(LOSSES_KEY, 0))


def enqueue(session: Session, *, kind: str, dedupe_key: str, evidence_id: str | None = None,
            analyzer: str | None = None, payload: dict[str, Any] | None = None,
            max_attempts: int = 3) -> tuple[Job, bool]:
    """Add a job unless one with the same dedupe key exists; returns the job and whether it is new."""
    existing = session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))
    if existing is not None:
        return existing, False
    job = Job(kind=kind, dedupe_key=dedupe_key, evidence_id=evidence_id, analyzer=analyzer,
              payload=payload or {}, max_attempts=max_attempts)
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError:  # another process enqueued the same work between our SELECT and INSERT
        found = session.scalar(select(Job).where(Job.dedupe_key == dedupe_key))
        assert found is not None
        return found, False
    return job, True


def claim(factory: sessionmaker[Session], *, kinds: Sequence[str], owner: str, lease_seconds: float,
          limit: int) -> list[ClaimedJob]:
    """Lease up to `limit` queued jobs of the given kinds to `owner`, oldest first."""
    now = utcnow()
    claimed: list[ClaimedJob] = []
    with factory() as session:
        with session.begin():
            candidates = session.scalars(
                select(Job.id).where(Job.kind.in_(kinds), Job.state == "queued", Job.available_at <= now)
                .order_by(Job.id).limit(limit * 2)).all()
        for job_id in candidates:
            if len(claimed) >= limit:
                break
            with session.begin():
                result = session.execute(
                    update(Job).where(Job.id == job_id, Job.state == "queued")
                    .values(state="running", lease_owner=owner, attempts=Job.attempts + 1,
                            lease_expires_at=now + dt.timedelta(seconds=lease_seconds), updated_at=now))
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                job = session.get_one(Job, job_id, populate_existing=True)
                claimed.append(ClaimedJob(job.id, job.kind, job.evidence_id, job.analyzer, dict(job.payload),
                                          job.attempts, job.max_attempts))
    return claimed


def renew(session: Session, *, owner: str, job_ids: Sequence[int], lease_seconds: float) -> None:
    """Extend the leases this owner holds."""
    if job_ids:
        session.execute(update(Job).where(Job.id.in_(job_ids), Job.lease_owner == owner, Job.state == "running")
                        .values(lease_expires_at=utcnow() + dt.timedelta(seconds=lease_seconds)))


def finish(session: Session, *, job_id: int, owner: str, state: str, error: str | None = None,
           retry_in: float | None = None, payload: dict[str, Any] | None = None) -> bool:
    """End this owner's attempt: `state` is terminal, or `retry_in` re-queues the job. False if the lease was lost.

    `payload`, when given, replaces the job's payload (bookkeeping of retries).
    """
    values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None, "last_error": error,
                              "updated_at": utcnow()}
    if payload is not None:
        values["payload"] = payload
    if retry_in is not None:
        values.update(state="queued", available_at=utcnow() + dt.timedelta(seconds=retry_in))
    else:
        if state not in TERMINAL:
            raise ValueError(f"not a terminal state: {state}")
        values["state"] = state
    result = session.execute(update(Job).where(Job.id == job_id, Job.lease_owner == owner, Job.state == "running")
                             .values(**values))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def expired(session: Session, *, now: dt.datetime | None = None) -> list[Job]:
    """Running jobs whose lease has run out (their worker or dispatcher died)."""
    now = now or utcnow()
    return list(session.scalars(select(Job).where(Job.state == "running", Job.lease_expires_at < now)
                                .with_for_update(skip_locked=True)))


def release_expired(session: Session, job: Job, *, reason: str) -> bool:
    """Re-queue an abandoned job, or fail it once its attempts are spent. Returns True if it was failed."""
    failed = job.attempts - int((job.payload or {}).get(LOSSES_KEY, 0)) >= job.max_attempts
    stmt = update(Job).where(Job.id == job.id, Job.state == "running", Job.lease_owner == job.lease_owner)
    values: dict[str, Any] = {"lease_owner": None, "lease_expires_at": None, "last_error": reason,
                              "updated_at": utcnow(), "state": "failed" if failed else "queued"}
    session.execute(stmt.values(**values))
    return failed

