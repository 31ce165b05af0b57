"""The matchers on the record stores: plates against the vehicle register and other evidence, text entities
against the persons register and other evidence; and every matcher module registers its matcher."""

from __future__ import annotations

import importlib
import inspect

import pytest
from sqlalchemy.orm import Session, sessionmaker

from storage import matches, persons
from storage.db import transaction
from storage.matches import Match
from storage.plate_keys import MAX_VARIANTS, confusion_variants
from tests import match_samples as samples
from tests.register_samples import national_number, person
from workers.crossmatch import crossmatch
from workers.matchers import registry
from workers.matchers.base import Matcher
from workers.matchers.plates import TOLERANT_SCORES


def test_every_matcher_module_registers_a_matcher() -> None:
    registered = registry.load_all()
    modules = registry.matcher_modules()
    assert {"workers.matchers.plates", "workers.matchers.entities"} <= set(modules)
    for module_name in modules:
        module = importlib.import_module(module_name)
        defined = [obj for obj in vars(module).values()
                   if inspect.isclass(obj) and issubclass(obj, Matcher) and obj.__module__ == module_name]
        assert defined, f"{module_name} defines no matcher"
        for cls in defined:
            assert registered.get(cls.name) is cls, f"{module_name}.{cls.__name__} is not registered"
            assert cls.modality in matches.MODALITIES and cls.consumes and cls.version
            assert all("." in kind for kind in cls.consumes)


def test_confusion_variants_are_bounded_and_counted() -> None:
    variants = confusion_variants("1A8C234")
    assert variants["1ABC234"] == 1 and variants["IABC234"] == 2 and "1A8C234" not in variants
    assert len(confusion_variants("0O1I8B5S2Z0O1I")) == MAX_VARIANTS
    assert confusion_variants("ACDEFG") == {}


def _matches(factory: sessionmaker[Session], evidence_id: str, **filters: object) -> list[Match]:
    with factory() as session:
        return list(matches.matches_of(session, evidence_id=evidence_id, **filters))  # type: ignore[arg-type]


