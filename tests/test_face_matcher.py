"""The face matcher on real faces: the persons register's reference photos, watchlists, faces in other evidence,
and the per-process face index (synced, persisted under the Locard home, rebuilt when damaged).

The faces are the real faces analyzer's, run once per image for the module: scikit-image's astronaut (Eileen
Collins) as a reference photo, a different capture of her (cropped, shrunk to 300 px and re-encoded as JPEG at
quality 55) as evidence, and ultralytics' zidane.jpg (two men: one frontal face, one profile without an
embedding). Their findings are recorded in the record store as the analyzer's run would record them.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import skimage.data
from PIL import Image
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from storage import matches, persons, watchlists
from storage.db import transaction
from storage.index_files import index_directory
from storage.matches import Match
from storage.settings import Settings
from storage.tables import Evidence, Finding, utcnow
from storage.vector_faiss import INDEX_FILE
from tests import match_samples as samples
from tests.face_samples import analyze_faces
from tests.media_samples import skimage_data_path, zidane_jpg_path
from tests.register_samples import person
from workers.analyzers.faces import FacesAnalyzer
from workers.crossmatch import MatchContext, crossmatch
from workers.matchers import faces as face_matcher
from workers.matchers import indexes
from workers.matchers.base import Subject
from workers.matchers.faces import DISTANCE_THRESHOLD, FACES, THRESHOLD, FaceMatcher, dlib_vector, score_of

Faces = list[tuple[str, str | None, dict[str, Any]]]


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Faces]:
    """The real analyzer's faces of each photo, as (kind, label, data) to record."""
    analyzer = FacesAnalyzer()
    analyzer.load()
    variant = tmp_path_factory.mktemp("faces") / "astronaut-variant.jpg"
    Image.fromarray(skimage.data.astronaut()).crop((60, 0, 460, 400)).resize((300, 300)).save(variant, quality=55)

    def found(path: Path) -> Faces:
        return [(f.kind, f.label, f.data) for f in analyze_faces(analyzer, path)]

    result = {"astronaut": found(skimage_data_path("astronaut.png")), "variant": found(variant),
              "zidane": found(zidane_jpg_path())}
    assert len(result["astronaut"]) == len(result["variant"]) == 1 and len(result["zidane"]) == 2
    assert [dlib_vector(data) is None for _, _, data in result["zidane"]].count(True) == 1  # the profile
    return result


def _item(session: Session, case: str, faces: Faces) -> Evidence:
    evidence = samples.item(session, case)
    samples.record(session, evidence, "faces", "1.2.1", copy.deepcopy(faces))
    return evidence


def _person(session: Session, serial: int) -> str:
    return persons.put_person(session, row=persons.parse_person(person(serial)))[0].id


def _matches(factory: sessionmaker[Session], evidence_id: str) -> list[Match]:
    with factory() as session:
        return list(matches.matches_of(session, evidence_id=evidence_id, modality="face"))


def test_the_score_falls_with_the_distance_and_is_half_at_the_threshold() -> None:
    scores = [score_of(distance) for distance in (0.0, 0.3, DISTANCE_THRESHOLD, 0.9, 1.2, 2.0)]
    assert scores == sorted(scores, reverse=True) and scores[0] == 1.0 and scores[-1] == 0.0
    assert THRESHOLD == score_of(0.6) == 0.5 and DISTANCE_THRESHOLD == 0.6


def test_a_different_photo_matches_the_person_of_a_reference_photo_once(
        factory: sessionmaker[Session], photos: dict[str, Faces]) -> None:
    """The reference photo is analysed first and linked afterwards: the link alone makes it the gallery."""
    with transaction(factory) as session:
        reference = _item(session, "REGISTER", photos["astronaut"])
        crossmatch(session, evidence_id=reference.id)  # matched as ordinary evidence: nothing else is known yet
        person_id = _person(session, 1)
        persons.link_photo(session, person_id=person_id, evidence_id=reference.id, added_by="t")
        evidence = _item(session, "2026-F1", photos["variant"])
        first = crossmatch(session, evidence_id=evidence.id)
    with transaction(factory) as session:
        again = crossmatch(session, evidence_id=evidence.id)
        itself = crossmatch(session, evidence_id=reference.id)  # a reference photo does not match its person
    assert (first.new, again.new, itself.new) == (1, 0, 0)
    [match] = _matches(factory, evidence.id)
    assert (match.modality, match.target_kind, match.target_id, match.matcher) == ("face", "person", person_id,
                                                                                   "faces")
    detail = match.detail
    assert detail["distance"] < DISTANCE_THRESHOLD and detail["distance_threshold"] == DISTANCE_THRESHOLD
    assert match.score == pytest.approx(score_of(detail["distance"]), abs=1e-4) and match.score > match.threshold
    assert match.threshold == THRESHOLD and match.status == "candidate" and match.analyzer_version == "1.2.1"
    assert detail["reference_evidence_id"] == reference.id and detail["watchlists"] == []
    assert detail["alert"] is False and detail["low_quality"] is False
    assert detail["quality"]["grade"] == detail["other_quality"]["grade"] == "good"
    assert _matches(factory, reference.id) == []  # the reference photo's face is the person's, not a finding match


