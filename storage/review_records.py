"""What the review of matches keeps (issue 13): examiners' decisions, disclosures to investigators, and the
identity of a rejected pair that makes it never proposed again (keyword-only access).

`match_decisions` is the history of every verdict on a match, never rewritten: "confirmed" or "rejected" by a
forensic examiner, "reopened" by a supervisor (the match is a candidate again), each with its reason, who gave it
and when (`storage.reviews` writes them and keeps `Match.status` in step). `match_disclosures` says which
investigator has been shown the register data behind a confirmed match, so that the first release to each is
logged as a disclosure and later ones as consultations.

A rejected pair never returns. Re-analysis replaces findings (new ids), a model upgrade reads them a little
differently, and a register re-import may give a person or vehicle a new id: none of these must bring back a pair
an examiner rejected. So a rejection records the pair's *identity* (`pair_identity`), built from what outlives
them all:

* a finding side is its evidence item's content (`evidence:<sha256>`, the same after a re-import of the item)
  and a stable descriptor of the finding within it:
  - a face, or a plate the plates analyzer read (`faces.face`, `plates.plate`): its *region*, the frame and box,
    kept beside the key and compared by overlap (same frame, intersection over union at least SAME_REGION_IOU),
    so a detector upgrade that moves a box by a few pixels is the same face or plate, and another face in the
    same photo is not;
  - a plate read without a box (in text, `entity.plate`, or a reading without one): its plate key;
  - an identifier read in text (`entity.<kind>`): its kind and value ("national_number:85073003328");
  - a fingerprint or an image (one per item): nothing more, the item is the side;
* a register side is its natural key: a person's national number, a vehicle's country and plate key.

The key is the SHA-256 of the modality and both sides' texts in sorted order (so either side may propose the pair),
which keeps national numbers and plates out of the table. `standing_rejection` finds a rejection with the same key
and overlapping regions whose match has not been reopened since; `storage.matches.add_match` refuses to record
such a pair. A finding already deleted when its pair is rejected is named by its id (it can only be matched again
through its successor's own review).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, aliased, mapped_column

from storage.identifiers import plate_key
from storage.persons import Person
from storage.tables import Base, Evidence, Finding, utcnow
from storage.vehicles import Vehicle

VERDICTS = ("confirmed", "rejected")  # an examiner's; storage.matches.MATCH_STATUSES less "candidate"
REOPENED = "reopened"  # a supervisor's: the match is a candidate again
DECISIONS = (*VERDICTS, REOPENED)
REGION_KINDS = frozenset({"faces.face", "plates.plate"})
SAME_REGION_IOU = 0.5


class MatchDecision(Base):
    """One verdict on a match, or its reopening: the history of its review. Rows are only ever added."""

    __tablename__ = "match_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    match_id: Mapped[str] = mapped_column(ForeignKey("matches.id"), index=True)
    modality: Mapped[str] = mapped_column(String(20))
    verdict: Mapped[str] = mapped_column(String(20))  # one of DECISIONS
    reason: Mapped[str] = mapped_column(Text)
    examiner: Mapped[str] = mapped_column(String(200))  # who decided (a supervisor for a reopening)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    score: Mapped[float] = mapped_column(Float)  # the match's score and threshold when decided (for the record)
    threshold: Mapped[float] = mapped_column(Float)
    # A rejection's pair identity (see the module): the key, and the regions of its sides (None: no region).
    rejection_key: Mapped[str | None] = mapped_column(String(64), index=True)
    regions: Mapped[list[Any] | None] = mapped_column(JSON)


class MatchDisclosure(Base):
    """The register data behind a confirmed match was shown to this investigator (the first time: a disclosure)."""

    __tablename__ = "match_disclosures"

    match_id: Mapped[str] = mapped_column(ForeignKey("matches.id"), primary_key=True)
    recipient: Mapped[str] = mapped_column(String(200), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Sides(Protocol):
    """A match's two sides as `storage.matches.Match` and `NewMatch` both give them."""

    @property
    def modality(self) -> str: ...
    @property
    def finding_id(self) -> str: ...
    @property
    def evidence_id(self) -> str: ...
    @property
    def target_kind(self) -> str: ...
    @property
    def target_id(self) -> str: ...
    @property
    def target_evidence_id(self) -> str | None: ...


@dataclass(frozen=True)
class Side:
    text: str
    region: dict[str, Any] | None = None  # {"frame", "box": [x1, y1, x2, y2]}


@dataclass(frozen=True)
class PairIdentity:
    """What a rejection remembers of a pair (see the module): sides in sorted order, the key, their regions."""

    modality: str
    sides: tuple[Side, Side]

    @property
    def key(self) -> str:
        text = "|".join((self.modality, *(side.text for side in self.sides)))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def regions(self) -> list[dict[str, Any] | None]:
        return [side.region for side in self.sides]


