"""Matches: what links a finding to a register record or to a finding in other evidence (keyword-only access).

A match has two sides. Side A is a finding (its evidence, case, analyzer and version); side B is a register record
(`target_kind` "vehicle" or "person", its id) or a finding in another evidence item (`target_kind` "finding",
with that item and its case). It says how strongly and how it matched (`score`, the `threshold` in force,
`method`: "exact", "alternative" (one of the reader's own alternative readings), "tolerant" (OCR confusions
applied)), which matcher made it, and what a reviewer needs (both readings, the vehicle's status) in `detail`.
Its `status` is an examiner's verdict, "candidate" until one is given (MATCH_STATUSES; `storage.reviews` gives
it, keeps the history in `storage.review_records.MatchDecision`, and a supervisor may assign the match to an
examiner, `assigned_to`).

Idempotent: (modality, side A finding, side B) is unique, and a finding-to-finding pair is kept once whichever
side proposes it again (`pair_key`, unique: also when two matcher actors match both items of a pair at once), so
matching an item twice adds nothing. A pair an examiner rejected is never recorded again, also after
re-analysis, a model upgrade or a re-import: `add_match` looks its identity up among the standing rejections
(`storage.review_records`, which says what identifies a pair beyond its finding and record ids).

Re-analysis replaces an analyzer's findings (new ids). A match is never deleted: when a finding on either of its
sides no longer exists, the match is marked `superseded_at` (`supersede_stale`) and kept, with its finding ids,
readings and verdict, for the record; the new findings get matches of their own. Listings leave superseded
matches out unless asked.

`match_keys` is the index by which a finding is found from other evidence: each matchable finding's keys (a plate
key, "iban:BE68...") with whether the key is what was read (`exact`) or one of the reader's alternatives. Keys
of an item are replaced each time the item is matched; a lookup joins the findings, so keys of findings replaced
since are never returned.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    and_,
    delete,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from storage.review_records import standing_rejection
from storage.tables import AnalysisRun, Base, Finding, new_id, utcnow

MODALITIES = ("plate", "entity", "face", "fingerprint", "image")
TARGET_KINDS = ("vehicle", "person", "finding")
METHODS = ("exact", "alternative", "tolerant", "similarity")  # similarity: a distance or score under a threshold
MATCH_STATUSES = ("candidate", "confirmed", "rejected")  # an examiner's verdict (issue 13); "candidate" until then


class Match(Base):
    """One link from a finding (side A) to a register record or another evidence's finding (side B)."""

    __tablename__ = "matches"
    __table_args__ = (
        UniqueConstraint("modality", "finding_id", "target_kind", "target_id", name="uq_matches_sides"),
        UniqueConstraint("pair_key", name="uq_matches_pair"),
        Index("ix_matches_target", "target_kind", "target_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    modality: Mapped[str] = mapped_column(String(20))  # one of MODALITIES
    # Side A. No foreign key to the finding: re-analysis deletes findings, and the match outlives them (superseded).
    finding_id: Mapped[str] = mapped_column(String(36), index=True)
    finding_kind: Mapped[str] = mapped_column(String(100))
    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), index=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id"), index=True)
    analyzer: Mapped[str] = mapped_column(String(100))
    analyzer_version: Mapped[str] = mapped_column(String(50))
    # Side B: a register record ("vehicle", "person") or a finding in other evidence ("finding").
    target_kind: Mapped[str] = mapped_column(String(20))  # one of TARGET_KINDS
    target_id: Mapped[str] = mapped_column(String(36))
    target_evidence_id: Mapped[str | None] = mapped_column(ForeignKey("evidence.id"), index=True)
    target_case_id: Mapped[str | None] = mapped_column(ForeignKey("cases.id"))
    target_analyzer: Mapped[str] = mapped_column(String(100))  # the analyzer of a finding; "register" otherwise
    target_version: Mapped[str | None] = mapped_column(String(50))
    # How it matched.
    score: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(20))  # one of METHODS
    matcher: Mapped[str] = mapped_column(String(100))
    matcher_version: Mapped[str] = mapped_column(String(50))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The examiner's verdict, and the end of the match's life when one of its findings was replaced.
    status: Mapped[str] = mapped_column(String(20), default="candidate")  # one of MATCH_STATUSES
    reviewed_by: Mapped[str | None] = mapped_column(String(200))
    reviewed_at: Mapped[dt.datetime | None] = mapped_column()
    assigned_to: Mapped[str | None] = mapped_column(String(200), index=True)  # the examiner a supervisor chose
    assigned_at: Mapped[dt.datetime | None] = mapped_column()
    superseded_at: Mapped[dt.datetime | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The two sides in an order that does not depend on who proposed the match (`pair_key`): unique.
    pair_key: Mapped[str | None] = mapped_column(String(120))


class MatchKey(Base):
    """A key by which a finding is found from other evidence (a plate key, "iban:BE68..."), per modality."""

    __tablename__ = "match_keys"
    __table_args__ = (Index("ix_match_keys_lookup", "modality", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    modality: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(200))
    exact: Mapped[bool] = mapped_column(Boolean)  # the finding's own reading (False: one of its alternatives)
    finding_id: Mapped[str] = mapped_column(String(36))
    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), index=True)


