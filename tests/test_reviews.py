"""The review of matches on both record stores: verdicts and their history, who may not decide, reopening; a
rejected pair never recorded again (re-analysis with new finding ids, a model upgrade that moves a face's box, a
register re-import with a new person id), another face of the same photo still matched; the queue's order and
filters; the calibration counts; the calibration report command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from locard import cli
from storage import matches, persons, reviews
from storage.db import transaction
from storage.review_records import iou
from storage.settings import Settings
from storage.tables import Evidence, Finding
from tests import match_samples as samples
from tests.register_samples import national_number, person
from tests.test_api_matches import crossmatch

PLATE = "1-ABC-234"


def _match(session: Session, evidence: Evidence, finding_id: str, *, modality: str = "plate",
           kind: str = "plates.plate", target_kind: str = "vehicle", target_id: str = "v",
           other: Evidence | None = None, score: float = 1.0, threshold: float = 0.6) -> tuple[matches.Match, bool]:
    pair: dict[str, Any] = {} if other is None else {"target_evidence_id": other.id, "target_case_id": other.case_id,
                                                     "target_analyzer": "x", "target_version": "1"}
    return matches.add_match(session, match=matches.NewMatch(
        modality=modality, finding_id=finding_id, finding_kind=kind, evidence_id=evidence.id,
        case_id=evidence.case_id, analyzer="x", analyzer_version="1", target_kind=target_kind, target_id=target_id,
        score=score, threshold=threshold, method="exact", matcher="m", matcher_version="1", **pair))


def _reanalyse(session: Session, evidence: Evidence, analyzer: str, version: str,
               findings: list[tuple[str, str | None, dict[str, Any]]]) -> list[str]:
    """Replace the analyzer's findings of the item with these (new ids), as re-analysis does."""
    for old in session.scalars(select(Finding).where(Finding.evidence_id == evidence.id,
                                                     Finding.analyzer == analyzer)):
        session.delete(old)
    session.flush()
    return samples.record(session, evidence, analyzer, version, findings)


