"""The dispatcher: turns durable jobs into work on actors, and the actors' answers into recorded runs.

One loop, in one process per deployment (more are safe: claims are compare-and-set):
sweep the bucket for unseen objects, take intake jobs (`workers.intake_jobs`), plan analysis for new evidence
(`workers.planning`), lease analysis jobs to analyzer actors, record each outcome (`workers.bookkeeping`), and
lease matching jobs (cross-matching an item whose analysis is over, searches, re-matching, fingerprint requests)
to the matcher actors that hold the indexes (`workers.matcher_worker`), which record the work and end the job.
Leases of in-flight work are renewed; a lease that runs out (the dispatcher or Ray died) is closed as a failed
run and the job goes back in the queue, within bounds. Actors are reached only through a `workers.runtime.Runtime`
(Ray in production, an in-process fake in tests), and time is read from `clock`.

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

from sqlalchemy.orm import Session, sessionmaker

from storage import analysis, jobs, matching
from storage.db import reading, transaction
from storage.messages import MatchDone, MatchWork, RunOutcome
from storage.objectstore import ObjectStore
from storage.settings import Settings
from workers import intake_jobs
from workers.actor import time_budget_seconds
from workers.analyzers.base import Analyzer
from workers.bookkeeping import Bookkeeper, failed
from workers.matcher_worker import FINGERPRINT, KINDS, MatcherWorker
from workers.runtime import CallFailed, RayRuntime, Runtime, WorkerLost, WorkerUnavailable

log = logging.getLogger("locard.dispatcher")
IDLE_WAIT = 0.05  # seconds between polls of the job table when there is nothing to do


@dataclass
class InFlight:
    """An analysis job whose attempt is running on an actor (or waiting behind another job on it)."""

    job: jobs.ClaimedJob
    actor: Any
    started: float | None = None  # the dispatcher's clock when the actor started it; None while it waits


class Dispatcher:
    """Moves jobs from the record store to Ray actors and back."""

    def __init__(self, settings: Settings, factory: sessionmaker[Session], store: ObjectStore,
                 analyzers: dict[str, type[Analyzer]], *, actor_factory: Callable[[str], Any],
                 actors_per_analyzer: int = 1, matcher_factory: Callable[[], Any] | None = None,
                 runtime: Runtime | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.factory = factory
        self.store = store
        self.analyzers = analyzers
        self.runtime: Runtime = runtime if runtime is not None else RayRuntime()
        self.clock = clock  # seconds, monotonic: time budgets and lease renewal (tests move a fake one)
        self.actor_factory = actor_factory
        self.owner = f"dispatcher:{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.books = Bookkeeper(settings, factory, analyzers, owner=self.owner)
        self.pools = {name: [actor_factory(name) for _ in range(actors_per_analyzer)] for name in analyzers}
        # Matching jobs go to the matcher actors (`settings.matcher_actors` of them). Without a factory (tools and
        # tests) one matcher works in this process, between the steps of the loop, and takes no fingerprint
        # requests (the worker service always starts actors).
        self.matchers = ([matcher_factory() for _ in range(settings.matcher_actors)]
                         if matcher_factory is not None else [])
        self.local_matcher = (MatcherWorker(settings, fingerprints=False, factory=factory, store=store)
                              if matcher_factory is None else None)
        self._next_matcher = 0
        self.in_flight: dict[Any, InFlight] = {}
        self._next_actor = dict.fromkeys(analyzers, 0)
        self._last_sweep: float | None = None
        self._last_renew = self.clock()

    def warm_up(self, timeout: float = 600.0) -> None:
        """Wait until every analyzer actor has loaded its models (a broken model fails start-up, not a job)."""
        actors = [actor for pool in self.pools.values() for actor in pool] + self.matchers
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
        now = self.clock()
        if self._last_sweep is None or now - self._last_sweep >= self.settings.sweep_interval_seconds:
            self._last_sweep = now
            busy |= self.sweep() > 0
        busy |= self.books.reap_expired() > 0
        busy |= self.take_intake() > 0
        busy |= self.take_plans() > 0
        busy |= self.submit_analysis() > 0
        busy |= self.submit_matching() > 0
        busy |= self.collect(timeout=0.01 if busy else IDLE_WAIT) > 0
        busy |= self.enforce_budgets() > 0
        self.renew_leases()
        return busy

    # -- intake and planning -----------------------------------------------------------------------
    def sweep(self) -> int:
        return intake_jobs.sweep(self.factory, self.store, self.settings)

    def take_intake(self) -> int:
        return intake_jobs.take_intake(self.factory, self.store, self.settings, owner=self.owner)

    def take_plans(self) -> int:
        claimed = jobs.claim(self.factory, kinds=["plan"], owner=self.owner,
                             lease_seconds=self.settings.job_lease_seconds, limit=32)
        for job in claimed:
            with transaction(self.factory) as session:
                self.books.plan(session, str(job.evidence_id))
                jobs.finish(session, job_id=job.id, owner=self.owner, state="succeeded")
        return len(claimed)

    # -- analysis ---------------------------------------------------------------------------------
    def submit_analysis(self) -> int:
        capacity = sum(2 * len(pool) for pool in self.pools.values()) - len(self.in_flight)
        if capacity <= 0:
            return 0
        claimed = jobs.claim(self.factory, kinds=["analysis"], owner=self.owner,
                             lease_seconds=self.settings.job_lease_seconds, limit=capacity)
        for job in claimed:
            if job.analyzer not in self.pools:
                self.books.close(job, RunOutcome(analyzer=job.analyzer or "?", analyzer_version="unknown",
                                                 status="failed", retryable=False,
                                                 error=f"analyzer {job.analyzer!r} is not deployed"))
                continue
            with reading(self.factory) as session:
                ref = analysis.evidence_message(session, evidence_id=str(job.evidence_id),
                                                requires=self.analyzers[job.analyzer].requires,
                                                pages=job.payload.get("pages"))
            pool = self.pools[job.analyzer]
            actor = pool[self._next_actor[job.analyzer] % len(pool)]
            self._next_actor[job.analyzer] += 1
            idle = not any(flight.actor is actor for flight in self.in_flight.values())
            self.in_flight[self.runtime.call(actor, "run", ref)] = InFlight(
                job, actor, self.clock() if idle else None)
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
            if flight.job.kind in KINDS:
                self._close_matching(flight.job, ref)
                continue
            job = flight.job
            try:
                outcome: RunOutcome = self.runtime.result(ref)
            except WorkerLost as exc:
                what = "stopped answering (it died or is restarting)" if isinstance(exc, WorkerUnavailable) else "died"
                self.books.close_lost(job, f"the analyzer's worker {what}: {exc}")
                continue
            except CallFailed as exc:
                outcome = failed(job, f"runtime error: {exc}", retryable=True)
            self.books.close(job, outcome)
            if outcome.recycle:
                recycle.append((flight.actor, job.analyzer or ""))
        for actor, name in recycle:  # after every ready result is in: what is left on the actor has not run
            self._recycle(actor, name, reason="it asked to be replaced")
        return len(ready)

    def _start_next(self, actor: Any) -> None:
        """The actor is free: the next job waiting on it starts now (for its time budget)."""
        for flight in self.in_flight.values():
            if flight.actor is actor and flight.started is None:
                flight.started = self.clock()
                return

    def enforce_budgets(self) -> int:
        """Fail each job past its time budget, and replace the actor that is running it."""
        now = self.clock()
        over = [(ref, flight) for ref, flight in self.in_flight.items() if flight.job.kind == "analysis"
                and flight.started is not None and now - flight.started > self._time_budget(flight.job)]
        for ref, flight in over:
            if self.in_flight.pop(ref, None) is None:
                continue  # already closed: its actor was replaced for another job's overrun
            self.books.close(flight.job, failed(flight.job, f"the analyzer exceeded its time budget of "
                                                            f"{self._time_budget(flight.job):g} s on this item; "
                                                            "the run was stopped and its worker replaced"))
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
            self.books.close_lost(flight.job, f"its worker was replaced ({reason}) before it ran", counted=False)
        try:
            self.runtime.kill(actor)
        except Exception as exc:  # an actor that is already gone needs no killing
            log.warning("could not stop a replaced %s worker: %s", name, exc)

    # -- matching ----------------------------------------------------------------------------------
    def submit_matching(self) -> int:
        """Lease matching jobs to the matcher actors (requests someone waits for first), two per actor at most."""
        if self.local_matcher is not None:
            return self._match_here()
        waiting = sum(1 for flight in self.in_flight.values() if flight.job.kind in KINDS)
        capacity = 2 * len(self.matchers) - waiting
        taken = 0
        for kinds in (KINDS[:2], KINDS[2:]):  # requests someone waits for, then the rest
            if capacity - taken <= 0:
                break
            claimed = jobs.claim(self.factory, kinds=list(kinds), owner=self.owner,
                                 lease_seconds=self.settings.job_lease_seconds, limit=capacity - taken)
            for job in claimed:
                actor = self.matchers[self._next_matcher % len(self.matchers)]
                self._next_matcher += 1
                self.in_flight[self.runtime.call(actor, "work", self._work(job))] = InFlight(job, actor)
            taken += len(claimed)
        return taken

    def _match_here(self) -> int:
        """Without matcher actors: a few matching jobs (no fingerprint requests), done in this process."""
        assert self.local_matcher is not None
        claimed = jobs.claim(self.factory, kinds=[kind for kind in KINDS if kind != FINGERPRINT], owner=self.owner,
                             lease_seconds=self.settings.job_lease_seconds, limit=8)
        for job in claimed:
            done = self.local_matcher.work(self._work(job))
            log.info("%s job %d %s: %s", job.kind, job.id, done.state, done.error or done.summary)
        return len(claimed)

    def _work(self, job: jobs.ClaimedJob) -> MatchWork:
        return MatchWork(job_id=job.id, kind=job.kind, owner=self.owner,
                         evidence_id=str(job.evidence_id) if job.evidence_id is not None else None,
                         payload=dict(job.payload), attempt=job.attempt, max_attempts=job.max_attempts)

    def _close_matching(self, job: jobs.ClaimedJob, ref: Any) -> None:
        """The actor ended the job itself; a job whose actor died or failed in the runtime is failed here,
        retried once the actor is back while attempts remain (a request out of attempts gets the error)."""
        try:
            done: MatchDone = self.runtime.result(ref)
            log.info("%s job %d %s: %s", job.kind, job.id, done.state, done.error or done.summary)
            return
        except (WorkerLost, CallFailed) as exc:
            error = f"the matcher failed: {_first_line(exc)}"
        again = job.attempt < job.max_attempts
        with transaction(self.factory) as session:
            ended = jobs.finish(session, job_id=job.id, owner=self.owner, state="failed", error=error,
                                retry_in=self.settings.worker_restart_seconds if again else None)
            if ended and not again and "request_id" in job.payload:
                matching.finish_request(session, request_id=str(job.payload["request_id"]), result=None, error=error)

    def renew_leases(self) -> None:
        """Extend the leases of the work in flight, every third of a lease."""
        if self.clock() - self._last_renew < self.settings.job_lease_seconds / 3:
            return
        self._last_renew = self.clock()
        self.books.renew([flight.job.id for flight in self.in_flight.values()])

    def drain(self, timeout: float = 30.0) -> None:
        """Wait for in-flight work to finish (used when stopping cleanly)."""
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            self.collect(timeout=0.5)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
