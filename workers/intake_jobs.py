"""Intake on the worker side: the bucket sweep, and intake jobs turned into evidence (run in the dispatcher).

An object that reached the evidence bucket without the API (a direct upload, a missed notification) is found by
the sweep and queued as an intake job; taking the job records it as evidence, or refuses it with a reason. A
failure that the same object would hit again (too large, gone) is not retried.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session, sessionmaker

from storage import intake, jobs
from storage.db import transaction
from storage.objectstore import ObjectStore, ObjectStoreError
from storage.settings import Settings

log = logging.getLogger("locard.dispatcher")
INTAKE_ACTOR = "locard-intake"


def sweep(factory: sessionmaker[Session], store: ObjectStore, settings: Settings) -> int:
    """Queue an intake job for each object version in the evidence bucket not seen yet; returns how many."""
    try:
        with transaction(factory) as session:
            added = intake.sweep(session, store, principal="bucket-sweep", max_attempts=settings.job_max_attempts)
    except ObjectStoreError as exc:
        log.warning("bucket sweep failed: %s", exc)
        return 0
    if added:
        log.info("sweep found %d new object version(s) in the evidence bucket", added)
    return added


def take_intake(factory: sessionmaker[Session], store: ObjectStore, settings: Settings, *, owner: str) -> int:
    """Lease a few intake jobs to `owner` and process each; returns how many were taken."""
    claimed = jobs.claim(factory, kinds=["intake"], owner=owner, lease_seconds=settings.job_lease_seconds, limit=4)
    for job in claimed:
        try:
            with transaction(factory) as session:
                taken = intake.process_intake(
                    session, store, record=job.payload["record"], actor=INTAKE_ACTOR,
                    inbox_reference=settings.unassigned_case_reference,
                    max_bytes=settings.max_upload_bytes, max_attempts=settings.job_max_attempts)
                refused = taken.reason if isinstance(taken, intake.IntakeRefusal) else None
                jobs.finish(session, job_id=job.id, owner=owner, state="failed" if refused else "succeeded",
                            error=f"IntakeRefused: {refused}" if refused else None)
        except Exception as exc:
            log.warning("intake job %d failed: %s", job.id, exc)
            retry = job.attempt < job.max_attempts and not _is_permanent(exc)
            with transaction(factory) as session:
                jobs.finish(session, job_id=job.id, owner=owner, state="failed",
                            error=f"{type(exc).__name__}: {exc}", retry_in=2.0**job.attempt if retry else None)
    return len(claimed)


def _is_permanent(exc: Exception) -> bool:
    return "larger than the limit" in str(exc) or "NoSuchKey" in str(exc) or "NoSuchVersion" in str(exc)
