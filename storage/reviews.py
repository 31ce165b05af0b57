"""The human review of matches (issue 13; the EU Prüm II rule: a human checks every automated match before
personal data is exchanged), keyword-only access.

A match is a `candidate` until a forensic examiner confirms or rejects it with a reason (`decide`); never an
examiner who uploaded the evidence on either side (`uploaders`: the items of both sides, and for a register match
the reference photo or tenprint card it was made against). A decided match is decided again only after a
supervisor reopens it (`reopen`, with a reason): the history is kept in `match_decisions`
(`storage.review_records`), the match's `status`, `reviewed_by` and `reviewed_at` follow the latest. Both are
compare-and-set updates, so two examiners deciding the same match at once give one verdict, the other refused.

A rejection records the pair's identity, which `storage.matches.add_match` looks up so the pair is never proposed
again (see `storage.review_records`); a reopening lifts it. A supervisor may assign a match to an examiner
(`assign`); an examiner's queue (`queue`) is the live candidates in the cases they may see, assigned to them or to
nobody, leaving out those on items they uploaded (either side), highest score first, then oldest.

`calibration` counts, per modality and threshold, the matches reviewed and rejected: the observed false-match
rate (rejected / reviewed) of each setting, for tuning thresholds.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from sqlalchemy import case, delete, func, literal, or_, select, update
from sqlalchemy.orm import Session

from storage import events
from storage.matches import Match
from storage.review_records import REOPENED, VERDICTS, MatchDecision, MatchDisclosure, pair_identity
from storage.tables import Evidence, Finding, utcnow

DECIDED = VERDICTS  # the statuses a verdict leaves a match in


class ReviewRefused(Exception):
    """A decision, reopening or assignment that may not be made; `why` is one of the reasons below."""

    SUPERSEDED, DECIDED, UNDECIDED, UPLOADER = "superseded", "decided", "undecided", "uploader"

    def __init__(self, why: str, message: str) -> None:
        super().__init__(message)
        self.why = why


def uploaders(session: Session, *, match: Match) -> set[str]:
    """Who uploaded the evidence on either side: the items of both findings; for a register match, the reference
    photo (faces) or tenprint card (prints) it was made against."""
    items = {match.evidence_id, match.target_evidence_id}
    detail = match.detail if isinstance(match.detail, dict) else {}
    items.add(detail.get("tenprint_evidence_id"))
    reference = detail.get("reference_finding_id")
    if isinstance(reference, str):
        items.add(session.scalar(select(Finding.evidence_id).where(Finding.id == reference)))
    wanted = sorted(item for item in items if isinstance(item, str))
    return set(session.scalars(select(Evidence.received_by).where(Evidence.id.in_(wanted)))) if wanted else set()


def decide(session: Session, *, match: Match, verdict: str, reason: str, examiner: str) -> MatchDecision:
    """Confirm or reject a candidate match (`verdict` one of VERDICTS); ReviewRefused when it is superseded,
    already decided, or `examiner` uploaded evidence on one of its sides."""
    if verdict not in VERDICTS:
        raise ValueError(f"{verdict!r} is not one of {', '.join(VERDICTS)}")
    if examiner in uploaders(session, match=match):
        raise ReviewRefused(ReviewRefused.UPLOADER, "You uploaded evidence on one side of this match: another "
                                                    "examiner must review it.")
    now = utcnow()
    changed = session.execute(update(Match).where(Match.id == match.id, Match.status == "candidate",
                                                  Match.superseded_at.is_(None))
                              .values(status=verdict, reviewed_by=examiner, reviewed_at=now)
                              .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    session.refresh(match)
    if not changed:
        if match.superseded_at is not None:
            raise ReviewRefused(ReviewRefused.SUPERSEDED, "One of this match's findings was replaced by re-analysis: "
                                                          "review the match of its successor.")
        raise ReviewRefused(ReviewRefused.DECIDED, f"This match is already {match.status}; a supervisor may reopen "
                                                   "it.")
    identity = pair_identity(session, match=match) if verdict == "rejected" else None
    decision = MatchDecision(match_id=match.id, modality=match.modality, verdict=verdict, reason=reason,
                             examiner=examiner, at=now, score=match.score, threshold=match.threshold,
                             rejection_key=identity.key if identity else None,
                             regions=identity.regions if identity else None)
    session.add(decision)
    session.flush()
    events.publish_match(session, kind=events.MATCH_CONFIRMED if verdict == "confirmed" else events.MATCH_REJECTED,
                         match=match)
    return decision


def reopen(session: Session, *, match: Match, reason: str, supervisor: str) -> MatchDecision:
    """Make a decided match a candidate again (a rejection no longer keeps its pair away; the next confirmation
    is disclosed anew); ReviewRefused when it is undecided."""
    now = utcnow()
    changed = session.execute(update(Match).where(Match.id == match.id, Match.status.in_(DECIDED))
                              .values(status="candidate", reviewed_by=None, reviewed_at=None)
                              .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    session.refresh(match)
    if not changed:
        raise ReviewRefused(ReviewRefused.UNDECIDED, "This match is not decided: there is nothing to reopen.")
    session.execute(delete(MatchDisclosure).where(MatchDisclosure.match_id == match.id))
    decision = MatchDecision(match_id=match.id, modality=match.modality, verdict=REOPENED, reason=reason,
                             examiner=supervisor, at=now, score=match.score, threshold=match.threshold)
    session.add(decision)
    session.flush()
    return decision


def assign(session: Session, *, match: Match, examiner: str | None) -> None:
    """Assign the match to an examiner's queue (None: to nobody's, every examiner of its cases sees it)."""
    match.assigned_to = examiner
    match.assigned_at = utcnow() if examiner is not None else None
    session.flush()


def decisions_of(session: Session, *, match_id: str) -> Sequence[MatchDecision]:
    """The match's review history, oldest first."""
    return session.scalars(select(MatchDecision).where(MatchDecision.match_id == match_id)
                           .order_by(MatchDecision.id)).all()


