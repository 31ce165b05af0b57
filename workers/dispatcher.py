"""The dispatcher: turns durable jobs into work on Ray, and Ray's answers into recorded runs.

One loop, in one process per deployment (more are safe: claims are compare-and-set):
sweep the bucket for unseen objects, take intake jobs, plan analysis for new evidence, lease analysis jobs
to analyzer actors, and record each outcome. Leases of in-flight work are renewed; a lease that runs out
(the dispatcher or Ray died) is closed as a failed run and the job goes back in the queue, within bounds.

Resource bounds: a job running past its analyzer's time budget is failed (not retried: the same input would
hang again) and its actor replaced; an actor that reports itself over its memory budget is replaced. A try
whose worker died or was restarting is not charged as an attempt: the job waits out the restart (growing
backoff) and fails only after `worker_max_losses` such tries. Documents longer than `max_pages_per_job` are
read one page range per job, each range queued behind the work already waiting, so other items interleave.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import analysis, intake, jobs, matching
from storage.analysis import RunOutcome
from storage.db import reading, transaction
from storage.objectstore import ObjectStore, ObjectStoreError
from storage.settings import Settings
from storage.tables import Evidence, Finding, Job, utcnow
from workers.actor import next_range, time_budget_seconds
from workers.analyzers.base import Analyzer
from workers.runtime import CallFailed, RayRuntime, WorkerLost, WorkerUnavailable

log = logging.getLogger("locard.dispatcher")
INTAKE_ACTOR = "locard-intake"
IDLE_WAIT = 0.05  # seconds between polls of the job table when there is nothing to do
DEATHS_KEY = "worker_deaths"  # in a job's payload: tries on which its worker died or was restarting


@dataclass
class InFlight:
    """An analysis job whose attempt is running on an actor (or waiting behind another job on it)."""

    job: jobs.ClaimedJob
    actor: Any
    started: float | None = None  # monotonic time the actor started it; None while it waits behind another


class Dispatcher:
    """Moves jobs from the record store to Ray actors and back."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session], store: ObjectStore,
                 analyzers: dict[str, type[Analyzer]], *, actor_factory: Callable[[str], Any],
                 actors_per_analyzer: int = 1, matcher_factory: Callable[[], Any] | None = None,
                 runtime: Any = None) -> None:
        self.settings = settings
        self.factory = factory
        self.store = store
        self.analyzers = analyzers
        self.runtime = runtime if runtime is not None else RayRuntime()
        self.actor_factory = actor_factory
        self.owner = f"dispatcher:{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.pools = {name: [actor_factory(name) for _ in range(actors_per_analyzer)] for name in analyzers}
        # Fingerprint verification and search requests go to the matcher (None: this deployment runs none).
        self.matcher = matcher_factory() if matcher_factory is not None else None
        self.in_flight: dict[Any, InFlight] = {}
        self._next_actor = dict.fromkeys(analyzers, 0)
        self._last_sweep = 0.0
        self._last_renew = time.monotonic()

    def warm_up(self, timeout: float = 600.0) -> None:
        """Wait until every analyzer actor has loaded its models (a broken model fails start-up, not a job)."""
        actors = [actor for pool in self.pools.values() for actor in pool]
        if self.matcher is not None:
            actors.append(self.matcher)
        deadline = time.monotonic() + timeout
        for handle in [self.runtime.call(actor, "ping") for actor in actors]:
            self.runtime.result(handle, timeout=max(0.0, deadline - time.monotonic()))

    # -- the loop ---------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        log.info("dispatcher %s running analyzers: %s", self.owner, ", ".join(sorted(self.analyzers)))
        failures = 0
        while not stop.is_set():
            try:
                busy = self.step()
                failures = 0
            except Exception:  # the loop must outlive a database or object-store outage
                failures += 1
                log.exception("dispatcher step failed (%d in a row); retrying", failures)
                stop.wait(min(30.0, 0.5 * 2**failures))
                continue
            if not busy:
                stop.wait(IDLE_WAIT)

    def step(self) -> bool:
        """One pass of the loop; True if anything happened."""
        busy = False
        if time.monotonic() - self._last_sweep >= self.settings.sweep_interval_seconds:
            self._last_sweep = time.monotonic()
            busy |= self.sweep() > 0
        busy |= self.reap_expired() > 0
        busy |= self.take_intake() > 0
        busy |= self.take_plans() > 0
        busy |= self.submit_analysis() > 0
        busy |= self.submit_matches() > 0
        busy |= self.collect(timeout=0.01 if busy else IDLE_WAIT) > 0
        busy |= self.enforce_budgets() > 0
        self.renew_leases()
        return busy

    # -- intake -----------------------------------------------------------------------------------
    def sweep(self) -> int:
        try:
            with transaction(self.factory) as session:
                added = intake.sweep(session, self.store, principal="bucket-sweep",
                                     max_attempts=self.settings.job_max_attempts)
        except ObjectStoreError as exc:
            log.warning("bucket sweep failed: %s", exc)
            return 0
        if added:
            log.info("sweep found %d new object version(s) in the evidence bucket", added)
        return added

    def take_intake(self) -> int:
        claimed = jobs.claim(self.factory, kinds=["intake"], owner=self.owner,
                             lease_seconds=self.settings.job_lease_seconds, limit=4)
        for job in claimed:
            try:
                with transaction(self.factory) as session:
                    taken = intake.process_intake(
                        session, self.store, record=job.payload["record"], actor=INTAKE_ACTOR,
                        inbox_reference=self.settings.unassigned_case_reference,
                        max_bytes=self.settings.max_upload_bytes, max_attempts=self.settings.job_max_attempts)
                    refused = taken.reason if isinstance(taken, intake.IntakeRefusal) else None
                    jobs.finish(session, job_id=job.id, owner=self.owner, state="failed" if refused else "succeeded",
                                error=f"IntakeRefused: {refused}" if refused else None)
            except Exception as exc:
                log.warning("intake job %d failed: %s", job.id, exc)
                retry = job.attempt < job.max_attempts and not _is_permanent(exc)
                with transaction(self.factory) as session:
                    jobs.finish(session, job_id=job.id, owner=self.owner, state="failed",
                                error=f"{type(exc).__name__}: {exc}", retry_in=2.0**job.attempt if retry else None)
        return len(claimed)

    def take_plans(self) -> int:
        claimed = jobs.claim(self.factory, kinds=["plan"], owner=self.owner,
                             lease_seconds=self.settings.job_lease_seconds, limit=32)
        for job in claimed:
            with transaction(self.factory) as session:
                self._plan(session, session.get_one(Evidence, job.evidence_id))
                jobs.finish(session, job_id=job.id, owner=self.owner, state="succeeded")
        return len(claimed)

    def _plan(self, session: Session, evidence: Evidence) -> list[str]:
        """Enqueue each analyzer that accepts the evidence and whose required analyzers have all ended.

        Called when the evidence is planned and whenever one of its analyses ends, in the same transaction,
        so an analyzer that depends on another (plates on objects) is queued exactly when it can run.
        """
        states = session.execute(select(Job.analyzer, Job.state).where(
            Job.evidence_id == evidence.id, Job.kind == "analysis")).all()
        # An analyzer has ended when every job of it has (a document read in page ranges has one per range).
        ended = {name for name, _ in states} - {name for name, state in states if state not in jobs.TERMINAL}
        accepting = {name for name, cls in self.analyzers.items()
                     if cls.applies_to(evidence.media_type, evidence.declared_kind)}
        planned = []
        for name in sorted(accepting):
            pending = [need for need in self.analyzers[name].requires if need in accepting and need not in ended]
            if pending:
                continue
            _, new = jobs.enqueue(session, kind="analysis", dedupe_key=f"analysis:{evidence.id}:{name}",
                                  evidence_id=evidence.id, analyzer=name, max_attempts=self.settings.job_max_attempts)
            if new:
                planned.append(name)
        return planned

    def _upstream(self, session: Session, evidence_id: str, analyzer: str) -> dict[str, list[dict[str, Any]]]:
        """The findings of the analyzers `analyzer` requires that succeeded (absent: failed or not run)."""
        upstream: dict[str, list[dict[str, Any]]] = {}
        for need in self.analyzers[analyzer].requires:
            succeeded = session.scalar(select(Job.id).where(
                Job.evidence_id == evidence_id, Job.kind == "analysis", Job.analyzer == need,
                Job.state == "succeeded"))
            if succeeded is None:
                continue
            rows = session.scalars(select(Finding).where(Finding.evidence_id == evidence_id,
                                                         Finding.analyzer == need).order_by(Finding.id))
            upstream[need] = [{"kind": row.kind, "label": row.label, "confidence": row.confidence,
                               "data": row.data} for row in rows]
        return upstream

    # -- analysis ---------------------------------------------------------------------------------
    def submit_analysis(self) -> int:
        capacity = sum(2 * len(pool) for pool in self.pools.values()) - len(self.in_flight)
        if capacity <= 0:
            return 0
        claimed = jobs.claim(self.factory, kinds=["analysis"], owner=self.owner,
                             lease_seconds=self.settings.job_lease_seconds, limit=capacity)
        for job in claimed:
            if job.analyzer not in self.pools:
                self._close(job, RunOutcome(analyzer=job.analyzer or "?", analyzer_version="unknown",
                                            status="failed", retryable=False,
                                            error=f"analyzer {job.analyzer!r} is not deployed"))
                continue
            with reading(self.factory) as session:
                evidence = session.get_one(Evidence, job.evidence_id)
                ref = {"id": evidence.id, "bucket": evidence.bucket, "object_key": evidence.object_key,
                       "version_id": evidence.version_id, "sha256": evidence.sha256,
                       "media_type": evidence.media_type, "original_filename": evidence.original_filename,
                       "declared_kind": evidence.declared_kind, "declared_ppi": evidence.declared_ppi,
                       "upstream": self._upstream(session, evidence.id, job.analyzer),
                       "pages": job.payload.get("pages")}
            pool = self.pools[job.analyzer]
            actor = pool[self._next_actor[job.analyzer] % len(pool)]
            self._next_actor[job.analyzer] += 1
            idle = not any(flight.actor is actor for flight in self.in_flight.values())
            self.in_flight[self.runtime.call(actor, "run", ref)] = InFlight(
                job, actor, time.monotonic() if idle else None)
        return len(claimed)

    def collect(self, timeout: float) -> int:
        if not self.in_flight:
            return 0
        ready = self.runtime.ready(list(self.in_flight), timeout)
        recycle: list[tuple[Any, str]] = []
        for ref in ready:
            flight = self.in_flight.pop(ref, None)
            if flight is None:
                continue
            self._start_next(flight.actor)
            if flight.job.kind == "match":
                self._close_match(flight.job, ref)
                continue
            job = flight.job
            try:
                outcome = RunOutcome(**self.runtime.result(ref))
            except WorkerLost as exc:
                what = "stopped answering (it died or is restarting)" if isinstance(exc, WorkerUnavailable) else "died"
                self._close_lost(job, f"the analyzer's worker {what}: {exc}")
                continue
            except CallFailed as exc:
                outcome = _failed(job, f"runtime error: {exc}", retryable=True)
            self._close(job, outcome)
            if outcome.recycle:
                recycle.append((flight.actor, job.analyzer or ""))
        for actor, name in recycle:  # after every ready result is in: what is left on the actor has not run
            self._recycle(actor, name, reason="it asked to be replaced")
        return len(ready)

    def _start_next(self, actor: Any) -> None:
        """The actor is free: the next job waiting on it starts now (for its time budget)."""
        for flight in self.in_flight.values():
            if flight.actor is actor and flight.started is None:
                flight.started = time.monotonic()
                return

    def enforce_budgets(self) -> int:
        """Fail each job past its time budget, and replace the actor that is running it."""
        now = time.monotonic()
        over = [(ref, flight) for ref, flight in self.in_flight.items() if flight.job.kind == "analysis"
                and flight.started is not None and now - flight.started > self._time_budget(flight.job)]
        for ref, flight in over:
            if self.in_flight.pop(ref, None) is None:
                continue  # already closed: its actor was replaced for another job's overrun
            self._close(flight.job, _failed(flight.job, f"the analyzer exceeded its time budget of "
                                                         f"{self._time_budget(flight.job):g} s on this item; the "
                                                         "run was stopped and its worker replaced"))
            self._recycle(flight.actor, flight.job.analyzer or "", reason="a job ran past its time budget")
        return len(over)

    def _time_budget(self, job: jobs.ClaimedJob) -> float:
        return time_budget_seconds(self.settings, self.analyzers[job.analyzer or ""])

    def _recycle(self, actor: Any, name: str, *, reason: str) -> None:
        """Replace an actor with a fresh one; jobs queued on it go back to the queue, not charged as attempts."""
        pool = self.pools.get(name, [])
        if actor not in pool:
            return  # already replaced
        log.info("replacing a %s worker: %s", name, reason)
        pool[pool.index(actor)] = self.actor_factory(name)
        for ref, flight in [(ref, flight) for ref, flight in self.in_flight.items() if flight.actor is actor]:
            del self.in_flight[ref]
            self._close_lost(flight.job, f"its worker was replaced ({reason}) before it ran", counted=False)
        try:
            self.runtime.kill(actor)
        except Exception as exc:  # an actor that is already gone needs no killing
            log.warning("could not stop a replaced %s worker: %s", name, exc)

    def _close_lost(self, job: jobs.ClaimedJob, reason: str, *, counted: bool = True) -> None:
        """A try that ended because the worker was lost: queued again after the restart, not as an attempt.

        `counted` losses (the worker died or was restarting while it held this job) are bounded by
        `worker_max_losses`, so a file that kills its worker every time still ends in a failed run.
        """
        deaths = int(job.payload.get(DEATHS_KEY, 0)) + int(counted)
        if counted and deaths >= self.settings.worker_max_losses:
            self._close(job, _failed(job, f"the worker died {deaths} times on this item; last: {reason}"))
            return
        # Ray restarts a dead actor, which reloads its models: wait that long, longer each time it happens again.
        retry_in = self.settings.worker_restart_seconds * 2.0 ** (deaths - 1) if counted else 0.0
        payload = {**job.payload, jobs.LOSSES_KEY: int(job.payload.get(jobs.LOSSES_KEY, 0)) + 1, DEATHS_KEY: deaths}
        outcome = _failed(job, f"{reason}; queued again (not counted as an attempt)", retryable=True)
        self._close(job, outcome, retry_in=retry_in, payload=payload)

    def _close(self, job: jobs.ClaimedJob, outcome: RunOutcome, *, retry_in: float | None = None,
               payload: dict[str, Any] | None = None) -> None:
        if retry_in is None and outcome.retryable and job.attempts_spent < job.max_attempts:
            retry_in = 2.0**job.attempts_spent
        with transaction(self.factory) as session:
            run = analysis.record_outcome(session, job_id=job.id, owner=self.owner, attempt=job.attempt,
                                          outcome=outcome, retry_in=retry_in, payload=payload)
            if run is not None and job.evidence_id is not None:
                if retry_in is None:
                    self._next_pages(session, job, outcome)
                self._plan(session, session.get_one(Evidence, job.evidence_id))
        if run is None:
            log.warning("job %d: lease lost before its result came back; result discarded", job.id)

    def _next_pages(self, session: Session, job: jobs.ClaimedJob, outcome: RunOutcome) -> None:
        """Queue the next page range of a document once a range has ended (behind the work already waiting)."""
        total = outcome.page_count or job.payload.get("page_count")
        after = next_range(outcome.pages or job.payload.get("pages"), total, self.settings)
        if after is not None and total and job.evidence_id is not None:
            jobs.enqueue(session, kind="analysis", evidence_id=job.evidence_id, analyzer=job.analyzer,
                         dedupe_key=f"analysis:{job.evidence_id}:{job.analyzer}:p{after.first}-{after.last}",
                         payload={"pages": [after.first, after.last], "page_count": int(total)},
                         max_attempts=job.max_attempts)

    # -- fingerprint matching --------------------------------------------------------------------
    def submit_matches(self) -> int:
        if self.matcher is None:
            return 0
        waiting = sum(1 for flight in self.in_flight.values() if flight.job.kind == "match")
        claimed = jobs.claim(self.factory, kinds=["match"], owner=self.owner,
                             lease_seconds=self.settings.job_lease_seconds, limit=max(0, 4 - waiting))
        for job in claimed:
            with transaction(self.factory) as session:
                matching.mark_running(session, request_id=job.payload["request_id"])
            handle = self.runtime.call(self.matcher, "run", job.payload["request_id"])
            self.in_flight[handle] = InFlight(job, self.matcher)
        return len(claimed)

    def _close_match(self, job: jobs.ClaimedJob, ref: Any) -> None:
        request_id = job.payload["request_id"]
        try:
            answer = self.runtime.result(ref)
        except (WorkerLost, CallFailed) as exc:
            if job.attempt < job.max_attempts:
                with transaction(self.factory) as session:
                    jobs.finish(session, job_id=job.id, owner=self.owner, state="failed",
                                error=_first_line(exc), retry_in=self.settings.worker_restart_seconds)
                return
            answer = {"error": f"the matcher failed: {_first_line(exc)}"}
        error = answer.get("error")
        with transaction(self.factory) as session:
            if jobs.finish(session, job_id=job.id, owner=self.owner, state="failed" if error else "succeeded",
                           error=error):
                matching.finish_request(session, request_id=request_id, result=answer.get("result"), error=error)

    def renew_leases(self) -> None:
        if time.monotonic() - self._last_renew < self.settings.job_lease_seconds / 3:
            return
        self._last_renew = time.monotonic()
        with transaction(self.factory) as session:
            jobs.renew(session, owner=self.owner, job_ids=[f.job.id for f in self.in_flight.values()],
                       lease_seconds=self.settings.job_lease_seconds)

    def reap_expired(self) -> int:
        """Close attempts whose lease ran out: their worker or dispatcher stopped mid-analysis."""
        with transaction(self.factory) as session:
            stale = jobs.expired(session, now=utcnow())
            for job in stale:
                if job.kind == "match" and job.attempts >= job.max_attempts:
                    matching.finish_request(session, request_id=job.payload["request_id"], result=None,
                                            error="the matcher stopped answering; the request was abandoned")
                analysis.record_abandoned(
                    session, job, reason=f"attempt {job.attempts} abandoned: its lease ran out "
                                         f"(holder {job.lease_owner} stopped mid-work)")
                if job.kind == "analysis" and job.evidence_id is not None:
                    self._plan(session, session.get_one(Evidence, job.evidence_id))
        return len(stale)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for in-flight work to finish (used when stopping cleanly)."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            self.collect(timeout=0.5)


def _failed(job: jobs.ClaimedJob, error: str, *, retryable: bool = False) -> RunOutcome:
    """A failed outcome recorded by the dispatcher (the worker could not report one)."""
    return RunOutcome(analyzer=job.analyzer or "?", analyzer_version="unknown", status="failed", error=error,
                      retryable=retryable)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _is_permanent(exc: Exception) -> bool:
    return "larger than the limit" in str(exc) or "NoSuchKey" in str(exc) or "NoSuchVersion" in str(exc)
