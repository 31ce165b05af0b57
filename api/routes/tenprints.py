"""The fingerprint gallery: enrol an analysed print as a finger of a registered person, list a person's tenprint
records, withdraw one, and the gallery's size.

A tenprint record joins two kinds of data, and each keeps its own rules (`api.routes.registers`):

* the person is register data: enrolling and withdrawing are register writes (supervisors and case systems,
  `Writer`); reading a person's records is a consultation (`Reader` with a stated purpose, `PurposeDep`); every
  request notes the person (by national number) for the audit log, and names the record in its detail;
* the print is evidence of a case: it is enrolled only by a caller who may see that case (an item of a case
  hidden from the caller does not exist for it: 404, checked before the role, like a reference photo's), and a
  record is listed with its evidence id and case only to a reader who may see that case (else withheld, like a
  finding of an unassigned case in a match: nothing of it is named).

What `storage.tenprints.enrol` refuses is answered as problem details with its reason: 409 when the print or the
finger is enrolled already (withdraw that record first) or when the item has no template (not analysed as a
fingerprint yet, or no print found), 422 when the print itself cannot serve (under the NFIQ 2 floor of its
impression type, not declared a fingerprint). The gallery's size names no one and needs no purpose.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from sqlalchemy import distinct, func, select
from sqlalchemy.orm import Session

from api.access import note_of, note_persons
from api.deps import CurrentEvidence, Principal, PurposeDep, SessionDep, case_visible
from api.problems import Problem
from api.routes.registers import Reader, RecordId, Writer, note_resource
from api.schemas.tenprints import GalleryRead, TenprintEnrol, TenprintRead
from storage import matching, persons, records, tenprints
from storage.persons import Person
from storage.tenprints import EnrolmentRefused, TenprintRecord

router = APIRouter(tags=["registers"])


def _person(request: Request, session: Session, person_id: str) -> Person:
    """The registered person (404 when there is none), noted for the audit log."""
    person = persons.get_person_by_id(session, person_id=person_id)
    if person is None:
        raise Problem(404, "Person not found", f"There is no person {person_id} in the register.")
    note_resource(request, person.id)
    note_persons(request, [person.national_number])
    return person


def _note_record(request: Request, record: TenprintRecord) -> None:
    """Name the tenprint record in the request's audit entry (a withdrawal leaves no other trace)."""
    note = note_of(request)
    if note is not None:
        note.detail["tenprint"] = {"record_id": record.id, "evidence_id": record.evidence_id,
                                   "finger": record.finger, "impression": record.impression}


def _read(session: Session, principal: Principal, record: TenprintRecord) -> TenprintRead:
    """The record as `principal` may see it: its print's evidence id and case only when that case is visible."""
    evidence = records.get_evidence(session, evidence_id=record.evidence_id)
    shown = evidence is not None and case_visible(session, principal, evidence.case_id)
    return TenprintRead(id=record.id, person_id=record.person_id, finger=record.finger,
                        finger_name=tenprints.finger_name(record.finger), impression=record.impression,
                        nfiq2=record.nfiq2, minutiae=record.minutiae,
                        evidence_id=record.evidence_id if shown else None,
                        case_id=evidence.case_id if shown and evidence is not None else None,
                        evidence_withheld=not shown, enrolled_by=record.enrolled_by, enrolled_at=record.enrolled_at)


def _refused(session: Session, *, person_id: str, evidence_id: str, body: TenprintEnrol,
             reason: EnrolmentRefused) -> Problem:
    """The answer to a refused enrolment, its status read from the records that refused it (not from the words)."""
    taken = any((record.finger, record.impression) == (body.finger, body.impression)
                for record in tenprints.tenprints_of(session, person_id=person_id))
    if taken or tenprints.persons_enrolled(session, evidence_id=evidence_id):
        return Problem(409, "Enrolment contradicts a record", str(reason))
    if matching.template_of(session, evidence_id=evidence_id) is None:
        return Problem(409, "No fingerprint template", str(reason))
    return Problem(422, "Print refused", str(reason))


@router.put("/persons/{person_id}/tenprints/{evidence_id}", response_model=TenprintRead,
            responses={201: {"model": TenprintRead, "description": "enrolled"},
                       409: {"description": "the print or the finger is enrolled already, or it has no template"},
                       422: {"description": "the print cannot serve as a known print (the reason says why)"}})
def enrol_print(request: Request, response: Response, person_id: RecordId, evidence: CurrentEvidence,
                body: TenprintEnrol, session: SessionDep, principal: Writer) -> TenprintRead:
    """Enrol an analysed fingerprint item the caller may see as finger `finger` of the person (201; 200 when this
    record exists already). An item of a case hidden from the caller does not exist for it (404, before the role
    is checked)."""
    person = _person(request, session, person_id)
    try:
        record, new = tenprints.enrol(session, person_id=person.id, evidence_id=evidence.id, finger=body.finger,
                                      impression=body.impression, enrolled_by=principal.name)
    except EnrolmentRefused as exc:
        raise _refused(session, person_id=person.id, evidence_id=evidence.id, body=body, reason=exc) from None
    _note_record(request, record)
    response.status_code = status.HTTP_201_CREATED if new else status.HTTP_200_OK
    return _read(session, principal, record)


@router.get("/persons/{person_id}/tenprints", response_model=list[TenprintRead])
def person_tenprints(request: Request, person_id: RecordId, session: SessionDep, principal: Reader,
                     purpose: PurposeDep) -> list[TenprintRead]:
    """The person's tenprint records, by finger then impression; needs a stated purpose."""
    person = _person(request, session, person_id)
    return [_read(session, principal, record) for record in tenprints.tenprints_of(session, person_id=person.id)]


@router.delete("/persons/{person_id}/tenprints/{record_id}", status_code=status.HTTP_204_NO_CONTENT)
def withdraw_print(request: Request, person_id: RecordId, record_id: RecordId, session: SessionDep,
                   principal: Writer) -> Response:
    """Withdraw a tenprint record of the person (the print stays evidence); 404 when the person has no such
    record."""
    person = _person(request, session, person_id)
    record = next((r for r in tenprints.tenprints_of(session, person_id=person.id) if r.id == record_id), None)
    if record is None:
        raise Problem(404, "Tenprint record not found", f"Person {person.id} has no tenprint record {record_id}.")
    _note_record(request, record)
    tenprints.withdraw(session, record_id=record.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/galleries/fingerprints", response_model=GalleryRead)
def fingerprint_gallery(session: SessionDep, principal: Reader) -> GalleryRead:
    """How many templates are held for matching, and how many tenprint records of how many persons."""
    state = tenprints.gallery_state(session)
    enrolled, enrolled_persons = session.execute(select(func.count(TenprintRecord.id),
                                                        func.count(distinct(TenprintRecord.person_id)))).one()
    return GalleryRead(templates=state.count, newest_template_id=state.max_id, records=int(enrolled),
                       persons=int(enrolled_persons))