@dataclass(frozen=True)
class NewMatch:
    """A match to record (see `Match` for the fields)."""

    modality: str
    finding_id: str
    finding_kind: str
    evidence_id: str
    case_id: str
    analyzer: str
    analyzer_version: str
    target_kind: str
    target_id: str
    score: float
    threshold: float
    method: str
    matcher: str
    matcher_version: str
    target_analyzer: str = "register"
    target_version: str | None = None
    target_evidence_id: str | None = None
    target_case_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for value, vocabulary in ((self.modality, MODALITIES), (self.target_kind, TARGET_KINDS),
                                  (self.method, METHODS)):
            if value not in vocabulary:
                raise ValueError(f"{value!r} is not one of {', '.join(vocabulary)}")


@dataclass(frozen=True)
class KeyEntry:
    """One key of one finding, for `replace_keys`."""

    modality: str
    key: str
    exact: bool
    finding_id: str


@dataclass(frozen=True)
class FindingSide:
    """A recorded finding as matching sees it: where it is, what made it (analyzer and version), what it holds.
    A matcher's subject (side A, `workers.matchers.base.Subject`) and a finding found by its keys are both one."""

    finding_id: str
    evidence_id: str
    case_id: str
    kind: str
    analyzer: str
    analyzer_version: str
    label: str | None
    confidence: float | None
    data: dict[str, Any]

    @classmethod
    def of(cls, finding: Finding, analyzer_version: str) -> FindingSide:
        return cls(finding.id, finding.evidence_id, finding.case_id, finding.kind, finding.analyzer,
                   analyzer_version, finding.label, finding.confidence, dict(finding.data))


@dataclass(frozen=True)
class KeyHit(FindingSide):
    """A finding in other evidence found by one of its keys: which, and whether it is its own reading."""

    key: str
    exact: bool


def pair_key(*, modality: str, finding_id: str, target_kind: str, target_id: str) -> str:
    """The match's two sides, named the same whichever side proposed it (finding ids of a pair sorted)."""
    if target_kind == "finding":
        first, second = sorted((finding_id, target_id))
        return f"{modality}:{first}:finding:{second}"
    return f"{modality}:{finding_id}:{target_kind}:{target_id}"


def add_match(session: Session, *, match: NewMatch) -> tuple[Match, bool]:
    """Record the match unless it is already recorded (a finding pair in either direction); the row and whether
    it is new. Two processes recording the same pair at once (each matching one of its items) record it once:
    the pair key is unique. A pair an examiner rejected (the same two sides, whatever their finding ids now) is
    refused: the rejected match is returned, not new."""
    existing = _existing(session, match)
    if existing is not None:
        return existing, False
    rejected = standing_rejection(session, match=match)
    if rejected is not None:
        return session.get_one(Match, rejected), False
    row = Match(**{name: getattr(match, name) for name in NewMatch.__dataclass_fields__},
                pair_key=pair_key(modality=match.modality, finding_id=match.finding_id,
                                  target_kind=match.target_kind, target_id=match.target_id))
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:  # another process recorded the same match between our SELECT and INSERT
        found = _existing(session, match)
        assert found is not None
        return found, False
    return row, True


def refresh_register_match(session: Session, *, match: Match, score: float, detail: dict[str, Any]) -> bool:
    """A register match proposed again, with what the register says now (a vehicle reported stolen since it was
    matched): its score and detail are updated, the earlier detail kept under "earlier" and the verdict left as
    it is; whether anything changed. Finding-to-finding matches, superseded and rejected ones are left alone."""
    if match.target_kind == "finding" or match.superseded_at is not None or match.status == "rejected":
        return False
    current = {key: value for key, value in match.detail.items() if key != "earlier"}
    if current == detail and match.score == score:
        return False
    match.detail = {**detail, "earlier": {"score": match.score, "detail": current, "until": utcnow().isoformat()}}
    match.score = score
    return True