@pytest.mark.parametrize("in_force", [True, False])
def test_a_person_on_a_watchlist_in_force_raises_an_alert(factory: sessionmaker[Session], photos: dict[str, Faces],
                                                          in_force: bool) -> None:
    with transaction(factory) as session:
        reference = _item(session, "REGISTER", photos["astronaut"])
        person_id = _person(session, 2)
        persons.link_photo(session, person_id=person_id, evidence_id=reference.id, added_by="t")
        now = utcnow()
        expired = watchlists.create_watchlist(session, name="Expired list", purpose="an old operation", owner="o",
                                              expires_at=now - dt.timedelta(days=1), created_by="t",
                                              now=now - dt.timedelta(days=30))
        watchlists.add_members(session, watchlist=expired, person_ids=[person_id], added_by="t")
        if in_force:
            active = watchlists.create_watchlist(session, name="Missing persons", purpose="find missing persons",
                                                 owner="o", expires_at=now + dt.timedelta(days=30), created_by="t")
            watchlists.add_members(session, watchlist=active, person_ids=[person_id], added_by="t")
        evidence = _item(session, "2026-F2", photos["variant"])
        crossmatch(session, evidence_id=evidence.id)
    [match] = _matches(factory, evidence.id)
    assert match.target_id == person_id and match.detail["alert"] is in_force
    if in_force:
        [listed] = match.detail["watchlists"]
        assert (listed["name"], listed["purpose"]) == ("Missing persons", "find missing persons")
    else:
        assert match.detail["watchlists"] == []


def test_another_persons_face_matches_nothing(factory: sessionmaker[Session], photos: dict[str, Faces]) -> None:
    with transaction(factory) as session:
        reference = _item(session, "REGISTER", photos["astronaut"])
        persons.link_photo(session, person_id=_person(session, 3), evidence_id=reference.id, added_by="t")
        _item(session, "2026-F3", photos["variant"])
        zidane = _item(session, "2026-F4", photos["zidane"])
        result = crossmatch(session, evidence_id=zidane.id)
    assert result.findings == 1  # the profile has no embedding and is not matched
    assert _matches(factory, zidane.id) == []


def test_the_same_face_in_two_cases_matches_across_them_once(factory: sessionmaker[Session],
                                                              photos: dict[str, Faces]) -> None:
    with transaction(factory) as session:
        earlier = _item(session, "2026-F5", photos["astronaut"])
        crossmatch(session, evidence_id=earlier.id)
        later = _item(session, "2026-F6", photos["variant"])
        first = crossmatch(session, evidence_id=later.id)
    with transaction(factory) as session:
        from_earlier = crossmatch(session, evidence_id=earlier.id)  # the other direction is the same pair
        from_later = crossmatch(session, evidence_id=later.id)
    assert (first.new, from_earlier.new, from_later.new) == (1, 0, 0)
    [match] = _matches(factory, later.id)
    with factory() as session:
        [target] = session.scalars(select(Finding.id).where(Finding.evidence_id == earlier.id)).all()
    assert (match.target_kind, match.target_id, match.target_evidence_id) == ("finding", target, earlier.id)
    assert match.target_case_id != match.case_id and match.detail["same_case"] is False
    assert match.target_analyzer == "faces" and match.target_version == "1.2.1"
    assert match.detail["distance"] < DISTANCE_THRESHOLD and match.detail["other_box"]


def test_two_faces_of_one_item_never_match_each_other(factory: sessionmaker[Session],
                                                      photos: dict[str, Faces]) -> None:
    with transaction(factory) as session:
        evidence = _item(session, "2026-F7", photos["astronaut"] + photos["variant"])
        result = crossmatch(session, evidence_id=evidence.id)
    assert (result.findings, result.new) == (2, 0)


def test_a_poor_face_is_matched_and_said_to_be_poor(factory: sessionmaker[Session], photos: dict[str, Faces]) -> None:
    [(kind, label, data)] = copy.deepcopy(photos["variant"])
    data["quality"]["grade"] = "poor"
    with transaction(factory) as session:
        _item(session, "2026-F8", photos["astronaut"])
        evidence = _item(session, "2026-F9", [(kind, label, data)])
        crossmatch(session, evidence_id=evidence.id)
    [match] = _matches(factory, evidence.id)
    assert match.detail["low_quality"] is True and match.detail["quality"]["grade"] == "poor"


def test_a_face_without_an_embedding_is_not_wanted(photos: dict[str, Faces]) -> None:
    matcher = FaceMatcher()
    for kind, label, data in photos["zidane"]:
        subject = Subject("f", "e", "c", kind, "faces", "1.2.1", label, 0.99, data)
        assert matcher.wants(subject) is (data["embedding"] is not None)


