"""The fingerprint gallery: tenprint records of registered persons, fed by the fingerprints analyzer (keyword-only).

A tenprint record says that one fingerprint evidence item is finger `finger` of a registered person, taken as an
`impression` of some type. The print itself is analysed like any evidence (`workers.analyzers.fingerprints`): its
minutiae template is the `fingerprint.template` finding, held for matching in `fingerprint_templates`. `enrol`
links an analysed item to the person; it refuses an item without a template, an undeclared print, and a print
whose NFIQ 2 is under the floor of its impression type (`NFIQ2_FLOORS`), saying which floor and why.

Finger positions are the ISO/IEC 19794-2 and ANSI/NIST-ITL finger codes 1-10 (`FINGER_POSITIONS`); impression
types are one vocabulary (`IMPRESSIONS`): "rolled" (nail to nail), "plain" (a flat or slap impression: ANSI/NIST's
"plain", also called flat), "latent" (a latent print attributed to the person by an examiner).

A record keeps the template and finding it was enrolled from, for the record; the gallery (`gallery_hits`) joins
the item's *current* template, so re-analysing a print (a new analyzer version) keeps it enrolled. One record per
(person, finger, impression), and one per print item: a print is one finger of one person. Enrolling the same
item again as the same finger is a no-op; anything else that would contradict a record is refused
(`EnrolmentRefused`): withdraw the record first. A new record is re-matched with the older prints of every case
(`storage.rematch`: one job, run later), so a latent left before the enrolment finds the person.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.persons import Person
from storage.rematch import queue_rematch
from storage.tables import AnalysisRun, Base, CustodyEvent, Evidence, Finding, FingerprintTemplate, new_id, utcnow

TEMPLATE_KIND = "fingerprint.template"  # the fingerprints analyzer's finding (workers.analyzers.fingerprints.KIND)
FINGER_POSITIONS = {
    1: "right thumb", 2: "right index", 3: "right middle", 4: "right ring", 5: "right little",
    6: "left thumb", 7: "left index", 8: "left middle", 9: "left ring", 10: "left little",
}
IMPRESSIONS = ("rolled", "plain", "latent")
# NFIQ 2 scores 0-100 (ISO/IEC 29794-4); NIST's documentation reads 0-20 as very poor and 21-40 as poor quality.
# A known print is the reference every future latent is compared with, and a person can be printed again: a
# rolled or plain print under 30 is refused and should be recaptured. A latent is what the scene left; it cannot
# be recaptured, so only the very poor are refused. Measured: synthetic impressions 44-57, the real latent
# (wsq's test print) 23, its distorted re-impressions 3-5.
NFIQ2_FLOORS = {"rolled": 30, "plain": 30, "latent": 20}


class EnrolmentRefused(ValueError):
    """The print cannot be enrolled: the message says why (and what to do)."""


class TenprintRecord(Base):
    """One finger of a registered person: a fingerprint evidence item and the impression it is."""

    __tablename__ = "tenprint_records"
    __table_args__ = (UniqueConstraint("person_id", "finger", "impression", name="uq_tenprint_records_finger"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    finger: Mapped[int] = mapped_column(Integer)  # 1-10, FINGER_POSITIONS
    impression: Mapped[str] = mapped_column(String(20))  # one of IMPRESSIONS
    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), unique=True)
    # The template and finding enrolled (no foreign keys: re-analysis replaces both, and the record stays).
    template_id: Mapped[int] = mapped_column(Integer)
    finding_id: Mapped[str] = mapped_column(String(36))
    nfiq2: Mapped[int | None] = mapped_column(Integer)
    minutiae: Mapped[int] = mapped_column(Integer)
    enrolled_by: Mapped[str] = mapped_column(String(200))
    enrolled_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


@dataclass(frozen=True)
class GalleryState:
    """What identifies the set of held templates (`fingerprint_templates`), for a matcher's cached index."""

    count: int
    max_id: int
    max_finding_id: str | None  # tells a template re-inserted under a reused id (SQLite) from the one it replaced