def _existing(session: Session, match: NewMatch) -> Match | None:
    same: ColumnElement[bool] = and_(Match.modality == match.modality, Match.finding_id == match.finding_id,
                                     Match.target_kind == match.target_kind, Match.target_id == match.target_id)
    if match.target_kind == "finding":
        same = or_(same, (Match.modality == match.modality) & (Match.finding_id == match.target_id)
                   & (Match.target_kind == "finding") & (Match.target_id == match.finding_id))
    same = or_(same, Match.pair_key == pair_key(modality=match.modality, finding_id=match.finding_id,
                                               target_kind=match.target_kind, target_id=match.target_id))
    return session.scalars(select(Match).where(same).limit(1)).first()


def replace_keys(session: Session, *, evidence_id: str, keys: Sequence[KeyEntry]) -> None:
    """The item's findings are found by these keys from now on (its earlier keys are dropped)."""
    session.execute(delete(MatchKey).where(MatchKey.evidence_id == evidence_id))
    unique = {(k.modality, k.key, k.exact, k.finding_id) for k in keys if k.key}
    session.add_all([MatchKey(modality=modality, key=key[:200], exact=exact, finding_id=finding_id,
                              evidence_id=evidence_id) for modality, key, exact, finding_id in sorted(unique)])
    session.flush()


def findings_by_keys(session: Session, *, modality: str, keys: Sequence[str],
                     exclude_evidence_id: str | None = None) -> list[KeyHit]:
    """Findings (in any case) that hold one of `keys`, other than the excluded item's, in one query."""
    wanted = sorted({key for key in keys if key})
    if not wanted:
        return []
    query = (select(MatchKey.key, MatchKey.exact, Finding, AnalysisRun.analyzer_version)
             .join(Finding, Finding.id == MatchKey.finding_id)
             .join(AnalysisRun, AnalysisRun.id == Finding.run_id)
             .where(MatchKey.modality == modality, MatchKey.key.in_(wanted)))
    if exclude_evidence_id is not None:
        query = query.where(MatchKey.evidence_id != exclude_evidence_id)
    hits = []
    for key, exact, finding, version in session.execute(query.order_by(MatchKey.id)).tuples():
        hits.append(KeyHit(**vars(FindingSide.of(finding, version)), key=key, exact=exact))
    return hits


def supersede_stale(session: Session, *, evidence_id: str) -> int:
    """Mark superseded the live matches touching the item (either side) whose finding no longer exists (it was
    replaced by re-analysis); returns how many. The rows stay, for the record."""
    side_b = aliased(Finding)
    live = select(Match.id).where(Match.superseded_at.is_(None),
                                  or_(Match.evidence_id == evidence_id, Match.target_evidence_id == evidence_id))
    gone_a = live.where(~select(Finding.id).where(Finding.id == Match.finding_id).exists())
    gone_b = live.where(Match.target_kind == "finding",
                        ~select(side_b.id).where(side_b.id == Match.target_id).exists())
    stale = set(session.scalars(gone_a)) | set(session.scalars(gone_b))
    if stale:
        session.execute(update(Match).where(Match.id.in_(sorted(stale))).values(superseded_at=utcnow()))
    return len(stale)


def matches_of(session: Session, *, evidence_id: str | None = None, case_id: str | None = None,
               finding_id: str | None = None, modality: str | None = None, include_superseded: bool = False,
               offset: int = 0, limit: int = 500) -> Sequence[Match]:
    """Matches with the item, case or finding on either side, highest score first."""
    query = select(Match)
    if evidence_id is not None:
        query = query.where(or_(Match.evidence_id == evidence_id, Match.target_evidence_id == evidence_id))
    if case_id is not None:
        query = query.where(or_(Match.case_id == case_id, Match.target_case_id == case_id))
    if finding_id is not None:
        query = query.where(or_(Match.finding_id == finding_id,
                                (Match.target_kind == "finding") & (Match.target_id == finding_id)))
    if modality is not None:
        query = query.where(Match.modality == modality)
    if not include_superseded:
        query = query.where(Match.superseded_at.is_(None))
    return session.scalars(query.order_by(Match.score.desc(), Match.created_at, Match.id)
                           .offset(offset).limit(limit)).all()


def matches_of_target(session: Session, *, target_kind: str, target_id: str,
                      include_superseded: bool = False) -> Sequence[Match]:
    """Matches to one register record (a vehicle, a person), highest score first."""
    query = select(Match).where(Match.target_kind == target_kind, Match.target_id == target_id)
    if not include_superseded:
        query = query.where(Match.superseded_at.is_(None))
    return session.scalars(query.order_by(Match.score.desc(), Match.created_at, Match.id)).all()