def test_a_replaced_face_leaves_the_index_and_its_successor_is_matched(factory: sessionmaker[Session],
                                                                       photos: dict[str, Faces]) -> None:
    with transaction(factory) as session:
        earlier = _item(session, "2026-F10", photos["astronaut"])
        crossmatch(session, evidence_id=earlier.id)  # the index now holds the first finding
        [old] = session.scalars(select(Finding.id).where(Finding.evidence_id == earlier.id)).all()
        session.execute(delete(Finding).where(Finding.id == old))  # re-analysis: the finding is replaced
        [new] = samples.record(session, session.get_one(Evidence, earlier.id), "faces", "1.2.1",
                               copy.deepcopy(photos["astronaut"]))
        later = _item(session, "2026-F11", photos["variant"])
        crossmatch(session, evidence_id=later.id)
        held = indexes.holder(FACES, session=session).index(session)
        assert old not in held and new in held
    [match] = _matches(factory, later.id)
    assert match.target_id == new


def _vector(photos: dict[str, Faces], name: str) -> list[float]:
    vector = dlib_vector(photos[name][0][2])
    assert vector is not None
    return vector


def test_the_index_is_saved_under_the_home_and_opened_again_without_a_rebuild(
        factory: sessionmaker[Session], photos: dict[str, Faces], tmp_path: Path) -> None:
    with transaction(factory) as session:
        _item(session, "2026-F12", photos["astronaut"])
        _item(session, "2026-F12", photos["zidane"])
        database = indexes.database_identity(session)
        first = indexes.VectorIndexHolder(FACES, home=tmp_path, database=database)
        answer = first.index(session).search(_vector(photos, "variant"), k=5)
        assert first.origin == "rebuilt" and first.rebuilds == 1 and len(answer) == 2
        first.save()
        second = indexes.VectorIndexHolder(FACES, home=tmp_path, database=database)
        assert second.index(session).search(_vector(photos, "variant"), k=5) == answer
        assert (second.origin, second.rebuilds, second.watermark) == ("loaded", 0, first.watermark)
        added = _item(session, "2026-F13", photos["astronaut"])  # recorded after the save: synced, not rebuilt
        nearest = second.index(session).search(_vector(photos, "variant"), k=5)
        [new] = session.scalars(select(Finding.id).where(Finding.evidence_id == added.id)).all()
        assert new in {hit.id for hit in nearest} and len(nearest) == 3 and second.rebuilds == 0
        second.save()
        (index_directory(tmp_path, "vectors", FACES.space.name) / INDEX_FILE).write_bytes(b"torn")
        third = indexes.VectorIndexHolder(FACES, home=tmp_path, database=database)
        assert third.index(session).search(_vector(photos, "variant"), k=5) == nearest
        assert (third.origin, third.rebuilds) == ("rebuilt", 1)
        other_store = indexes.VectorIndexHolder(FACES, home=tmp_path, database="sqlite:///another.db")
        other_store.index(session)  # an index saved for another record store is not trusted: rebuilt
        assert other_store.rebuilds == 1


def test_matching_in_a_home_keeps_the_index_there(factory: sessionmaker[Session], photos: dict[str, Faces],
                                                  tmp_path: Path) -> None:
    with transaction(factory) as session:
        earlier = _item(session, "2026-F14", photos["astronaut"])
        later = _item(session, "2026-F15", photos["variant"])
        context = MatchContext(settings=Settings(_env_file=None, home=tmp_path))  # type: ignore[call-arg]
        result = crossmatch(session, evidence_id=later.id, context=context)
        held = indexes.holder(FACES, session=session, home=tmp_path)
        assert held.home == tmp_path and held.origin == "rebuilt"  # the one crossmatch opened, in the home
        assert indexes.holder(FACES, session=session).home is None  # no settings: an in-memory holder
    assert result.new == 1 and (index_directory(tmp_path, "vectors", FACES.space.name) / INDEX_FILE).exists()
    [match] = _matches(factory, later.id)
    assert match.target_evidence_id == earlier.id


def test_the_matcher_is_registered() -> None:
    from workers.matchers import registry

    assert registry.load_all()["faces"] is FaceMatcher and face_matcher.FACE_KIND in FaceMatcher.consumes


def test_one_face_registered_under_two_persons_is_flagged_and_evidence_matches_both(
        factory: sessionmaker[Session], photos: dict[str, Faces]) -> None:
    with transaction(factory) as session:
        first, second = _person(session, 4), _person(session, 5)
        for person_id, name in ((first, "astronaut"), (second, "variant")):
            photo = _item(session, "REGISTER", photos[name])
            persons.link_photo(session, person_id=person_id, evidence_id=photo.id, added_by="t")
        crossmatch(session, evidence_id=photo.id)  # the second person's photo: the first person's face, not its own
        evidence = _item(session, "2026-F16", photos["variant"])
        crossmatch(session, evidence_id=evidence.id)
    assert [(m.target_kind, m.target_id) for m in _matches(factory, photo.id)] == [("person", first)]
    assert {(m.target_kind, m.target_id) for m in _matches(factory, evidence.id)} == {("person", first),
                                                                                       ("person", second)}