def pair_identity(session: Session, *, match: Sides) -> PairIdentity:
    """The pair's identity: what a rejection of it remembers (see the module)."""
    side_a = _finding_side(session, match.finding_id, match.evidence_id)
    if match.target_kind == "finding":
        side_b = _finding_side(session, match.target_id, match.target_evidence_id)
    else:
        side_b = _register_side(session, match.target_kind, match.target_id)
    first, second = sorted((side_a, side_b), key=lambda side: side.text)
    return PairIdentity(match.modality, (first, second))


def _finding_side(session: Session, finding_id: str, evidence_id: str | None) -> Side:
    evidence = session.get(Evidence, evidence_id) if evidence_id else None
    item = f"evidence:{evidence.sha256}" if evidence is not None else f"evidence-id:{evidence_id}"
    finding = session.get(Finding, finding_id)
    if finding is None:
        return Side(f"{item}#finding:{finding_id}")
    data = finding.data if isinstance(finding.data, dict) else {}
    box = data.get("box")
    if finding.kind in REGION_KINDS and isinstance(box, list) and len(box) == 4:
        return Side(f"{item}#{finding.kind}", {"frame": data.get("frame"), "box": [float(v) for v in box]})
    if finding.kind in ("plates.plate", "entity.plate"):
        reading = data.get("text") or data.get("value") or data.get("text_read") or finding.label or ""
        return Side(f"{item}#plate:{plate_key(str(reading))}")
    if finding.kind.startswith("entity."):
        value = data.get("value") or finding.label or ""
        return Side(f"{item}#{finding.kind.removeprefix('entity.')}:{value}")
    return Side(item)


def _register_side(session: Session, kind: str, record_id: str) -> Side:
    if kind == "person" and (person := session.get(Person, record_id)) is not None:
        return Side(f"person:{person.national_number}")
    if kind == "vehicle" and (vehicle := session.get(Vehicle, record_id)) is not None:
        return Side(f"vehicle:{vehicle.country}:{vehicle.plate_key}")
    return Side(f"{kind}-id:{record_id}")


def standing_rejection(session: Session, *, match: Sides) -> str | None:
    """The id of a rejected match with the same pair identity (not reopened since), or None."""
    if not session.scalar(select(exists().where(MatchDecision.modality == match.modality,
                                                MatchDecision.verdict == "rejected"))):
        return None  # nothing of this modality was ever rejected: no need to describe the pair
    identity = pair_identity(session, match=match)
    later = aliased(MatchDecision)
    reopened = exists().where(later.match_id == MatchDecision.match_id, later.id > MatchDecision.id,
                              later.verdict == REOPENED)
    found = session.execute(select(MatchDecision.match_id, MatchDecision.regions)
                            .where(MatchDecision.rejection_key == identity.key, MatchDecision.verdict == "rejected",
                                   ~reopened).order_by(MatchDecision.id)).tuples()
    for match_id, regions in found:
        if _same_regions(list(regions or []), identity):
            return match_id
    return None


def _same_regions(stored: list[Any], identity: PairIdentity) -> bool:
    new = identity.regions
    orders = [new, new[::-1]] if identity.sides[0].text == identity.sides[1].text else [new]
    return len(stored) == len(new) and any(all(_same_region(old, now) for old, now in zip(stored, order, strict=True))
                                           for order in orders)


def _same_region(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    if old is None or new is None:
        return old is None and new is None
    return old.get("frame") == new.get("frame") and iou(old["box"], new["box"]) >= SAME_REGION_IOU


def iou(a: list[float], b: list[float]) -> float:
    """Intersection over union of two boxes [x1, y1, x2, y2]."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def record_disclosures(session: Session, *, match_ids: list[str], recipient: str) -> list[str]:
    """Note that these confirmed matches' register data was shown to `recipient`; those shown for the first time
    (a disclosure), in the order given."""
    wanted = list(dict.fromkeys(match_ids))
    if not wanted:
        return []
    known = set(session.scalars(select(MatchDisclosure.match_id).where(MatchDisclosure.match_id.in_(wanted),
                                                                       MatchDisclosure.recipient == recipient)))
    first = []
    for match_id in (m for m in wanted if m not in known):
        try:
            with session.begin_nested():
                session.add(MatchDisclosure(match_id=match_id, recipient=recipient))
                session.flush()
        except IntegrityError:  # another request disclosed it meanwhile: that one logged the disclosure
            continue
        first.append(match_id)
    return first
