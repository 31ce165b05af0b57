"""The fingerprint gallery: enrolling analysed prints of registered persons as tenprint records, and what is refused.

Templates are real MINDTCT extractions (synthetic fingers from `tests.fingerprint_samples`, and the one real
latent), recorded as the fingerprints analyzer records them (a `fingerprint.template` finding and its held template).
"""

from __future__ import annotations

import functools

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import matching, persons, tenprints
from storage.db import transaction
from storage.tables import CustodyEvent, Evidence
from storage.tenprints import NFIQ2_FLOORS, EnrolmentRefused, TenprintRecord
from tests import match_samples as samples
from tests.fingerprint_samples import extracted_iso, real_latent
from tests.register_samples import person

NFIQ2_BYTE = 20  # nbis' ISO record keeps the NFIQ 2 score as the finger quality (models.minutiae)


def print_item(session: Session, case_reference: str, iso: bytes, *, declared: bool = True) -> Evidence:
    """An evidence item declared a fingerprint whose analysis recorded `iso` as its template."""
    evidence = samples.item(session, case_reference)
    evidence.declared_kind = "fingerprint" if declared else None
    nfiq2 = iso[NFIQ2_BYTE]
    [finding_id] = samples.record(session, evidence, "fingerprints", "1.0.0", [
        ("fingerprint.template", f"NFIQ 2 {nfiq2}", {"declared": declared, "nfiq2": nfiq2})])
    matching.add_template(session, evidence_id=evidence.id, case_id=evidence.case_id, finding_id=finding_id, iso=iso,
                          minutiae=len(iso) // 6, nfiq2=nfiq2)
    session.flush()
    return evidence


def registered(session: Session, index: int) -> str:
    """A registered person's id."""
    return persons.put_person(session, row=persons.parse_person(person(index)))[0].id


@functools.cache
def real_latent_iso() -> bytes:
    """The real latent's template (NFIQ 2 23), as the analyzer extracts a declared print SIVV does not know."""
    from models.fingerprints import FingerprintExtractor, FingerprintImage

    extractor = FingerprintExtractor(check_fingerprint=False)
    extractor.load()
    image = FingerprintImage(pixels=real_latent().copy(), ppi=500.0, ppi_source="assumed", source_format="wsq")
    return extractor.predict(image).iso


def test_a_print_is_enrolled_once_as_a_finger_of_a_person(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        person_id = registered(session, 1)
        card = print_item(session, "REG-0001", extracted_iso(21, 0))
        record, new = tenprints.enrol(session, person_id=person_id, evidence_id=card.id, finger=2,
                                      impression="rolled", enrolled_by="examiner")
        again, new_again = tenprints.enrol(session, person_id=person_id, evidence_id=card.id, finger=2,
                                           impression="rolled", enrolled_by="someone else")
        assert new and not new_again and again.id == record.id
        assert (record.finger, record.nfiq2, record.enrolled_by) == (2, extracted_iso(21, 0)[NFIQ2_BYTE], "examiner")
        assert record.template_id == matching.template_of(session, evidence_id=card.id).id  # type: ignore[union-attr]
        events = session.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == card.id,
                                                            CustodyEvent.action == "tenprint_enrolled")).all()
        assert len(events) == 1 and events[0].detail["finger_name"] == "right index"
        assert [r.id for r in tenprints.tenprints_of(session, person_id=person_id)] == [record.id]


def test_contradicting_enrolments_are_refused_with_the_reason(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        person_id, other_id = registered(session, 2), registered(session, 3)
        card = print_item(session, "REG-0002", extracted_iso(21, 0))
        second = print_item(session, "REG-0002", extracted_iso(22, 0))
        tenprints.enrol(session, person_id=person_id, evidence_id=card.id, finger=2, impression="rolled",
                        enrolled_by="e")
        refusals = {
            "already enrolled as the right index": dict(person_id=other_id, evidence_id=card.id, finger=2,
                                                        impression="rolled"),
            "is already enrolled from evidence": dict(person_id=person_id, evidence_id=second.id, finger=2,
                                                      impression="rolled"),
            "not one of 1-10": dict(person_id=person_id, evidence_id=second.id, finger=11, impression="rolled"),
            "not one of rolled, plain, latent": dict(person_id=person_id, evidence_id=second.id, finger=3,
                                                     impression="flat"),
            "not in the register": dict(person_id="nobody", evidence_id=second.id, finger=3, impression="rolled"),
        }
        for reason, arguments in refusals.items():
            with pytest.raises(EnrolmentRefused, match=reason):
                tenprints.enrol(session, enrolled_by="e", **arguments)  # type: ignore[arg-type]
        plain, new = tenprints.enrol(session, person_id=person_id, evidence_id=second.id, finger=2,
                                     impression="plain", enrolled_by="e")
        assert new and len(tenprints.tenprints_of(session, person_id=person_id)) == 2
        assert tenprints.withdraw(session, record_id=plain.id) and not tenprints.withdraw(session, record_id=plain.id)


def test_an_item_without_a_template_or_undeclared_is_refused(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        person_id = registered(session, 4)
        photo = samples.item(session, "REG-0003")
        with pytest.raises(EnrolmentRefused, match="no fingerprint template: no fingerprint analysis of it has ended"):
            tenprints.enrol(session, person_id=person_id, evidence_id=photo.id, finger=1, impression="plain",
                            enrolled_by="e")
        samples.record(session, photo, "fingerprints", "1.0.0", [])
        with pytest.raises(EnrolmentRefused, match="found no print in it"):
            tenprints.enrol(session, person_id=person_id, evidence_id=photo.id, finger=1, impression="plain",
                            enrolled_by="e")
        undeclared = print_item(session, "REG-0003", extracted_iso(23, 0), declared=False)
        with pytest.raises(EnrolmentRefused, match="not declared a fingerprint"):
            tenprints.enrol(session, person_id=person_id, evidence_id=undeclared.id, finger=1, impression="plain",
                            enrolled_by="e")
        assert not session.scalars(select(TenprintRecord)).all()


def test_the_nfiq2_floor_refuses_a_poor_known_print(factory: sessionmaker[Session]) -> None:
    latent_iso = real_latent_iso()
    quality = latent_iso[NFIQ2_BYTE]
    assert NFIQ2_FLOORS["latent"] <= quality < NFIQ2_FLOORS["rolled"]  # measured 23
    with transaction(factory) as session:
        person_id = registered(session, 5)
        latent = print_item(session, "REG-0004", latent_iso)
        with pytest.raises(EnrolmentRefused, match=f"NFIQ 2 {quality}, under the floor of 30 for a rolled print.*"
                                                   "recapture the finger"):
            tenprints.enrol(session, person_id=person_id, evidence_id=latent.id, finger=7, impression="rolled",
                            enrolled_by="e")
        record, new = tenprints.enrol(session, person_id=person_id, evidence_id=latent.id, finger=7,
                                      impression="latent", enrolled_by="e")
        assert new and record.nfiq2 == quality
