"""Re-matching: a register record written after an item was matched reaches it (a vehicle registered stolen, a
person's reference photo linked or their national number registered, a print enrolled), by one durable job per
write or import batch, run here as the dispatcher would run it (`workers.rematch.rematch`, then the cross-matching
jobs it queued); running it again adds nothing.

Faces and prints are real: the faces analyzer's faces of scikit-image's astronaut (`tests.test_face_matcher`) and
MINDTCT templates of synthetic fingers (`tests.fingerprint_samples`).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import matches, persons, tenprints, vehicles
from storage.db import transaction
from storage.matches import Match
from storage.register_import import import_register
from storage.rematch import REMATCH, queue_rematch
from storage.settings import Settings
from storage.tables import Job
from tests import match_samples as samples
from tests import register_samples
from tests.fingerprint_samples import extracted_iso
from tests.register_samples import national_number
from tests.test_face_matcher import _item, _person, photos  # noqa: F401 - `photos` is a module-scoped fixture
from tests.test_tenprints import print_item, registered
from workers import crossmatch as crossmatching
from workers.crossmatch import MatchContext, crossmatch
from workers.matchers import indexes
from workers.matchers.faces import FACES
from workers.matchers.fingerprints import FingerprintCrossMatcher
from workers.rematch import rematch

Faces = list[tuple[str, str | None, dict[str, Any]]]


def _jobs(session: Session, kind: str, *, state: str | None = "queued") -> list[Job]:
    query = select(Job).where(Job.kind == kind).order_by(Job.id)
    return list(session.scalars(query if state is None else query.where(Job.state == state)))


def _run_rematches(factory: sessionmaker[Session], *, context: MatchContext | None = None) -> list[int]:
    """Run the queued re-matching jobs, as the dispatcher does; how many items each queued."""
    with transaction(factory) as session:
        queued = []
        for job in _jobs(session, REMATCH):
            queued.append(rematch(session, payload=dict(job.payload), max_attempts=3, context=context))
            job.state = "succeeded"
        return queued


def _run_crossmatches(factory: sessionmaker[Session]) -> list[str]:
    """Run the queued cross-matching jobs with every matcher; the items they were for."""
    with transaction(factory) as session:
        done = []
        for job in _jobs(session, crossmatching.KIND):
            crossmatch(session, evidence_id=str(job.evidence_id))
            job.state = "succeeded"
            done.append(str(job.evidence_id))
        return done


def _to(factory: sessionmaker[Session], evidence_id: str, target_kind: str) -> list[Match]:
    with factory() as session:
        return [m for m in matches.matches_of(session, evidence_id=evidence_id) if m.target_kind == target_kind]


def _settle(factory: sessionmaker[Session]) -> None:
    """Run what earlier writes queued, so a test starts from a quiet queue."""
    _run_rematches(factory)
    _run_crossmatches(factory)


def test_a_vehicle_registered_stolen_later_matches_the_older_plate_reads(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        read = samples.item(session, "2026-R1")
        samples.record(session, read, "plates", "2.1.0", [samples.plate("1-ABC-234")])
        misread = samples.item(session, "2026-R2")  # one confused character, and no alternative reading
        samples.record(session, misread, "plates", "2.1.0", [samples.plate("1-A8C-234", alternatives=False)])
        other = samples.item(session, "2026-R3")
        samples.record(session, other, "plates", "2.1.0", [samples.plate("2-XYZ-987")])
        for item in (read, misread, other):
            crossmatch(session, evidence_id=item.id)
    assert not _to(factory, read.id, "vehicle") and not _to(factory, misread.id, "vehicle")
    with transaction(factory) as session:
        vehicle_id = samples.vehicle(session, "1-ABC-234", status="stolen")
        [job] = _jobs(session, REMATCH)
        assert job.payload == {"target_kind": "vehicle", "target_ids": [vehicle_id], "reason": "added"}
        assert not _jobs(session, crossmatching.KIND)  # nothing is searched at write time
    assert _run_rematches(factory) == [2]
    assert sorted(_run_crossmatches(factory)) == sorted([read.id, misread.id])  # not the other plate's item
    [exact] = _to(factory, read.id, "vehicle")
    [tolerant] = _to(factory, misread.id, "vehicle")
    assert (exact.target_id, exact.method, exact.score, exact.detail["alert"]) == (vehicle_id, "exact", 1.0, True)
    assert (tolerant.target_id, tolerant.method, tolerant.detail["confusions"]) == (vehicle_id, "tolerant",
                                                                                    ["8->B at 3"])
    # the same job again queues nothing, and matching again adds nothing
    with transaction(factory) as session:
        [done] = _jobs(session, REMATCH, state="succeeded")
        assert rematch(session, payload=dict(done.payload), max_attempts=3) == 0
        assert not _jobs(session, crossmatching.KIND)
        assert not queue_rematch(session, target_kind="vehicle", target_ids=[vehicle_id], reason="added")
        assert crossmatch(session, evidence_id=read.id).new == 0
    assert len(_to(factory, read.id, "vehicle")) == 1


def test_a_status_change_is_re_matched_and_other_changes_are_not(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        vehicle_id = samples.vehicle(session, "1-DEF-567")
        vehicle = vehicles.get_vehicle(session, vehicle_id=vehicle_id)
        assert vehicle is not None
        vehicles.put_vehicle(session, row=dataclasses.replace(vehicles.row_of(vehicle), colour="red"), recorded_by="t")
        assert len(_jobs(session, REMATCH)) == 1  # added; a new colour matches nothing new
        vehicles.set_vehicle_status(session, vehicle=vehicle, status="stolen", authority="Police Gent",
                                    status_date=vehicle.created_at.date(), recorded_by="t")
        [_, changed] = _jobs(session, REMATCH)
        assert changed.payload["target_ids"] == [vehicle_id]
        assert changed.payload["reason"].startswith("changed:stolen:")


def test_a_person_registered_later_matches_their_national_number_in_older_text(
        factory: sessionmaker[Session]) -> None:
    number = national_number(41)
    with transaction(factory) as session:
        document = samples.item(session, "2026-R4")
        samples.record(session, document, "entities", "1.0.0", [samples.entity("national_number", number)])
        crossmatch(session, evidence_id=document.id)
        person_id = persons.put_person(session, row=persons.parse_person(register_samples.person(41)))[0].id
    assert _run_rematches(factory) == [1] and _run_crossmatches(factory) == [document.id]
    [match] = _to(factory, document.id, "person")
    assert (match.target_id, match.modality, match.method) == (person_id, "entity", "exact")


def test_a_photo_linked_later_makes_the_older_faces_of_that_person_match(
        factory: sessionmaker[Session], photos: dict[str, Faces], tmp_path: Path) -> None:  # noqa: F811
    with transaction(factory) as session:
        older = _item(session, "2026-R5", photos["variant"])
        stranger = _item(session, "2026-R6", photos["zidane"])
        reference = _item(session, "REGISTER", photos["astronaut"])
        for item in (older, stranger, reference):
            crossmatch(session, evidence_id=item.id)
        person_id = _person(session, 7)
    assert _run_rematches(factory) == [0]  # registered, with no photo yet: nothing to look for
    assert not _to(factory, older.id, "person")
    with transaction(factory) as session:
        assert persons.link_photo(session, person_id=person_id, evidence_id=reference.id, added_by="t")
        [job] = _jobs(session, REMATCH)
        assert job.payload["reason"].startswith(f"photo:{reference.id}:")
    context = MatchContext(settings=Settings(_env_file=None, home=tmp_path))  # type: ignore[call-arg]
    assert _run_rematches(factory, context=context) == [1]
    with factory() as session:  # the face index searched is the dispatcher's, in its home
        assert indexes.holder(FACES, session=session, home=tmp_path).origin != "closed"
    assert _run_crossmatches(factory) == [older.id]  # not the stranger, not the reference photo itself
    [match] = _to(factory, older.id, "person")
    assert (match.target_id, match.modality) == (person_id, "face")
    assert match.detail["reference_evidence_id"] == reference.id and match.score >= match.threshold
    with transaction(factory) as session:  # idempotent
        [done] = _jobs(session, REMATCH, state="succeeded")[-1:]
        assert rematch(session, payload=dict(done.payload), max_attempts=3, context=context) == 0
    assert _run_crossmatches(factory) == [] and len(_to(factory, older.id, "person")) == 1


def test_a_print_enrolled_later_makes_the_older_latent_of_that_finger_match(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        latent = print_item(session, "2026-R7", extracted_iso(21, 1))
        stranger = print_item(session, "2026-R8", extracted_iso(23, 1))
        person_id = registered(session, 11)
        card = print_item(session, "TENPRINTS", extracted_iso(21, 0))
        for item in (latent, stranger, card):
            crossmatch(session, evidence_id=item.id)
    _settle(factory)  # the person's registration
    assert not _to(factory, latent.id, "person")
    with transaction(factory) as session:
        record, _ = tenprints.enrol(session, person_id=person_id, evidence_id=card.id, finger=2, impression="rolled",
                                    enrolled_by="examiner")
        [job] = _jobs(session, REMATCH)
        assert job.payload == {"target_kind": "tenprint", "target_ids": [record.id], "reason": "enrolled"}
    assert _run_rematches(factory) == [1]
    assert _run_crossmatches(factory) == [latent.id]  # not the other finger's print, not the card itself
    [match] = _to(factory, latent.id, "person")
    assert (match.target_id, match.modality, match.detail["finger"]) == (person_id, "fingerprint", 2)
    assert match.score >= FingerprintCrossMatcher().threshold
    with transaction(factory) as session:
        [done] = _jobs(session, REMATCH, state="succeeded")[-1:]
        assert rematch(session, payload=dict(done.payload), max_attempts=3) == 0
    assert _run_crossmatches(factory) == []


def _import(factory: sessionmaker[Session], path: Path, register: str = "vehicles", **options: Any) -> None:
    with path.open("rb") as stream:
        import_register(factory, register=register, stream=stream, file_name=path.name, file_format="csv",
                        actor="tester", **options)


def test_an_import_queues_one_job_per_batch_and_reaches_the_older_reads(factory: sessionmaker[Session],
                                                                          tmp_path: Path) -> None:
    plate = register_samples.plate(5)
    with transaction(factory) as session:
        read = samples.item(session, "2026-R9")
        samples.record(session, read, "plates", "2.1.0", [samples.plate(plate)])
        crossmatch(session, evidence_id=read.id)
    _import(factory, register_samples.vehicles_csv(tmp_path / "first.csv", 50))
    with factory() as session:
        [job] = _jobs(session, REMATCH)
        assert job.payload["target_kind"] == "vehicle" and len(job.payload["target_ids"]) == 50
        assert job.payload["reason"].startswith("import:")
        [vehicle] = vehicles.vehicles_by_plate(session, plate=plate)
        assert vehicle.id in job.payload["target_ids"]
    assert _run_rematches(factory) == [1] and _run_crossmatches(factory) == [read.id]
    assert [m.target_id for m in _to(factory, read.id, "vehicle")] == [vehicle.id]

    _import(factory, register_samples.vehicles_csv(tmp_path / "second.csv", 50, start=50), batch_rows=20)
    _import(factory, tmp_path / "first.csv")  # unchanged: nothing to re-match
    with factory() as session:
        assert [len(job.payload["target_ids"]) for job in _jobs(session, REMATCH)] == [20, 20, 10]
    _settle(factory)

    rows = list(register_samples.vehicle_rows(10))
    stolen = next(index for index, row in enumerate(rows) if row["status"] == "none")
    rows[stolen] |= {"status": "stolen", "status_authority": "Police Gent", "status_date": "2026-02-01"}
    rows[stolen + 1] |= {"colour": "purple"}  # changed, but it matches nothing it did not
    changed = register_samples.write_csv(tmp_path / "changed.csv", iter(rows), fields=vehicles.VEHICLE_FIELDS)
    _import(factory, changed)
    with factory() as session:
        [job] = _jobs(session, REMATCH)
        [vehicle] = vehicles.vehicles_by_plate(session, plate=rows[stolen]["plate"])
        assert job.payload["target_ids"] == [vehicle.id]


def test_a_persons_import_queues_one_job(factory: sessionmaker[Session], tmp_path: Path) -> None:
    _import(factory, register_samples.persons_csv(tmp_path / "persons.csv", 30), register="persons")
    with factory() as session:
        [job] = _jobs(session, REMATCH)
        assert job.payload["target_kind"] == "person" and len(job.payload["target_ids"]) == 30


@pytest.mark.parametrize("payload", [{"target_kind": "boat", "target_ids": ["x"], "reason": "r"}])
def test_an_unknown_kind_of_record_is_refused(factory: sessionmaker[Session], payload: dict[str, Any]) -> None:
    with transaction(factory) as session, pytest.raises(ValueError, match="boat"):
        rematch(session, payload=payload, max_attempts=3)
    with transaction(factory) as session, pytest.raises(ValueError, match="boat"):
        queue_rematch(session, target_kind="boat", target_ids=["x"], reason="r")


def test_a_vehicle_reported_stolen_after_it_was_matched_raises_the_alert_on_that_match(
        factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        vehicle_id = samples.vehicle(session, "1-GHK-321")
        read = samples.item(session, "2026-R9")
        samples.record(session, read, "plates", "2.1.0", [samples.plate("1-GHK-321")])
        crossmatch(session, evidence_id=read.id)
    _settle(factory)
    [before] = _to(factory, read.id, "vehicle")
    assert before.detail["alert"] is False and before.detail["vehicle_status"] == "none"
    with transaction(factory) as session:
        vehicle = vehicles.get_vehicle(session, vehicle_id=vehicle_id)
        assert vehicle is not None
        vehicles.set_vehicle_status(session, vehicle=vehicle, status="stolen", authority="Police Gent",
                                    status_date=dt.date(2026, 11, 30), recorded_by="t")
    assert _run_rematches(factory) == [1]
    with transaction(factory) as session:
        result = crossmatch(session, evidence_id=read.id)
    assert (result.new, result.refreshed) == (0, 1)
    [after] = _to(factory, read.id, "vehicle")
    assert after.id == before.id and after.status == "candidate"  # the same match, its verdict untouched
    assert after.detail["alert"] is True and after.detail["vehicle_status"] == "stolen"
    assert after.detail["earlier"]["detail"]["alert"] is False
    with transaction(factory) as session:
        assert crossmatch(session, evidence_id=read.id).refreshed == 0  # nothing changed since


def test_a_photo_linked_before_its_faces_were_known_reaches_older_items_once_it_is_matched(
        factory: sessionmaker[Session], photos: dict[str, Faces], tmp_path: Path) -> None:  # noqa: F811
    with transaction(factory) as session:
        older = _item(session, "2026-R10", photos["variant"])
        crossmatch(session, evidence_id=older.id)
        person_id = _person(session, 8)
        reference = samples.item(session, "REGISTER")  # uploaded, its analysis not over yet
        assert persons.link_photo(session, person_id=person_id, evidence_id=reference.id, added_by="t")
    context = MatchContext(settings=Settings(_env_file=None, home=tmp_path))  # type: ignore[call-arg]
    assert _run_rematches(factory, context=context) == [0, 0]  # registered; linked: no face known yet
    with transaction(factory) as session:  # the photo's analysis ends, and it is cross-matched
        samples.record(session, reference, "faces", "1.2.1", copy.deepcopy(photos["astronaut"]))
        crossmatch(session, evidence_id=reference.id)
        [job] = _jobs(session, REMATCH)
        assert job.payload["target_ids"] == [person_id] and job.payload["reason"].startswith("photo-matched:")
    assert _run_rematches(factory, context=context) == [1]
    assert _run_crossmatches(factory) == [older.id]
    [match] = _to(factory, older.id, "person")
    assert match.target_id == person_id and match.detail["reference_evidence_id"] == reference.id