def queue(session: Session, *, examiner: str, case_ids: Collection[str] | None, modality: str | None = None,
          case_id: str | None = None, offset: int = 0, limit: int = 50) -> Sequence[Match]:
    """The examiner's review queue: live candidates with a side in `case_ids` (None: every case), assigned to
    them or to nobody, none on evidence they uploaded; highest score first, then oldest (then by id)."""
    if case_ids is not None and not case_ids:
        return []
    query = select(Match).where(Match.status == "candidate", Match.superseded_at.is_(None),
                                or_(Match.assigned_to.is_(None), Match.assigned_to == examiner))
    if case_ids is not None:
        visible = sorted(set(case_ids))
        query = query.where(or_(Match.case_id.in_(visible), Match.target_case_id.in_(visible)))
    if case_id is not None:
        query = query.where(or_(Match.case_id == case_id, Match.target_case_id == case_id))
    if modality is not None:
        query = query.where(Match.modality == modality)
    mine = select(Evidence.id).where(Evidence.received_by == examiner)
    query = query.where(Match.evidence_id.not_in(mine),
                        or_(Match.target_evidence_id.is_(None), Match.target_evidence_id.not_in(mine)))
    return session.scalars(query.order_by(Match.score.desc(), Match.created_at, Match.id)
                           .offset(offset).limit(limit)).all()


@dataclass(frozen=True)
class Calibration:
    """The reviewed matches of one matcher setting: how many, how many rejected, and their ratio."""

    modality: str
    threshold: float
    reviewed: int
    confirmed: int
    rejected: int

    @property
    def false_match_rate(self) -> float | None:
        return self.rejected / self.reviewed if self.reviewed else None


def calibration(session: Session, *, modality: str | None = None) -> list[Calibration]:
    """Per modality and threshold (the one in force when each match was made), the matches whose latest verdict
    stands (superseded ones included: a verdict outlives its findings), by modality then threshold."""
    rejected = func.sum(case((Match.status == "rejected", 1), else_=literal(0)))
    query = (select(Match.modality, Match.threshold, func.count(Match.id), rejected)
             .where(Match.status.in_(DECIDED)).group_by(Match.modality, Match.threshold)
             .order_by(Match.modality, Match.threshold))
    if modality is not None:
        query = query.where(Match.modality == modality)
    return [Calibration(name, float(threshold), int(reviewed), int(reviewed) - int(no or 0), int(no or 0))
            for name, threshold, reviewed, no in session.execute(query).tuples()]