@dataclass(frozen=True)
class Enrolled:
    """A tenprint record of a print found in a search: whose finger it is."""

    record_id: str
    person_id: str
    finger: int
    impression: str


@dataclass(frozen=True)
class GalleryHit:
    """A held template, described for a match: its item, case, finding, quality and tenprint records."""

    template_id: int
    evidence_id: str
    case_id: str
    finding_id: str
    analyzer: str
    analyzer_version: str
    minutiae: int
    nfiq2: int | None
    enrolled: tuple[Enrolled, ...]


def finger_name(finger: int) -> str:
    return FINGER_POSITIONS.get(finger, "unknown finger")


def enrol(session: Session, *, person_id: str, evidence_id: str, finger: int, impression: str,
          enrolled_by: str) -> tuple[TenprintRecord, bool]:
    """Enrol the analysed print `evidence_id` as finger `finger` of the person; the record and whether it is new.

    Idempotent: the same item as the same finger and impression of the same person returns the existing record.
    Raises `EnrolmentRefused` with the reason otherwise (see the module's description).
    """
    if finger not in FINGER_POSITIONS:
        raise EnrolmentRefused(f"finger position {finger} is not one of 1-10 (ISO/ANSI-NIST finger codes: "
                               "1 right thumb ... 5 right little, 6 left thumb ... 10 left little)")
    if impression not in IMPRESSIONS:
        raise EnrolmentRefused(f"impression {impression!r} is not one of {', '.join(IMPRESSIONS)}")
    if session.get(Person, person_id) is None:
        raise EnrolmentRefused(f"person {person_id} is not in the register")
    if session.get(Evidence, evidence_id) is None:
        raise EnrolmentRefused(f"evidence {evidence_id} does not exist")
    existing = session.scalar(select(TenprintRecord).where(TenprintRecord.evidence_id == evidence_id))
    if existing is not None:
        if (existing.person_id, existing.finger, existing.impression) == (person_id, finger, impression):
            return existing, False
        raise EnrolmentRefused(f"evidence {evidence_id} is already enrolled as the {finger_name(existing.finger)} "
                               f"({existing.impression}) of person {existing.person_id}: a print is one finger of "
                               "one person; withdraw that record first")
    taken = session.scalar(select(TenprintRecord).where(TenprintRecord.person_id == person_id,
                                                        TenprintRecord.finger == finger,
                                                        TenprintRecord.impression == impression))
    if taken is not None:
        raise EnrolmentRefused(f"the {finger_name(finger)} ({impression}) of person {person_id} is already enrolled "
                               f"from evidence {taken.evidence_id}; withdraw that record to replace it")
    template, finding = _template_of(session, evidence_id=evidence_id)
    if finding.data.get("declared") is False:
        raise EnrolmentRefused(f"evidence {evidence_id} was not declared a fingerprint at upload (the analyzer only "
                               "recognised a print in it): a gallery print must be declared one")
    floor = NFIQ2_FLOORS[impression]
    if template.nfiq2 is None or template.nfiq2 < floor:
        quality = "no NFIQ 2 score" if template.nfiq2 is None else f"NFIQ 2 {template.nfiq2}"
        advice = "recapture the finger" if impression != "latent" else "it is too poor to serve as a known print"
        raise EnrolmentRefused(f"the print of evidence {evidence_id} has {quality}, under the floor of {floor} for a "
                               f"{impression} print (NFIQ 2 0-20 is very poor, 21-40 poor: a poor known print "
                               f"misses the latents compared with it later): {advice}")
    record = TenprintRecord(person_id=person_id, finger=finger, impression=impression, evidence_id=evidence_id,
                            template_id=template.id, finding_id=finding.id, nfiq2=template.nfiq2,
                            minutiae=template.minutiae, enrolled_by=enrolled_by)
    session.add(record)
    session.add(CustodyEvent(evidence_id=evidence_id, actor=enrolled_by, action="tenprint_enrolled", detail={
        "person_id": person_id, "finger": finger, "finger_name": finger_name(finger), "impression": impression,
        "template_id": template.id, "nfiq2": template.nfiq2}))
    session.flush()
    queue_rematch(session, target_kind="tenprint", target_ids=[record.id], reason="enrolled")
    return record, True


