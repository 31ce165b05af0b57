"""Cross-matching: once every analysis of an item has ended, its findings are matched (on the matcher actors).

The bookkeeper queues one "crossmatch" job per item when its last analysis ends (`enqueue`), deduplicated on the
item's analysis runs and the matchers' versions: the same analyses are matched once, a re-analysis (new runs)
matches again, and a register change that may concern the item queues it again under its own `reason`
(`workers.rematch`). The dispatcher hands the job to a matcher actor (`workers.matcher_worker`), which holds the
indexes in memory and runs it in two transactions:

1. `index_keys`, committed: the item's keys (plate readings, entities) are indexed for later items to find;
2. `crossmatch`, committed with the job's end: matches of findings replaced since are marked superseded
   (`storage.matches.supersede_stale`), and each registered matcher proposes matches for the findings it
   consumes, recorded idempotently (`storage.matches.add_match`); the run is written in the item's custody log.
   Each new match is published to the cases on its sides (`storage.events`, delivered to their subscribers).
   A register match found again whose record changed since (a vehicle reported stolen after it was matched)
   gets the record's state now (`storage.matches.refresh_register_match`), so its alert is raised. An item that
   is a person's reference photo queues the re-matching of that person (its faces were not known when it was
   linked, perhaps), so older items showing the person are found.

Committing the keys first is what makes several actors safe: of two items matched at the same moment, each
commits its keys before it looks, so the one that looks last sees the other's keys (a pair found from both
sides is recorded once: `storage.matches.pair_key`). Vectors are found the same way: they are findings,
committed when analysis ends, before the item's cross-matching is queued.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import events, jobs, matches
from storage.objectstore import ObjectStore
from storage.persons import persons_pictured
from storage.rematch import queue_rematch
from storage.settings import Settings
from storage.tables import AnalysisRun, CustodyEvent, Finding
from workers.matchers import registry
from workers.matchers.base import Matcher, Subject

KIND = "crossmatch"
ACTOR = "locard-crossmatch"


@dataclass(frozen=True)
class CrossmatchResult:
    """What one cross-matching of an item did."""

    evidence_id: str
    findings: int  # findings some matcher consumed
    new: int  # matches recorded now
    superseded: int  # earlier matches whose finding was replaced
    refreshed: int = 0  # register matches whose record changed since (a vehicle now stolen): detail updated


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


def enqueue(session: Session, *, evidence_id: str, max_attempts: int, reason: str | None = None) -> bool:
    """Queue the item's cross-matching (once for the same analyses, and once per `reason`: a re-matching asked
    for because a register record changed names it, e.g. "vehicle:<id>:<stamp>"); whether a job was newly queued."""
    key = dedupe_key(session, evidence_id=evidence_id, matchers=registry.load_all())
    if reason:
        key = f"{key}:{hashlib.sha256(reason.encode()).hexdigest()[:16]}"
    _, new = jobs.enqueue(session, kind=KIND, dedupe_key=key, evidence_id=evidence_id, max_attempts=max_attempts)
    return new


def subjects_of(session: Session, *, evidence_id: str) -> list[Subject]:
    """The item's findings as matchers see them, with the version of the analyzer that made each."""
    rows = session.execute(select(Finding, AnalysisRun.analyzer_version).join(AnalysisRun,
                                                                              AnalysisRun.id == Finding.run_id)
                           .where(Finding.evidence_id == evidence_id).order_by(Finding.id)).tuples()
    return [Subject.of(f, version) for f, version in rows]


@contextmanager
def matching_context(context: MatchContext | None) -> Iterator[None]:
    """Set the context matchers see (`match_context`) for the work done inside."""
    token = _CONTEXT.set(context)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def index_keys(session: Session, *, evidence_id: str, matchers: Mapping[str, type[Matcher]] | None = None) -> int:
    """Record the keys by which later items find this item's findings: the first step of `crossmatch`, committed
    on its own before it (see the module); returns how many findings have keys."""
    wanted = _wanted(_chosen(matchers), subjects_of(session, evidence_id=evidence_id))
    _replace_keys(session, evidence_id=evidence_id, wanted=wanted)
    return len({subject.finding_id for _, subject in wanted})


def crossmatch(session: Session, *, evidence_id: str, matchers: Mapping[str, type[Matcher]] | None = None,
               context: MatchContext | None = None) -> CrossmatchResult:
    """Match the item's findings with every matcher (see the module's description), `context` set for them."""
    with matching_context(context):
        return _crossmatch(session, evidence_id=evidence_id, matchers=matchers)


def _chosen(matchers: Mapping[str, type[Matcher]] | None) -> list[Matcher]:
    return [cls() for _, cls in sorted((matchers if matchers is not None else registry.load_all()).items())]


def _wanted(chosen: list[Matcher], subjects: list[Subject]) -> list[tuple[Matcher, Subject]]:
    return [(matcher, subject) for matcher in chosen for subject in subjects if matcher.wants(subject)]


def _replace_keys(session: Session, *, evidence_id: str, wanted: list[tuple[Matcher, Subject]]) -> None:
    matches.replace_keys(session, evidence_id=evidence_id, keys=[
        matches.KeyEntry(matcher.modality, key.key, key.exact, subject.finding_id)
        for matcher, subject in wanted for key in matcher.keys(subject)])


def _crossmatch(session: Session, *, evidence_id: str,
                matchers: Mapping[str, type[Matcher]] | None) -> CrossmatchResult:
    chosen = _chosen(matchers)
    superseded = matches.supersede_stale(session, evidence_id=evidence_id)
    wanted = _wanted(chosen, subjects_of(session, evidence_id=evidence_id))
    _replace_keys(session, evidence_id=evidence_id, wanted=wanted)
    new = refreshed = 0
    for matcher, subject in wanted:
        for proposal in matcher.propose(session, subject):
            if proposal.score < matcher.threshold:
                continue
            row, added = matches.add_match(session, match=matches.NewMatch(
                modality=matcher.modality, finding_id=subject.finding_id, finding_kind=subject.kind,
                evidence_id=subject.evidence_id, case_id=subject.case_id, analyzer=subject.analyzer,
                analyzer_version=subject.analyzer_version, target_kind=proposal.target_kind,
                target_id=proposal.target_id, score=proposal.score, threshold=matcher.threshold,
                method=proposal.method, matcher=matcher.name, matcher_version=matcher.version,
                target_analyzer=proposal.target_analyzer, target_version=proposal.target_version,
                target_evidence_id=proposal.target_evidence_id, target_case_id=proposal.target_case_id,
                detail=proposal.detail))
            new += added
            if added:
                events.publish_match(session, kind=events.MATCH_CREATED, match=row)
            if not added and matches.refresh_register_match(session, match=row, score=proposal.score,
                                                            detail=proposal.detail):
                refreshed += 1
    matched = len({subject.finding_id for _, subject in wanted})
    pictured = persons_pictured(session, evidence_id=evidence_id)
    if pictured:  # a reference photo: older items may show the person (its faces were not known when linked)
        queue_rematch(session, target_kind="person", target_ids=pictured,
                      reason=f"photo-matched:{dedupe_key(session, evidence_id=evidence_id, matchers={})}")
    session.add(CustodyEvent(evidence_id=evidence_id, actor=ACTOR, action="cross_matched", detail={
        "matchers": {matcher.name: matcher.version for matcher in chosen}, "findings": matched,
        "new_matches": new, "refreshed_matches": refreshed, "superseded_matches": superseded}))
    return CrossmatchResult(evidence_id, matched, new, superseded, refreshed)
