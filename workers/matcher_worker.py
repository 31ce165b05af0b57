"""The matcher actor: holds the indexes in memory and does the matching work the dispatcher hands it.

Every job of kind "crossmatch" (an item whose analysis has ended), "search" (a face or similar-image search
request), "rematch" (a register record changed: which older items may now match) and "match" (a fingerprint
verification or search request) arrives as a `storage.messages.MatchWork`. The actor records the work and ends
the job in the same transaction, in the name of the dispatcher that leased it (a job whose lease has passed to
another dispatcher records nothing: `MatchDone.state` "lost"), and answers a `MatchDone`; it never raises for a
job's own failure: the job is failed with its reason and retried with a growing wait while attempts remain.

What it holds, once per actor process and kept in step with the record store before each use: the vector
indexes of faces and scenes and the PDQ index (`workers.matchers.indexes`, `workers.matchers.image_indexes`),
the fingerprint gallery (`workers.matchers.fingerprints`), and, where fingerprints are analysed, the 1:N index
of every print (`workers.matcher.FingerprintMatcher`). A deployment runs `Settings.matcher_actors` of them; each
holds full copies (sharding the indexes over actors is for larger clusters).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from storage import jobs, matching
from storage.db import make_engine, session_factory, transaction
from storage.messages import MatchAnswer, MatchDone, MatchWork
from storage.objectstore import ObjectStore, S3ObjectStore
from storage.rematch import REMATCH
from storage.searches import SEARCH_JOB
from storage.settings import Settings
from workers import crossmatch, rematch, searches
from workers.matcher import FingerprintMatcher

log = logging.getLogger("locard.matcher")
CROSSMATCH, SEARCH, FINGERPRINT = crossmatch.KIND, SEARCH_JOB, "match"
KINDS = (SEARCH, FINGERPRINT, CROSSMATCH, REMATCH)  # the first two: requests someone waits for


class MatcherWorker:
    """One matcher actor (see the module); `work` does one job and never raises for the job's own failure."""

    def __init__(self, settings: Settings, *, fingerprints: bool = True,
                 factory: sessionmaker[Session] | None = None, store: ObjectStore | None = None) -> None:
        self.settings = settings
        self.factory = factory if factory is not None else session_factory(
            make_engine(settings.effective_database_url), chain_key=settings.chain_key)
        self.store = store if store is not None else S3ObjectStore.from_settings(settings)
        self.fingerprints = FingerprintMatcher(settings, factory=self.factory) if fingerprints else None
        self.context = crossmatch.MatchContext(settings=settings, store=self.store)
        self.identity = f"{socket.gethostname()}:{os.getpid()}:matcher"

    def ping(self) -> str:
        return self.identity

    def work(self, job: MatchWork) -> MatchDone:
        """Do one job and end it (see the module)."""
        handlers: dict[str, Callable[[MatchWork], MatchDone]] = {
            CROSSMATCH: self._crossmatch, REMATCH: self._rematch, SEARCH: self._search, FINGERPRINT: self._fingerprint}
        handler = handlers.get(job.kind)
        if handler is None:
            return self._fail(job, f"a matcher does not do jobs of kind {job.kind!r}", retry=False)
        try:
            with crossmatch.matching_context(self.context):
                return handler(job)
        except Exception as exc:
            log.warning("%s job %d failed: %s", job.kind, job.job_id, exc)
            return self._fail(job, f"{type(exc).__name__}: {exc}", retry=True)

    # -- the kinds of work ----------------------------------------------------------------------------
    def _crossmatch(self, job: MatchWork) -> MatchDone:
        evidence_id = str(job.evidence_id)
        with transaction(self.factory) as session:  # committed first: see workers.crossmatch
            crossmatch.index_keys(session, evidence_id=evidence_id)
        with transaction(self.factory) as session:
            if not self._end(session, job, "succeeded"):
                return MatchDone(job.job_id, "lost")
            result = crossmatch.crossmatch(session, evidence_id=evidence_id, context=self.context)
        return MatchDone(job.job_id, "succeeded", f"{result.findings} finding(s) matched, {result.new} new "
                                                  f"match(es), {result.superseded} superseded")

    def _rematch(self, job: MatchWork) -> MatchDone:
        with transaction(self.factory) as session:
            if not self._end(session, job, "succeeded"):
                return MatchDone(job.job_id, "lost")
            queued = rematch.rematch(session, payload=job.payload, max_attempts=self.settings.job_max_attempts)
        return MatchDone(job.job_id, "succeeded", f"{queued} item(s) queued for matching again")

    def _search(self, job: MatchWork) -> MatchDone:
        request_id = str(job.payload["request_id"])
        with transaction(self.factory) as session:
            matching.mark_running(session, request_id=request_id)
        with transaction(self.factory) as session:
            answer = searches.answer(session, request_id=request_id)
        return self._answered(job, request_id, answer)

    def _fingerprint(self, job: MatchWork) -> MatchDone:
        request_id = str(job.payload["request_id"])
        if self.fingerprints is None:
            return self._answered(job, request_id, MatchAnswer(error="fingerprint matching is not deployed"))
        with transaction(self.factory) as session:
            matching.mark_running(session, request_id=request_id)
        return self._answered(job, request_id, self.fingerprints.run(request_id))

    # -- ending jobs ----------------------------------------------------------------------------------
    def _answered(self, job: MatchWork, request_id: str, answer: MatchAnswer) -> MatchDone:
        """A request's answer, recorded with its job's end (an error answer is final: asking again would not
        change it)."""
        state = "failed" if answer.error else "succeeded"
        with transaction(self.factory) as session:
            if not self._end(session, job, state, error=answer.error):
                return MatchDone(job.job_id, "lost")
            matching.finish_request(session, request_id=request_id, result=answer.result, error=answer.error)
        return MatchDone(job.job_id, state, error=answer.error)

    def _end(self, session: Session, job: MatchWork, state: str, *, error: str | None = None) -> bool:
        return jobs.finish(session, job_id=job.job_id, owner=job.owner, state=state, error=error)

    def _fail(self, job: MatchWork, error: str, *, retry: bool) -> MatchDone:
        """Fail the job (retried after 2^attempt seconds while attempts remain); a request that will not be
        retried gets the error as its answer."""
        again = retry and job.attempt < job.max_attempts
        try:
            with transaction(self.factory) as session:
                if not jobs.finish(session, job_id=job.job_id, owner=job.owner, state="failed", error=error[:2000],
                                   retry_in=2.0**job.attempt if again else None):
                    return MatchDone(job.job_id, "lost", error=error)
                if not again and job.kind in (SEARCH, FINGERPRINT) and "request_id" in job.payload:
                    matching.finish_request(session, request_id=str(job.payload["request_id"]), result=None,
                                            error=error)
        except Exception as exc:  # the record store is out of reach: the lease runs out and the job comes back
            log.warning("could not record the failure of %s job %d: %s", job.kind, job.job_id, exc)
        return MatchDone(job.job_id, "failed", error=error)