def test_a_plate_read_matches_its_register_vehicle_once(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        vehicle_id = samples.vehicle(session, "1-ABC-234", status="stolen")
        evidence = samples.item(session, "2026-P1")
        [finding_id] = samples.record(session, evidence, "plates", "2.1.0", [samples.plate("1-ABC-234")])
        first = crossmatch(session, evidence_id=evidence.id)
    with transaction(factory) as session:
        second = crossmatch(session, evidence_id=evidence.id)
    assert (first.new, second.new) == (1, 0)
    [match] = _matches(factory, evidence.id)
    assert (match.modality, match.target_kind, match.target_id, match.finding_id) == (
        "plate", "vehicle", vehicle_id, finding_id)
    assert (match.method, match.score, match.status, match.matcher) == ("exact", 1.0, "candidate", "plates")
    assert match.analyzer_version == "2.1.0" and match.threshold > 0
    assert match.detail["alert"] is True and match.detail["vehicle_status"] == "stolen"
    assert match.detail["reading"] == "1-ABC-234" and match.detail["register_plate"] == "1-ABC-234"


@pytest.mark.parametrize("alternatives", [True, False])
def test_a_confused_character_matches_tolerantly_with_a_lower_score(factory: sessionmaker[Session],
                                                                    alternatives: bool) -> None:
    """With the reader's alternatives the register is found through them; without, through the OCR confusions."""
    with transaction(factory) as session:
        vehicle_id = samples.vehicle(session, "1-ABC-234")
        evidence = samples.item(session, "2026-P2")
        samples.record(session, evidence, "plates", "2.1.0", [samples.plate("1-A8C-234", alternatives=alternatives)])
        crossmatch(session, evidence_id=evidence.id)
    [match] = _matches(factory, evidence.id)
    assert match.target_id == vehicle_id and match.score < 1.0 and match.detail["alert"] is False
    if alternatives:
        assert match.method == "alternative"
    else:
        assert (match.method, match.score) == ("tolerant", TOLERANT_SCORES[1])
        assert match.detail["confusions"] == ["8->B at 3"]


def test_a_plate_candidate_is_never_matched(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        samples.vehicle(session, "1-ABC-234")
        evidence = samples.item(session, "2026-P3")
        samples.record(session, evidence, "plates", "2.1.0", [samples.plate("1-ABC-234", matchable=False)])
        result = crossmatch(session, evidence_id=evidence.id)
        other = samples.item(session, "2026-P4")
        samples.record(session, other, "plates", "2.1.0", [samples.plate("1-ABC-234")])
        crossmatch(session, evidence_id=other.id)
    assert result.findings == 0 and _matches(factory, evidence.id) == []
    assert {m.target_kind for m in _matches(factory, other.id)} == {"vehicle"}  # not the candidate's finding


def test_plates_match_across_cases_once_whichever_item_is_matched(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        first = samples.item(session, "2026-A")
        [first_plate] = samples.record(session, first, "plates", "2.1.0", [samples.plate("1-ABC-234")])
        crossmatch(session, evidence_id=first.id)
        second = samples.item(session, "2026-B")
        [second_plate] = samples.record(session, second, "plates", "2.1.0", [samples.plate("1ABC234")])
        crossmatch(session, evidence_id=second.id)
        again = crossmatch(session, evidence_id=first.id)  # the reverse direction adds nothing
    assert again.new == 0
    [match] = _matches(factory, first.id)
    assert (match.finding_id, match.target_kind, match.target_id) == (second_plate, "finding", first_plate)
    assert (match.case_id, match.target_case_id) == (second.case_id, first.case_id) and first.case_id != second.case_id
    assert (match.evidence_id, match.target_evidence_id) == (second.id, first.id)
    assert match.method == "exact" and match.detail["same_case"] is False and match.target_version == "2.1.0"
    assert [m.id for m in _matches(factory, second.id)] == [match.id]


def test_a_plate_in_text_matches_a_plate_in_a_photo(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        photo = samples.item(session, "2026-C")
        samples.record(session, photo, "plates", "2.1.0", [samples.plate("1-ABC-234")])
        crossmatch(session, evidence_id=photo.id)
        scan = samples.item(session, "2026-D")
        samples.record(session, scan, "entities", "1.1.0", [samples.entity("plate", "1-ABC-234")])
        crossmatch(session, evidence_id=scan.id)
    [match] = _matches(factory, scan.id)
    assert (match.finding_kind, match.target_evidence_id, match.method) == ("entity.plate", photo.id, "exact")


def test_a_plate_of_another_named_country_is_no_match(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        samples.vehicle(session, "1-ABC-234", country="FR")
        evidence = samples.item(session, "2026-E")
        _, label, data = samples.plate("1-ABC-234")
        samples.record(session, evidence, "plates", "2.1.0",
                       [("plates.plate", label, {**data, "country": "BE", "country_source": "band"})])
        crossmatch(session, evidence_id=evidence.id)
    assert _matches(factory, evidence.id) == []


def test_a_national_number_in_text_matches_the_person_and_other_evidence(factory: sessionmaker[Session]) -> None:
    number = national_number(3)
    with transaction(factory) as session:
        registered, _ = persons.put_person(session, row=persons.parse_person(person(3)))
        letter = samples.item(session, "2026-F")
        samples.record(session, letter, "entities", "1.1.0",
                       [samples.entity("national_number", number, f"{number[:2]}.{number[2:4]}.{number[4:6]}-x"),
                        samples.entity("iban", "BE68539007547034"), samples.entity("date", "2026-01-01")])
        crossmatch(session, evidence_id=letter.id)
        note = samples.item(session, "2026-G")
        samples.record(session, note, "entities", "1.1.0",
                       [samples.entity("iban", "BE68539007547034"), samples.entity("email", "x@example.org")])
        crossmatch(session, evidence_id=note.id)
    on_letter = {(m.target_kind, m.detail["entity_kind"]): m for m in _matches(factory, letter.id)}
    assert set(on_letter) == {("person", "national_number"), ("finding", "iban")}
    assert on_letter[("person", "national_number")].target_id == registered.id
    assert on_letter[("finding", "iban")].evidence_id == note.id and on_letter[("finding", "iban")].method == "exact"
