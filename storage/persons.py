"""The persons register: people by national register number, and their reference photos (keyword-only access).

The national number is the natural key (eleven digits, kept without separators, checked by
`storage.identifiers`); names are kept as given, with folded copies (lower case, no accents: `textsearch.fold`)
for lookups by prefix. A date of birth that the number fixes must agree with it, and is taken from it when the
record gives none. Reference photos are evidence items linked to the person (`person_photos`); their faces are
found by the faces analyzer like any evidence's, and matched by the face matcher. A person added, or given a
reference photo, is re-matched with older evidence (`storage.rematch`: one job, run later): older faces of them,
and their national number in older text.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Date, ForeignKey, String, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.identifiers import national_number_digits, parse_national_number
from storage.registers import MAX_NAME_CHARS, RowError, country_field, date_field, text
from storage.rematch import queue_rematch
from storage.tables import Base, new_id, utcnow
from storage.textsearch import fold

PERSON_FIELDS = ("national_number", "family_name", "given_names", "date_of_birth", "nationality")
PERSON_REQUIRED = ("national_number", "family_name")


class Person(Base):
    """One registered person."""

    __tablename__ = "persons"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    national_number: Mapped[str] = mapped_column(String(11), unique=True)  # eleven digits, no separators
    family_name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))
    given_names: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), default="")
    family_folded: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), index=True)
    given_folded: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), index=True)
    date_of_birth: Mapped[dt.date | None] = mapped_column(Date)
    nationality: Mapped[str | None] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PersonPhoto(Base):
    """A reference photo of a registered person: an evidence item (its faces are analysed like any evidence's)."""

    __tablename__ = "person_photos"

    person_id: Mapped[str] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), primary_key=True)
    evidence_id: Mapped[str] = mapped_column(ForeignKey("evidence.id"), primary_key=True, index=True)
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    added_by: Mapped[str] = mapped_column(String(200))


@dataclass(frozen=True)
class PersonRow:
    """One validated person record, as the register keeps it."""

    national_number: str
    family_name: str
    given_names: str
    date_of_birth: dt.date | None
    nationality: str | None

    @property
    def key(self) -> str:
        return self.national_number

    def values(self) -> dict[str, object]:
        """The row's columns (folded names included), for an insert or an update."""
        return {"national_number": self.national_number, "family_name": self.family_name,
                "given_names": self.given_names, "family_folded": fold(self.family_name),
                "given_folded": fold(self.given_names), "date_of_birth": self.date_of_birth,
                "nationality": self.nationality}


def parse_person(fields: Mapping[str, str | None], *, today: dt.date | None = None) -> PersonRow:
    """A person record from text fields (names as in PERSON_FIELDS), or RowError with the reason."""
    today = today or dt.date.today()
    raw = text(fields, "national_number", required=True, max_chars=32)
    digits = national_number_digits(raw)
    if len(digits) != 11 or not digits.isascii() or not digits.isdigit():
        raise RowError(f"national_number {raw!r} is not eleven digits")
    details = parse_national_number(digits, today)
    if details is None:
        raise RowError(f"national_number {raw!r} fails its check number or holds an impossible birth date")
    born = date_field(fields, "date_of_birth", today=today)
    fixed = details["birth_date"]
    if born is not None and fixed is not None and born.isoformat() != fixed:
        raise RowError(f"date_of_birth {born} differs from the national number's {fixed}")
    if born is None and isinstance(fixed, str):
        born = dt.date.fromisoformat(fixed)
    return PersonRow(national_number=digits, family_name=text(fields, "family_name", required=True,
                                                               max_chars=MAX_NAME_CHARS),
                     given_names=text(fields, "given_names", max_chars=MAX_NAME_CHARS), date_of_birth=born,
                     nationality=country_field(fields, "nationality"))


def row_of(person: Person) -> PersonRow:
    """The register's row of `person`, to compare with an incoming one."""
    return PersonRow(national_number=person.national_number, family_name=person.family_name,
                     given_names=person.given_names, date_of_birth=person.date_of_birth,
                     nationality=person.nationality)


def put_person(session: Session, *, row: PersonRow) -> tuple[Person, str]:
    """Add the person or bring the record up to `row`; the record and what happened: "added", "updated" or
    "unchanged" (an unchanged record is not written)."""
    person = get_person(session, national_number=row.national_number)
    if person is None:
        person = Person(**row.values())
        session.add(person)
        session.flush()
        queue_rematch(session, target_kind="person", target_ids=[person.id], reason="added")
        return person, "added"
    if row_of(person) == row:
        return person, "unchanged"
    for name, value in row.values().items():
        setattr(person, name, value)
    person.updated_at = utcnow()
    session.flush()
    return person, "updated"


def get_person(session: Session, *, national_number: str) -> Person | None:
    """The person with this national number (written with or without separators), or None."""
    return session.scalar(select(Person).where(Person.national_number == national_number_digits(national_number)))


def get_person_by_id(session: Session, *, person_id: str) -> Person | None:
    return session.get(Person, person_id)


def find_persons(session: Session, *, name_prefix: str, offset: int = 0, limit: int = 50) -> Sequence[Person]:
    """Persons whose family name or given names begin with `name_prefix`, ignoring case and accents ("lie" finds
    Liégeois); by family name, then given names."""
    prefix = fold(name_prefix.strip())
    if not prefix:
        return []
    query = select(Person).where(or_(Person.family_folded.startswith(prefix, autoescape=True),
                                     Person.given_folded.startswith(prefix, autoescape=True)))
    return session.scalars(query.order_by(Person.family_folded, Person.given_folded, Person.id)
                           .offset(offset).limit(limit)).all()


def delete_person(session: Session, *, person: Person) -> None:
    """Remove the person (their photo links and watchlist memberships go with them; the evidence stays)."""
    session.delete(person)
    session.flush()


def link_photo(session: Session, *, person_id: str, evidence_id: str, added_by: str) -> bool:
    """Make the evidence item a reference photo of the person; False when it already was one."""
    if session.get(PersonPhoto, (person_id, evidence_id)) is not None:
        return False
    link = PersonPhoto(person_id=person_id, evidence_id=evidence_id, added_by=added_by)
    session.add(link)
    session.flush()
    queue_rematch(session, target_kind="person", target_ids=[person_id],
                  reason=f"photo:{evidence_id}:{link.added_at.isoformat()}")
    return True


def unlink_photo(session: Session, *, person_id: str, evidence_id: str) -> bool:
    """The evidence item is no longer a reference photo of the person; False when it was not one."""
    link = session.get(PersonPhoto, (person_id, evidence_id))
    if link is None:
        return False
    session.delete(link)
    session.flush()
    return True


def photos_of(session: Session, *, person_id: str) -> Sequence[str]:
    """The evidence ids of the person's reference photos, oldest link first."""
    return session.scalars(select(PersonPhoto.evidence_id).where(PersonPhoto.person_id == person_id)
                           .order_by(PersonPhoto.added_at, PersonPhoto.evidence_id)).all()


def persons_pictured(session: Session, *, evidence_id: str) -> Sequence[str]:
    """The ids of the persons this evidence item is a reference photo of (for the face matcher)."""
    return session.scalars(select(PersonPhoto.person_id).where(PersonPhoto.evidence_id == evidence_id)
                           .order_by(PersonPhoto.person_id)).all()
