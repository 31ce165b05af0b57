"""Cross-matching: once every analysis of an item has ended, its findings are matched (run in the dispatcher).

The bookkeeper queues one "crossmatch" job per item when its last analysis ends (`enqueue`), deduplicated on the
item's analysis runs and the matchers' versions: the same analyses are matched once, a re-analysis (new runs)
matches again. Taking the job (`take`) runs `crossmatch` in one transaction: matches of findings replaced since
are marked superseded (`storage.matches.supersede_stale`), the item's keys are indexed for later items to find,
and each registered matcher proposes matches for the findings it consumes, recorded idempotently
(`storage.matches.add_match`). The run is written in the item's custody log.

Only the item being matched looks: an item analysed earlier is found through its keys, and a register record
added later does not yet re-match older items (a later re-matching job will).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import jobs, matches
from storage.db import transaction
from storage.objectstore import ObjectStore
from storage.settings import Settings
from storage.tables import AnalysisRun, CustodyEvent, Finding
from workers.matchers import registry
from workers.matchers.base import Matcher, Subject

log = logging.getLogger("locard.dispatcher")
KIND = "crossmatch"
ACTOR = "locard-crossmatch"


@dataclass(frozen=True)
class CrossmatchResult:
    """What one cross-matching of an item did."""

    evidence_id: str
    findings: int  # findings some matcher consumed
    new: int  # matches recorded now
    superseded: int  # earlier matches whose finding was replaced


@dataclass(frozen=True)
class MatchContext:
    """What a matcher may need beyond its session, set while `crossmatch` runs: the settings (the Locard home,
    thresholds) and the object store (artifacts, e.g. keypoint files); None where the caller gave none."""

    settings: Settings | None = None
    store: ObjectStore | None = None


_CONTEXT: ContextVar[MatchContext | None] = ContextVar("locard_match_context", default=None)


def match_context() -> MatchContext:
    """The context of the cross-matching running now (an empty one outside `crossmatch`)."""
    return _CONTEXT.get() or MatchContext()


def dedupe_key(session: Session, *, evidence_id: str, matchers: Mapping[str, type[Matcher]]) -> str:
    """The crossmatch job's key: the item, its analysis runs so far, and the matchers' versions."""
    runs = sorted(session.scalars(select(AnalysisRun.id).where(AnalysisRun.evidence_id == evidence_id)))
    versions = sorted(f"{name}={cls.version}" for name, cls in matchers.items())
    digest = hashlib.sha256("\n".join([*runs, "", *versions]).encode()).hexdigest()[:32]
    return f"{KIND}:{evidence_id}:{digest}"


def enqueue(session: Session, *, evidence_id: str, max_attempts: int) -> bool:
    """Queue the item's cross-matching (once for the same analyses); whether a job was newly queued."""
    key = dedupe_key(session, evidence_id=evidence_id, matchers=registry.load_all())
    _, new = jobs.enqueue(session, kind=KIND, dedupe_key=key, evidence_id=evidence_id, max_attempts=max_attempts)
    return new


def subjects_of(session: Session, *, evidence_id: str) -> list[Subject]:
    """The item's findings as matchers see them, with the version of the analyzer that made each."""
    rows = session.execute(select(Finding, AnalysisRun.analyzer_version).join(AnalysisRun,
                                                                              AnalysisRun.id == Finding.run_id)
                           .where(Finding.evidence_id == evidence_id).order_by(Finding.id)).tuples()
    return [Subject(f.id, f.evidence_id, f.case_id, f.kind, f.analyzer, version, f.label, f.confidence, dict(f.data))
            for f, version in rows]


def crossmatch(session: Session, *, evidence_id: str, matchers: Mapping[str, type[Matcher]] | None = None,
               context: MatchContext | None = None) -> CrossmatchResult:
    """Match the item's findings with every matcher (see the module's description), `context` set for them."""
    token = _CONTEXT.set(context)
    try:
        return _crossmatch(session, evidence_id=evidence_id, matchers=matchers)
    finally:
        _CONTEXT.reset(token)


def _crossmatch(session: Session, *, evidence_id: str,
                matchers: Mapping[str, type[Matcher]] | None) -> CrossmatchResult:
    chosen = [cls() for _, cls in sorted((matchers if matchers is not None else registry.load_all()).items())]
    superseded = matches.supersede_stale(session, evidence_id=evidence_id)
    subjects = subjects_of(session, evidence_id=evidence_id)
    wanted = [(matcher, subject) for matcher in chosen for subject in subjects if matcher.wants(subject)]
    matches.replace_keys(session, evidence_id=evidence_id, keys=[
        matches.KeyEntry(matcher.modality, key.key, key.exact, subject.finding_id)
        for matcher, subject in wanted for key in matcher.keys(subject)])
    new = 0
    for matcher, subject in wanted:
        for proposal in matcher.propose(session, subject):
            if proposal.score < matcher.threshold:
                continue
            _, added = matches.add_match(session, match=matches.NewMatch(
                modality=matcher.modality, finding_id=subject.finding_id, finding_kind=subject.kind,
                evidence_id=subject.evidence_id, case_id=subject.case_id, analyzer=subject.analyzer,
                analyzer_version=subject.analyzer_version, target_kind=proposal.target_kind,
                target_id=proposal.target_id, score=proposal.score, threshold=matcher.threshold,
                method=proposal.method, matcher=matcher.name, matcher_version=matcher.version,
                target_analyzer=proposal.target_analyzer, target_version=proposal.target_version,
                target_evidence_id=proposal.target_evidence_id, target_case_id=proposal.target_case_id,
                detail=proposal.detail))
            new += added
    matched = len({subject.finding_id for _, subject in wanted})
    session.add(CustodyEvent(evidence_id=evidence_id, actor=ACTOR, action="cross_matched", detail={
        "matchers": {matcher.name: matcher.version for matcher in chosen}, "findings": matched,
        "new_matches": new, "superseded_matches": superseded}))
    return CrossmatchResult(evidence_id, matched, new, superseded)


def take(factory: sessionmaker[Session], settings: Settings, *, owner: str, store: ObjectStore | None = None) -> int:
    """Lease a few crossmatch jobs to `owner` and run each (matchers see `settings` and `store` through
    `match_context`); returns how many were taken."""
    claimed = jobs.claim(factory, kinds=[KIND], owner=owner, lease_seconds=settings.job_lease_seconds, limit=8)
    for job in claimed:
        try:
            with transaction(factory) as session:
                if not jobs.finish(session, job_id=job.id, owner=owner, state="succeeded"):
                    continue  # the lease ran out and another dispatcher has the job
                result = crossmatch(session, evidence_id=str(job.evidence_id),
                                    context=MatchContext(settings=settings, store=store))
            log.info("cross-matched %s: %d new match(es)", result.evidence_id, result.new)
        except Exception as exc:
            log.warning("crossmatch job %d failed: %s", job.id, exc)
            with transaction(factory) as session:
                jobs.finish(session, job_id=job.id, owner=owner, state="failed", error=f"{type(exc).__name__}: {exc}",
                            retry_in=2.0**job.attempt if job.attempt < job.max_attempts else None)
    return len(claimed)
