"""The persons register: create, read, update, delete; lookup by national number or name; reference photos.

Every read needs a stated purpose and notes the persons it showed (by national number) for the audit log; writes
are for supervisors and case systems. The rules are in `api.routes.registers`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.access import note_persons
from api.deps import CurrentEvidence, PurposeDep, SessionDep
from api.problems import Problem
from api.routes.registers import Limit, Offset, Reader, RecordId, Writer, note_resource
from api.routes.vehicles import vehicle_read
from api.schemas.registers import PersonCreate, PersonRead, PersonUpdate, PhotoLink, VehicleRead
from storage import persons, vehicles
from storage.identifiers import national_number_digits
from storage.persons import Person
from storage.registers import CONTROL_CHARACTERS, RowError

router = APIRouter(prefix="/persons", tags=["registers"])
MIN_NAME_PREFIX = 2  # a one-letter prefix would page through the whole register


def person_read(session: Session, person: Person) -> PersonRead:
    """The person with the evidence ids of their reference photos."""
    return PersonRead.model_validate(person).model_copy(
        update={"photos": list(persons.photos_of(session, person_id=person.id))})


def shown(request: Request, session: Session, found: Sequence[Person]) -> list[PersonRead]:
    """The persons as answered, each noted for the audit log by national number."""
    note_persons(request, [person.national_number for person in found])
    return [person_read(session, person) for person in found]


def _parse(fields: dict[str, Any]) -> persons.PersonRow:
    text = {name: (value.isoformat() if hasattr(value, "isoformat") else value) for name, value in fields.items()}
    try:
        return persons.parse_person(text)
    except RowError as exc:
        raise Problem(422, "Invalid person", str(exc)) from None


def _load(request: Request, session: Session, person_id: str) -> Person:
    person = persons.get_person_by_id(session, person_id=person_id)
    if person is None:
        raise Problem(404, "Person not found", f"There is no person {person_id} in the register.")
    note_resource(request, person.id)
    return person


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PersonRead,
             responses={409: {"description": "the national number is registered already"}})
def create_person(request: Request, body: PersonCreate, session: SessionDep, principal: Writer) -> PersonRead:
    """Register a person; the national number is checked (check number, birth date) and kept without separators."""
    row = _parse(body.model_dump())
    if persons.get_person(session, national_number=row.national_number) is not None:
        raise Problem(409, "Person exists", "A person with this national number is registered already.")
    try:
        person, _ = persons.put_person(session, row=row)
    except IntegrityError:  # registered by a concurrent request between the check and the insert
        raise Problem(409, "Person exists", "A person with this national number is registered already.") from None
    note_resource(request, person.id)
    return shown(request, session, [person])[0]


@router.get("", response_model=list[PersonRead])
def lookup_persons(
        request: Request, session: SessionDep, principal: Reader, purpose: PurposeDep,
        national_number: Annotated[str | None, Query(min_length=1, max_length=32,
                                                     description="with or without separators")] = None,
        name: Annotated[str | None, Query(min_length=MIN_NAME_PREFIX, max_length=200,
                                          description="the beginning of a family or given name; case and "
                                                      "accents ignored, taken literally (no wildcards)")] = None,
        offset: Offset = 0, limit: Limit = 50) -> list[PersonRead]:
    """Persons by national number or by name prefix (exactly one of the two); needs a stated purpose."""
    if (national_number is None) == (name is None):
        raise Problem(422, "One lookup at a time", "Give exactly one of national_number and name.")
    if national_number is not None:
        digits = national_number_digits(national_number)
        if not (digits.isascii() and digits.isdigit() and len(digits) == 11):
            return []  # nobody holds it (and PostgreSQL holds no NUL: such a number is never looked up)
        note_persons(request, [digits])  # the number looked up is noted even when nobody holds it
        person = persons.get_person(session, national_number=digits)
        return shown(request, session, [person] if person is not None else [])
    assert name is not None
    if len(name.strip()) < MIN_NAME_PREFIX:
        raise Problem(422, "Name too short", f"A name lookup needs at least {MIN_NAME_PREFIX} characters.")
    if CONTROL_CHARACTERS.search(name):
        raise Problem(422, "Invalid name", "A name holds no control characters.")
    return shown(request, session, persons.find_persons(session, name_prefix=name, offset=offset, limit=limit))


@router.get("/{person_id}", response_model=PersonRead)
def get_person(request: Request, person_id: RecordId, session: SessionDep, principal: Reader,
               purpose: PurposeDep) -> PersonRead:
    return shown(request, session, [_load(request, session, person_id)])[0]


@router.patch("/{person_id}", response_model=PersonRead)
def update_person(request: Request, person_id: RecordId, body: PersonUpdate, session: SessionDep,
                  principal: Writer, purpose: PurposeDep) -> PersonRead:
    """Change the given fields (the national number stays: it is the key); the record is checked again whole.
    Needs a stated purpose: the answer is the whole record, so without one a write would be a read without."""
    person = _load(request, session, person_id)
    current = persons.row_of(person)
    fields: dict[str, Any] = {"national_number": current.national_number, "family_name": current.family_name,
                              "given_names": current.given_names, "date_of_birth": current.date_of_birth,
                              "nationality": current.nationality}
    fields.update({name: getattr(body, name) for name in body.model_fields_set})
    person, _ = persons.put_person(session, row=_parse(fields))
    return shown(request, session, [person])[0]


@router.delete("/{person_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_person(request: Request, person_id: RecordId, session: SessionDep, principal: Writer) -> Response:
    """Remove the person, their reference-photo links and watchlist memberships (the evidence items stay)."""
    person = _load(request, session, person_id)
    note_persons(request, [person.national_number])
    persons.delete_person(session, person=person)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{person_id}/vehicles", response_model=list[VehicleRead])
def person_vehicles(request: Request, person_id: RecordId, session: SessionDep, principal: Reader,
                    purpose: PurposeDep) -> list[VehicleRead]:
    """The vehicles registered to the person (by owner national number); needs a stated purpose."""
    person = _load(request, session, person_id)
    note_persons(request, [person.national_number])
    return [vehicle_read(vehicle, show_owner=True)
            for vehicle in vehicles.vehicles_of_owner(session, national_number=person.national_number)]


@router.put("/{person_id}/photos/{evidence_id}", response_model=PhotoLink,
            responses={201: {"model": PhotoLink, "description": "linked"}})
def link_photo(request: Request, response: Response, person_id: RecordId, evidence: CurrentEvidence,
               session: SessionDep, principal: Writer) -> PhotoLink:
    """Make an evidence item the caller may see a reference photo of the person (201; 200 when it was one).
    An item of a case hidden from the caller does not exist for it (404, before the role is checked)."""
    person = _load(request, session, person_id)
    note_persons(request, [person.national_number])
    linked = persons.link_photo(session, person_id=person.id, evidence_id=evidence.id, added_by=principal.name)
    response.status_code = status.HTTP_201_CREATED if linked else status.HTTP_200_OK
    return PhotoLink(person_id=person.id, evidence_id=evidence.id, linked=linked)


@router.delete("/{person_id}/photos/{evidence_id}", status_code=status.HTTP_204_NO_CONTENT)
def unlink_photo(request: Request, person_id: RecordId, evidence: CurrentEvidence, session: SessionDep,
                 principal: Writer) -> Response:
    """The evidence item is no longer a reference photo of the person (404 when it was not one)."""
    person = _load(request, session, person_id)
    note_persons(request, [person.national_number])
    if not persons.unlink_photo(session, person_id=person.id, evidence_id=evidence.id):
        raise Problem(404, "Photo not linked", f"Evidence item {evidence.id} is not a reference photo of "
                                               f"person {person.id}.")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
