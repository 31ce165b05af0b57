"""The record stores on both databases: persons and their reference photos, vehicles and their status history,
face watchlists; the migration matches the tables; the national-number check is the one the entity extractor uses.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from storage import persons, vehicles, watchlists
from storage.db import transaction
from storage.identifiers import parse_national_number, plate_key
from storage.records import create_case
from storage.registers import RowError
from storage.tables import Base, Evidence, utcnow
from tests.register_samples import bad_check, national_number, person, vehicle
from workers.entities import national_number as entity_numbers


def test_the_migrations_make_exactly_the_tables_of_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    full_text = ("evidence_text_fts", "ix_evidence_text_tsv")  # SQLite FTS5 and PostgreSQL full-text, made by hand
    assert [diff for diff in differences if not any(name in str(diff) for name in full_text)] == []


def test_the_register_and_the_entity_extractor_share_one_check() -> None:
    assert entity_numbers.parse_national_number is parse_national_number
    number = national_number(5)
    assert parse_national_number(number) is not None and parse_national_number(bad_check(number)) is None


@pytest.mark.parametrize(("raw", "key"), [("1-ABC-234", "1ABC234"), ("1 abc 234", "1ABC234"), ("ab·12·cd", "AB12CD"),
                                           ("１ＡＢＣ２３４", "1ABC234"), ("Ö-ß", "SS"), ("---", "")])
def test_a_plate_key_is_its_letters_and_digits_upper_case(raw: str, key: str) -> None:
    assert plate_key(raw) == key


def test_a_person_is_added_left_alone_when_unchanged_and_updated(factory: sessionmaker[Session]) -> None:
    row = persons.parse_person(person(3))
    with transaction(factory) as session:
        added, outcome = persons.put_person(session, row=row)
        assert outcome == "added"
    with transaction(factory) as session:
        assert persons.put_person(session, row=row)[1] == "unchanged"
        moved = persons.parse_person({**person(3), "family_name": "Dubois-Peeters"})
        assert persons.put_person(session, row=moved)[1] == "updated"
    formatted = f"{row.national_number[:2]}.{row.national_number[2:4]}.{row.national_number[4:6]}-" \
                f"{row.national_number[6:9]}.{row.national_number[9:]}"
    with factory() as session:
        found = persons.get_person(session, national_number=formatted)
        assert found is not None and found.id == added.id and found.family_name == "Dubois-Peeters"


def test_the_date_of_birth_comes_from_the_national_number_when_not_given() -> None:
    row = persons.parse_person({**person(0), "date_of_birth": ""})
    assert row.date_of_birth == dt.date.fromisoformat(person(0)["date_of_birth"])
    with pytest.raises(RowError, match="differs from the national number"):
        persons.parse_person({**person(0), "date_of_birth": "1999-12-31"})


def test_persons_are_found_by_name_prefix_ignoring_case_and_accents(factory: sessionmaker[Session]) -> None:
    names = [("Liégeois", "Élodie"), ("Lie%ge", "Jan"), ("Martin", "Liesbeth"), ("Peeters", "Anne")]
    with transaction(factory) as session:
        for index, (family, given) in enumerate(names):
            persons.put_person(session, row=persons.parse_person({**person(index), "family_name": family,
                                                                  "given_names": given}))
    with factory() as session:
        assert [p.family_name for p in persons.find_persons(session, name_prefix="LIE")] == \
            ["Lie%ge", "Liégeois", "Martin"]
        assert [p.family_name for p in persons.find_persons(session, name_prefix="lie%")] == ["Lie%ge"]
        assert [p.given_names for p in persons.find_persons(session, name_prefix="elo")] == ["Élodie"]
        assert persons.find_persons(session, name_prefix="  ") == []


def _evidence(session: Session, name: str) -> str:
    case = create_case(session, reference=f"REG-{name}", title="register photos", description="", created_by="t")
    item = Evidence(case_id=case.id, sha256=name * 64, size=1, media_type="image/jpeg", bucket="b",
                    object_key=f"k/{name}", source="api", received_by="t")
    session.add(item)
    session.flush()
    return item.id


def test_reference_photos_link_evidence_to_a_person(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        someone, _ = persons.put_person(session, row=persons.parse_person(person(1)))
        first, second = _evidence(session, "a"), _evidence(session, "b")
        assert persons.link_photo(session, person_id=someone.id, evidence_id=first, added_by="t")
        assert not persons.link_photo(session, person_id=someone.id, evidence_id=first, added_by="t")
        assert persons.link_photo(session, person_id=someone.id, evidence_id=second, added_by="t")
    with transaction(factory) as session:
        assert sorted(persons.photos_of(session, person_id=someone.id)) == sorted([first, second])
        assert persons.persons_pictured(session, evidence_id=first) == [someone.id]
        assert persons.unlink_photo(session, person_id=someone.id, evidence_id=second)
        assert not persons.unlink_photo(session, person_id=someone.id, evidence_id=second)
    with transaction(factory) as session:
        found = persons.get_person_by_id(session, person_id=someone.id)
        assert found is not None
        persons.delete_person(session, person=found)
    with factory() as session:
        assert persons.persons_pictured(session, evidence_id=first) == []
        assert session.get(Evidence, first) is not None  # the evidence stays


def test_vehicles_are_found_by_any_writing_of_their_plate(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        car, outcome = vehicles.put_vehicle(session, row=vehicles.parse_vehicle(vehicle(1)), recorded_by="t")
        assert outcome == "added"
        vehicles.put_vehicle(session, row=vehicles.parse_vehicle({**vehicle(1), "country": "nl"}), recorded_by="t")
    with factory() as session:
        assert [v.country for v in vehicles.vehicles_by_plate(session, plate="1abc001".replace("abc", "AAA"))] == \
            ["BE", "NL"]
        assert [v.id for v in vehicles.vehicles_by_plate(session, plate="1 aaa 001", country="be")] == [car.id]
        assert [v.id for v in vehicles.vehicles_by_plate_keys(session, keys=["1AAA0O1", "1AAA001"], country="BE")] \
            == [car.id]
        assert vehicles.vehicles_by_plate_keys(session, keys=[""]) == []
        owner = vehicle(1)["owner_national_number"]
        assert {v.country for v in vehicles.vehicles_of_owner(session, national_number=owner)} == {"BE", "NL"}


def test_a_status_needs_its_authority_and_date_and_every_change_is_kept(factory: sessionmaker[Session]) -> None:
    with pytest.raises(RowError, match="needs the status_authority and the status_date"):
        vehicles.parse_vehicle({**vehicle(2), "status": "wanted"})
    with pytest.raises(RowError, match="is not one of none, stolen, wanted, signalled"):
        vehicles.parse_vehicle({**vehicle(2), "status": "lost"})
    with transaction(factory) as session:
        car, _ = vehicles.put_vehicle(session, row=vehicles.parse_vehicle(vehicle(7)), recorded_by="import")
        assert car.status == "stolen"
        vehicles.set_vehicle_status(session, vehicle=car, status="none", authority="Police Gent",
                                    status_date=dt.date(2026, 2, 1), recorded_by="alice")
        vehicles.set_vehicle_status(session, vehicle=car, status="none", authority="Police Gent",
                                    status_date=dt.date(2026, 2, 1), recorded_by="alice")  # no change, no entry
        with pytest.raises(RowError):
            vehicles.set_vehicle_status(session, vehicle=car, status="wanted", authority=None, status_date=None,
                                        recorded_by="alice")
    with factory() as session:
        history = vehicles.status_history(session, vehicle_id=car.id)
        assert [(h.status, h.authority, h.recorded_by) for h in history] == [
            ("stolen", "Police Bruxelles", "import"), ("none", "Police Gent", "alice")]
        assert [v.id for v in vehicles.vehicles_with_status(session, status="none")] == [car.id]


def _watchlist(session: Session, name: str, **overrides: Any) -> watchlists.Watchlist:
    values: dict[str, Any] = {"name": name, "purpose": "serious crime, case 2026/17", "owner": "supervisor",
                              "expires_at": utcnow() + dt.timedelta(days=30), "created_by": "t"}
    return watchlists.create_watchlist(session, **{**values, **overrides})


def test_a_watchlist_has_a_purpose_an_owner_and_an_expiry(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        _watchlist(session, "robbery")
        for name, overrides, reason in [("", {}, "needs a name"), ("x", {"purpose": " "}, "a purpose"),
                                        ("robbery", {}, "exists already"),
                                        ("old", {"expires_at": utcnow() - dt.timedelta(seconds=1)}, "in the future"),
                                        ("naive", {"expires_at": dt.datetime(2099, 1, 1)}, "time zone")]:
            with pytest.raises(watchlists.WatchlistError, match=reason):
                _watchlist(session, name, **overrides)


def test_only_watchlists_in_force_are_used_and_members_are_persons(factory: sessionmaker[Session]) -> None:
    now = utcnow()
    with transaction(factory) as session:
        people = [persons.put_person(session, row=persons.parse_person(person(i)))[0] for i in range(3)]
        current = _watchlist(session, "current")
        ending = _watchlist(session, "ending", expires_at=now + dt.timedelta(hours=1))
        assert watchlists.add_members(session, watchlist=current, person_ids=[p.id for p in people], added_by="t") == 3
        assert watchlists.add_members(session, watchlist=current, person_ids=[people[0].id], added_by="t") == 0
        assert watchlists.add_members(session, watchlist=ending, person_ids=[people[0].id], added_by="t") == 1
        with pytest.raises(watchlists.WatchlistError, match="not in the persons register"):
            watchlists.add_members(session, watchlist=current, person_ids=["no-such-person"], added_by="t")
        assert watchlists.remove_member(session, watchlist=current, person_id=people[2].id)
    later = now + dt.timedelta(hours=2)
    with factory() as session:
        assert [w.name for w in watchlists.active_watchlists(session, now=now)] == ["current", "ending"]
        assert [w.name for w in watchlists.active_watchlists(session, now=later)] == ["current"]
        assert [w.name for w in watchlists.active_watchlists_of(session, person_id=people[0].id, now=later)] == \
            ["current"]
        assert [w.name for w in watchlists.list_watchlists(session)] == ["current", "ending"]
        assert {p.id for p in watchlists.members(session, watchlist_id=current.id)} == {people[0].id, people[1].id}