def test_a_rejected_pair_never_returns_after_re_analysis_and_a_reopening_lifts_it(
        factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        vehicle_id = samples.vehicle(session, PLATE)
        a, b = samples.item(session, "2026-R1"), samples.item(session, "2026-R2")
        samples.record(session, b, "plates", "2.1.0", [samples.plate(PLATE, alternatives=False)])
        samples.record(session, a, "plates", "2.1.0", [samples.plate(PLATE, alternatives=False)])
        crossmatch(session, evidence_id=b.id)
        assert crossmatch(session, evidence_id=a.id).new == 2  # to the car, to `b`
        found = {m.target_kind: m for m in matches.matches_of(session, evidence_id=a.id)}
        for match in found.values():
            decision = reviews.decide(session, match=match, verdict="rejected", reason="another car entirely",
                                      examiner="eva")
            assert (match.status, match.reviewed_by, decision.examiner) == ("rejected", "eva", "eva")
            assert decision.rejection_key is not None and len(decision.rejection_key) == 64
        rejected = {m.id for m in found.values()}
    for item, version, new in ((a, "2.2.0", 0), (b, "2.2.0", 1), (a, "3.0.0", 0)):  # new ids, a model upgrade
        with transaction(factory) as session:
            _reanalyse(session, session.get_one(Evidence, item.id), "plates", version,
                       [samples.plate(PLATE, alternatives=False)])
            assert crossmatch(session, evidence_id=item.id).new == new, (item.id, version)
    with factory() as session:
        assert matches.matches_of(session, evidence_id=a.id) == []  # the rejected ones superseded, no new one
        [car_of_b] = matches.matches_of(session, evidence_id=b.id)  # b's own match to the car was never rejected
        assert (car_of_b.target_kind, car_of_b.status) == ("vehicle", "candidate")
        every = matches.matches_of(session, evidence_id=a.id, include_superseded=True)
        assert {m.id for m in every} == rejected and {m.status for m in every} == {"rejected"}
    with transaction(factory) as session:  # a supervisor reopens the rejection of the car: it may return
        car = session.get_one(matches.Match, found["vehicle"].id)
        reviews.reopen(session, match=car, reason="the examiner misread the make", supervisor="sup")
        assert (car.status, car.reviewed_by) == ("candidate", None)
        assert [d.verdict for d in reviews.decisions_of(session, match_id=car.id)] == ["rejected", "reopened"]
        _reanalyse(session, session.get_one(Evidence, a.id), "plates", "3.1.0",
                   [samples.plate(PLATE, alternatives=False)])
        assert crossmatch(session, evidence_id=a.id).new == 1
        [again] = matches.matches_of(session, evidence_id=a.id)
        assert (again.target_kind, again.target_id, again.status) == ("vehicle", vehicle_id, "candidate")


def test_a_rejected_face_stays_away_when_its_box_moves_a_little_but_another_face_is_matched(
        factory: sessionmaker[Session]) -> None:
    def face(box: list[float]) -> tuple[str, str | None, dict[str, Any]]:
        return "faces.face", "face", {"box": box, "frame": 0}

    with transaction(factory) as session:
        owner, _ = persons.put_person(session, row=persons.parse_person(person(7)))
        photo = samples.item(session, "2026-R3")
        [seen] = samples.record(session, photo, "faces", "1.0.0", [face([100.0, 100.0, 200.0, 220.0])])
        match, _ = _match(session, photo, seen, modality="face", kind="faces.face", target_kind="person",
                          target_id=owner.id, score=0.9, threshold=0.5)
        reviews.decide(session, match=match, verdict="rejected", reason="a different man, older", examiner="eva")
    with transaction(factory) as session:
        photo = session.get_one(Evidence, photo.id)
        moved, other = _reanalyse(session, photo, "faces", "2.0.0",  # a new detector: boxes shift a little
                                  [face([104.0, 96.0, 206.0, 224.0]), face([400.0, 100.0, 500.0, 220.0])])
        assert iou([100.0, 100.0, 200.0, 220.0], [104.0, 96.0, 206.0, 224.0]) > 0.8
        row, new = _match(session, photo, moved, modality="face", kind="faces.face", target_kind="person",
                          target_id=owner.id)
        assert not new and row.id == match.id and row.status == "rejected"  # the rejected match, not a new one
        _, new = _match(session, photo, other, modality="face", kind="faces.face", target_kind="person",
                        target_id=owner.id)
        assert new  # another face of the same photo is another claim
    with transaction(factory) as session:  # the register is re-imported: the person has a new id
        persons.delete_person(session, person=session.get_one(persons.Person, owner.id))
        again, _ = persons.put_person(session, row=persons.parse_person(person(7)))
        assert again.id != owner.id
        _, new = _match(session, session.get_one(Evidence, photo.id), moved, modality="face", kind="faces.face",
                        target_kind="person", target_id=again.id)
        assert not new


def test_images_and_entities_are_rejected_per_item_pair_and_per_value(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        a, b = samples.item(session, "2026-R4"), samples.item(session, "2026-R4")
        [fa] = samples.record(session, a, "images", "1", [("image.embedding", None, {"model": "x"})])
        [fb] = samples.record(session, b, "images", "1", [("image.embedding", None, {"model": "x"})])
        match, _ = _match(session, a, fa, modality="image", kind="image.embedding", target_kind="finding",
                          target_id=fb, other=b, score=0.97, threshold=0.9)
        reviews.decide(session, match=match, verdict="rejected", reason="two different buses", examiner="eva")
        [fb2] = _reanalyse(session, b, "images", "2", [("image.embedding", None, {"model": "y"})])
        _, new = _match(session, b, fb2, modality="image", kind="image.embedding", target_kind="finding",
                        target_id=fa, other=a)  # proposed from the other side, with a new finding
        assert not new
        number, iban = national_number(8), "BE68539007547034"
        [na, ia] = samples.record(session, a, "entities", "1", [samples.entity("national_number", number),
                                                                 samples.entity("iban", iban)])
        [nb, ib] = samples.record(session, b, "entities", "1", [samples.entity("national_number", number),
                                                                 samples.entity("iban", iban)])
        match, _ = _match(session, a, na, modality="entity", kind="entity.national_number", target_kind="finding",
                          target_id=nb, other=b)
        reviews.decide(session, match=match, verdict="rejected", reason="a typing error in a form", examiner="eva")
        _, new = _match(session, a, ia, modality="entity", kind="entity.iban", target_kind="finding", target_id=ib,
                        other=b)
        assert new  # the same two items sharing another identifier: another claim


def test_who_may_decide_and_when(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        samples.vehicle(session, PLATE)
        a = samples.item(session, "2026-R5")
        a.received_by = "uma"
        samples.record(session, a, "plates", "2.1.0", [samples.plate(PLATE, alternatives=False)])
        crossmatch(session, evidence_id=a.id)
        [match] = matches.matches_of(session, evidence_id=a.id)
        with pytest.raises(reviews.ReviewRefused) as refused:
            reviews.decide(session, match=match, verdict="confirmed", reason="same plate, same car", examiner="uma")
        assert refused.value.why == reviews.ReviewRefused.UPLOADER and match.status == "candidate"
        with pytest.raises(reviews.ReviewRefused) as refused:
            reviews.reopen(session, match=match, reason="nothing to reopen here", supervisor="sup")
        assert refused.value.why == reviews.ReviewRefused.UNDECIDED
        with pytest.raises(ValueError, match="is not one of"):
            reviews.decide(session, match=match, verdict="maybe", reason="not sure at all", examiner="eva")
        reviews.decide(session, match=match, verdict="confirmed", reason="same plate, same car", examiner="eva")
        with pytest.raises(reviews.ReviewRefused) as refused:
            reviews.decide(session, match=match, verdict="rejected", reason="changed my mind", examiner="eve")
        assert refused.value.why == reviews.ReviewRefused.DECIDED and match.reviewed_by == "eva"
        match.superseded_at, match.status = match.created_at, "candidate"  # as if its finding had been replaced
        session.flush()
        with pytest.raises(reviews.ReviewRefused) as refused:
            reviews.decide(session, match=match, verdict="rejected", reason="changed my mind", examiner="eve")
        assert refused.value.why == reviews.ReviewRefused.SUPERSEDED


KNOWN = (("plate", 0.6, "confirmed"), ("plate", 0.6, "rejected"), ("plate", 0.6, "confirmed"),
         ("plate", 0.6, "confirmed"), ("plate", 0.8, "confirmed"), ("face", 0.5, "rejected"),
         ("face", 0.5, "rejected"), ("face", 0.5, "confirmed"), ("face", 0.5, None), ("entity", 1.0, None))


def calibration_set(session: Session) -> None:
    """Matches with known verdicts (KNOWN: modality, threshold, verdict or None for a candidate)."""
    evidence = samples.item(session, "2026-R6")
    for number, (modality, threshold, verdict) in enumerate(KNOWN):
        match, _ = _match(session, evidence, f"f-{number}", modality=modality, target_id=f"v-{number}",
                          threshold=threshold)
        if verdict is not None:
            reviews.decide(session, match=match, verdict=verdict, reason="checked side by side", examiner="eva")


def test_calibration_counts_the_verdicts_per_modality_and_threshold(factory: sessionmaker[Session],
                                                                     tmp_path: Path, database_url: str,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with transaction(factory) as session:
        calibration_set(session)
    with factory() as session:
        rows = [(r.modality, r.threshold, r.reviewed, r.confirmed, r.rejected, r.false_match_rate)
                for r in reviews.calibration(session)]
        assert rows == [("face", 0.5, 3, 1, 2, pytest.approx(2 / 3)), ("plate", 0.6, 4, 3, 1, 0.25),
                        ("plate", 0.8, 1, 1, 0, 0.0)]
        assert [r.modality for r in reviews.calibration(session, modality="face")] == ["face"]
    monkeypatch.setattr(cli, "get_settings", lambda: Settings(_env_file=None, home=tmp_path / "home",  # type: ignore[call-arg]
                                                              database_url=database_url))
    out = tmp_path / "calibration.json"
    assert cli.main(["report", "calibration", "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["report"] == "calibration"
    assert [(s["modality"], s["threshold"], s["reviewed"], s["rejected"]) for s in report["settings"]] == [
        ("face", 0.5, 3, 2), ("plate", 0.6, 4, 1), ("plate", 0.8, 1, 0)]
    assert report["settings"][1]["false_match_rate"] == 0.25
    capsys.readouterr()
    assert cli.main(["report", "calibration", "--modality", "plate"]) == 0
    assert [s["threshold"] for s in json.loads(capsys.readouterr().out)["settings"]] == [0.6, 0.8]
    assert cli.main(["report", "calibration", "--output", str(tmp_path / "no" / "such.json")]) == 2