def _template_of(session: Session, *, evidence_id: str) -> tuple[FingerprintTemplate, Finding]:
    """The item's current template and its finding, or `EnrolmentRefused` saying why there is none."""
    row = session.execute(select(FingerprintTemplate, Finding)
                          .join(Finding, Finding.id == FingerprintTemplate.finding_id)
                          .where(FingerprintTemplate.evidence_id == evidence_id)
                          .order_by(FingerprintTemplate.id.desc()).limit(1)).tuples().first()
    if row is not None:
        return row
    run = session.scalar(select(AnalysisRun).where(AnalysisRun.evidence_id == evidence_id,
                                                   AnalysisRun.analyzer == "fingerprints")
                         .order_by(AnalysisRun.finished_at.desc()).limit(1))
    if run is None:
        why = "no fingerprint analysis of it has ended (declare it a fingerprint at upload, or wait for analysis)"
    elif run.status == "failed":
        why = f"the fingerprints analyzer refused it: {run.error or 'no reason recorded'}"
    else:
        why = "the fingerprints analyzer found no print in it"
    raise EnrolmentRefused(f"evidence {evidence_id} has no fingerprint template: {why}")


def withdraw(session: Session, *, record_id: str) -> bool:
    """Remove a tenprint record (the print stays evidence); False when there was none."""
    record = session.get(TenprintRecord, record_id)
    if record is None:
        return False
    session.delete(record)
    session.flush()
    return True


def tenprints_of(session: Session, *, person_id: str) -> Sequence[TenprintRecord]:
    """The person's records, by finger then impression."""
    return session.scalars(select(TenprintRecord).where(TenprintRecord.person_id == person_id)
                           .order_by(TenprintRecord.finger, TenprintRecord.impression)).all()


def gallery_state(session: Session) -> GalleryState:
    """The count and newest id of the held templates (one query and one lookup)."""
    count, max_id = session.execute(select(func.count(FingerprintTemplate.id),
                                           func.max(FingerprintTemplate.id))).one()
    finding = None if max_id is None else session.scalar(select(FingerprintTemplate.finding_id)
                                                         .where(FingerprintTemplate.id == max_id))
    return GalleryState(int(count), int(max_id or 0), finding)


def template_of_finding(session: Session, *, finding_id: str) -> FingerprintTemplate | None:
    """The template held for a `fingerprint.template` finding."""
    return session.scalar(select(FingerprintTemplate).where(FingerprintTemplate.finding_id == finding_id).limit(1))


def gallery_hits(session: Session, *, template_ids: Sequence[int]) -> dict[int, GalleryHit]:
    """The held templates among `template_ids` that still exist, described, with their items' tenprint records."""
    if not template_ids:
        return {}
    rows = session.execute(select(FingerprintTemplate, Finding.analyzer, AnalysisRun.analyzer_version)
                           .join(Finding, Finding.id == FingerprintTemplate.finding_id)
                           .join(AnalysisRun, AnalysisRun.id == Finding.run_id)
                           .where(FingerprintTemplate.id.in_(list(template_ids)))).tuples().all()
    items = sorted({template.evidence_id for template, _, _ in rows})
    enrolled: dict[str, list[Enrolled]] = {}
    if items:
        for record in session.scalars(select(TenprintRecord).where(TenprintRecord.evidence_id.in_(items))):
            enrolled.setdefault(record.evidence_id, []).append(
                Enrolled(record.id, record.person_id, record.finger, record.impression))
    return {template.id: GalleryHit(template.id, template.evidence_id, template.case_id, template.finding_id,
                                    analyzer, version, template.minutiae, template.nfiq2,
                                    tuple(enrolled.get(template.evidence_id, ())))
            for template, analyzer, version in rows}


def persons_enrolled(session: Session, *, evidence_id: str) -> set[str]:
    """The persons this print item is enrolled for (at most one)."""
    return set(session.scalars(select(TenprintRecord.person_id).where(TenprintRecord.evidence_id == evidence_id)))
