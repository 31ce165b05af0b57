"""Searches by face image and by similar image, from the request to its answer, on both record stores.

The faces are the real faces analyzer's (run once per photo for the module): scikit-image's astronaut (Eileen
Collins), a different capture of her (cropped, shrunk to 300 px, JPEG quality 55) and ultralytics' zidane.jpg
(two men: a frontal face, and a profile without an embedding). The pictures are the real hashes and similarity
analyzers' findings of bus.jpg, a near-duplicate of it (central 80 %, 60 % size, JPEG q60) and zidane.jpg, with
the keypoint files in an in-memory object store. Requests are answered as the cross-matching actor answers them
(`workers.searches.answer`) and closed as it closes them (`storage.matching.finish_request`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import skimage.data
from PIL import Image
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from storage import jobs, matching, persons, searches
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.messages import MatchAnswer
from storage.settings import Settings
from storage.tables import Evidence, Finding, Job, MatchRequest
from tests import match_samples as samples
from tests.face_samples import analyze_faces
from tests.media_samples import bus_jpg_path, evidence, skimage_data_path, zidane_jpg_path
from tests.register_samples import person
from tests.test_image_matcher import _near_duplicate, _stored
from workers import searches as answering
from workers.analyzers.base import AnalysisLimits
from workers.analyzers.faces import FacesAnalyzer
from workers.analyzers.hashes import HashesAnalyzer
from workers.analyzers.similarity import SimilarityAnalyzer
from workers.crossmatch import MatchContext
from workers.matchers import faces, image_indexes, indexes
from workers.matchers.images import THRESHOLD as IMAGE_THRESHOLD

Findings = list[tuple[str, str | None, dict[str, Any]]]


def real_faces(folder: Path) -> dict[str, Findings]:
    """The real analyzer's faces of the astronaut, another capture of her ("variant") and zidane.jpg."""
    analyzer = FacesAnalyzer()
    analyzer.load()
    variant = folder / "astronaut-variant.jpg"
    Image.fromarray(skimage.data.astronaut()).crop((60, 0, 460, 400)).resize((300, 300)).save(variant, quality=55)

    def found(path: Path) -> Findings:
        return [(f.kind, f.label, f.data) for f in analyze_faces(analyzer, path)]

    result = {"astronaut": found(skimage_data_path("astronaut.png")), "variant": found(variant),
              "zidane": found(zidane_jpg_path())}
    assert len(result["astronaut"]) == len(result["variant"]) == 1 and len(result["zidane"]) == 2
    return result


def face_item(session: Session, case: str, found: Findings) -> tuple[Evidence, list[str]]:
    """An item of `case` with these faces recorded as the faces analyzer's run; the item and its finding ids."""
    item = samples.item(session, case)
    return item, samples.record(session, item, "faces", "1.2.1", copy.deepcopy(found))


def answer(factory: sessionmaker[Session], request_id: str, context: MatchContext | None = None) -> MatchAnswer:
    """Answer a search as the cross-matching actor does, and record the answer with the request."""
    with transaction(factory) as session:
        matching.mark_running(session, request_id=request_id)
    with transaction(factory) as session:
        answered = answering.answer(session, request_id=request_id, context=context)
    with transaction(factory) as session:
        matching.finish_request(session, request_id=request_id, result=answered.result, error=answered.error)
    return answered


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Findings]:
    return real_faces(tmp_path_factory.mktemp("faces"))


def _ask(factory: sessionmaker[Session], probe_id: str, *, kind: str = searches.FACE_SEARCH,
         finding_id: str | None = None, **parameters: Any) -> str:
    with transaction(factory) as session:
        probe = session.get_one(Evidence, probe_id)
        request = searches.request_search(session, kind=kind, probe=probe, finding_id=finding_id,
                                          parameters={"limit": 20, **parameters}, requested_by="t")
        return request.id


def _result(found: MatchAnswer) -> dict[str, Any]:
    assert found.error is None and found.result is not None, found
    return found.result


def test_a_face_finds_the_same_person_in_another_case_first(factory: sessionmaker[Session],
                                                            photos: dict[str, Findings]) -> None:
    with transaction(factory) as session:
        # The probe item holds her other capture too: its own faces are never candidates.
        probe, (probe_face, own_other) = face_item(session, "2026-S1", photos["variant"] + photos["astronaut"])
        her, [her_face] = face_item(session, "2026-S2", photos["astronaut"])
        him, zidane_faces = face_item(session, "2026-S3", photos["zidane"])
    request_id = _ask(factory, probe.id, finding_id=probe_face)
    with factory() as session:
        request = session.get_one(MatchRequest, request_id)
        assert (request.kind, request.status, request.parameters["finding_id"]) == ("face_search", "queued",
                                                                                     probe_face)
        [job] = session.scalars(select(Job).where(Job.kind == searches.SEARCH_JOB)).all()
        assert (job.payload, job.dedupe_key, job.evidence_id) == ({"request_id": request_id},
                                                                   f"search:{request_id}", probe.id)
    result = _result(answer(factory, request_id))
    first, *others = result["candidates"]
    assert (first["rank"], first["evidence_id"], first["finding_id"]) == (1, her.id, her_face)
    assert first["distance"] < faces.DISTANCE_THRESHOLD and first["probable_match"] is True
    assert first["score"] == round(faces.score_of(first["distance"]), 4) > faces.THRESHOLD
    assert first["case_reference"] == "2026-S2" and first["box"] and first["quality"]["grade"] == "good"
    assert first["reference_photo"] is False and first["person_ids"] == []
    [zidane] = others  # his profile has no embedding: not indexed
    assert zidane["evidence_id"] == him.id and zidane["finding_id"] in zidane_faces
    assert zidane["distance"] >= faces.DISTANCE_THRESHOLD and zidane["probable_match"] is False
    assert zidane["distance"] > first["distance"] and zidane["rank"] == 2
    assert own_other not in {c["finding_id"] for c in result["candidates"]}
    assert result["index_size"] == 4 and result["exhaustive"] is True
    assert result["probe"]["finding_id"] == probe_face and result["probe"]["analyzer_version"] == "1.2.1"
    assert result["probe"]["embedding_model"] == "dlib-resnet-face-128" and result["elapsed_ms"] >= 0
    with factory() as session:
        closed = session.get_one(MatchRequest, request_id)
        assert (closed.status, closed.error, closed.result) == ("succeeded", None, result)


def test_the_largest_face_is_searched_by_default_and_limit_and_cases_narrow_it(
        factory: sessionmaker[Session], photos: dict[str, Findings]) -> None:
    with transaction(factory) as session:
        probe, probe_faces = face_item(session, "2026-S4", photos["zidane"] + photos["variant"])
        her, _ = face_item(session, "2026-S5", photos["astronaut"])
        again, _ = face_item(session, "2026-S6", photos["astronaut"])
        other_case = again.case_id
    areas = {fid: faces.box_area(data) for fid, (_, _, data) in zip(probe_faces, photos["zidane"] + photos["variant"],
                                                                    strict=True) if faces.dlib_vector(data)}
    largest = max(areas, key=lambda fid: areas[fid])
    request_id = _ask(factory, probe.id)
    with factory() as session:
        assert session.get_one(MatchRequest, request_id).parameters["finding_id"] == largest
    assert len(_result(answer(factory, request_id))["candidates"]) == 2
    one = _result(answer(factory, _ask(factory, probe.id, limit=1)))["candidates"]
    assert len(one) == 1 and one[0]["rank"] == 1
    only = _result(answer(factory, _ask(factory, probe.id, case_ids=[other_case])))
    assert [c["evidence_id"] for c in only["candidates"]] == [again.id]
    assert her.id not in str(only)


def test_a_reference_photo_names_its_person_by_id(factory: sessionmaker[Session], photos: dict[str, Findings]) -> None:
    with transaction(factory) as session:
        probe, _ = face_item(session, "2026-S7", photos["variant"])
        photo, [gallery_face] = face_item(session, "REGISTER", photos["astronaut"])
        someone, _ = persons.put_person(session, row=persons.parse_person(person(41)))
        persons.link_photo(session, person_id=someone.id, evidence_id=photo.id, added_by="t")
        person_id, name = someone.id, someone.family_name
    result = _result(answer(factory, _ask(factory, probe.id)))
    [candidate] = result["candidates"]
    assert candidate["finding_id"] == gallery_face and candidate["reference_photo"] is True
    assert candidate["person_ids"] == [person_id] and name not in str(result)


def test_vanished_findings_are_skipped_and_forgotten(factory: sessionmaker[Session],
                                                     photos: dict[str, Findings]) -> None:
    with transaction(factory) as session:
        probe, _ = face_item(session, "2026-S8", photos["variant"])
        her, [her_face] = face_item(session, "2026-S9", photos["astronaut"])
        him, _ = face_item(session, "2026-S10", photos["zidane"])
    first = _result(answer(factory, _ask(factory, probe.id)))
    assert [c["evidence_id"] for c in first["candidates"]] == [her.id, him.id]
    with transaction(factory) as session:  # re-analysis: her face is replaced by nothing yet
        session.execute(delete(Finding).where(Finding.id == her_face))
    second = _result(answer(factory, _ask(factory, probe.id)))
    assert [c["evidence_id"] for c in second["candidates"]] == [him.id]
    with factory() as session:
        assert her_face not in indexes.holder(faces.FACES, session=session).index(session)
    request_id = _ask(factory, probe.id)
    with transaction(factory) as session:  # the probe's own face replaced after the request: a clear failure
        session.execute(delete(Finding).where(Finding.evidence_id == probe.id))
    failed = answer(factory, request_id)
    assert failed.result is None and failed.error is not None and "analysed again" in failed.error
    with factory() as session:
        request = session.get_one(MatchRequest, request_id)
        assert (request.status, request.error) == ("failed", failed.error)


def test_a_probe_without_a_usable_face_is_refused_and_bad_requests_get_an_error_answer(
        factory: sessionmaker[Session], photos: dict[str, Findings]) -> None:
    [frontal, profile] = sorted(photos["zidane"], key=lambda f: faces.dlib_vector(f[2]) is None)
    with transaction(factory) as session:
        bare = samples.item(session, "2026-S11")
        side_view, [profile_id] = face_item(session, "2026-S11", [profile])
        _, [other_face] = face_item(session, "2026-S12", [frontal])
        probe, _ = face_item(session, "2026-S12", photos["variant"])
        for item, finding_id in ((bare, None), (side_view, None), (side_view, profile_id), (probe, other_face)):
            with pytest.raises(searches.NoFace) as refused:
                searches.request_search(session, kind=searches.FACE_SEARCH, probe=item, finding_id=finding_id,
                                        parameters={}, requested_by="t")
            assert refused.value.evidence_id == item.id and "embedding" in refused.value.reason
        with pytest.raises(searches.NoPicture):
            searches.request_search(session, kind=searches.IMAGE_SEARCH, probe=probe, finding_id=None,
                                    parameters={}, requested_by="t")
        for limit in (0, 101, "5", True):
            with pytest.raises(ValueError, match="limit"):
                searches.request_search(session, kind=searches.FACE_SEARCH, probe=probe, finding_id=None,
                                        parameters={"limit": limit}, requested_by="t")
        with pytest.raises(ValueError, match="kind"):
            searches.request_search(session, kind="tattoo_search", probe=probe, finding_id=None, parameters={},
                                    requested_by="t")
        assert session.scalars(select(Job).where(Job.kind == searches.SEARCH_JOB)).all() == []
        # A request of another kind (a fingerprint's) is not a search; a tampered one fails with its reason.
        fingerprint = MatchRequest(kind=matching.SEARCH, probe_evidence_id=probe.id, parameters={}, requested_by="t")
        tampered = MatchRequest(kind=searches.FACE_SEARCH, probe_evidence_id=probe.id, requested_by="t",
                                parameters={"limit": 1000, "finding_id": other_face})
        session.add_all([fingerprint, tampered])
        session.flush()
        ids = fingerprint.id, tampered.id
    with transaction(factory) as session:
        missing = answering.answer(session, request_id="no-such-request")
        assert missing.result is None and missing.error is not None and "does not exist" in missing.error
        assert answering.answer(session, request_id=ids[0]).error == f"search request {ids[0]} does not exist"
        assert "limit" in str(answering.answer(session, request_id=ids[1]).error)


@pytest.fixture(scope="module")
def store() -> MemoryObjectStore:
    return MemoryObjectStore()


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory, store: MemoryObjectStore) -> dict[str, dict[str, Findings]]:
    """The hashes and similarity analyzers' findings of bus.jpg, its near-duplicate and zidane.jpg."""
    folder = tmp_path_factory.mktemp("pictures")
    paths = {"bus": bus_jpg_path(), "copy": _near_duplicate(folder / "copy.jpg"), "zidane": zidane_jpg_path()}
    similarity = SimilarityAnalyzer()
    similarity.load()
    hashes, limits = HashesAnalyzer(), AnalysisLimits()
    return {name: {"hashes": [_stored(store, name, f) for f in hashes.analyze(evidence(path), limits)
                              if f.kind == "hash.pdq"],
                   "similarity": [_stored(store, name, f) for f in similarity.analyze(evidence(path), limits)]}
            for name, path in paths.items()}


@pytest.fixture
def context(tmp_path: Path, store: MemoryObjectStore) -> Iterator[MatchContext]:
    yield MatchContext(settings=Settings(_env_file=None, home=tmp_path / "home"), store=store)  # type: ignore[call-arg]


def _picture(session: Session, case: str, findings: dict[str, Findings]) -> Evidence:
    item = samples.item(session, case)
    samples.record(session, item, "hashes", HashesAnalyzer.version, findings["hashes"])
    samples.record(session, item, "similarity", SimilarityAnalyzer.version, findings["similarity"])
    return item


def test_a_picture_finds_its_near_duplicate_verified_first(factory: sessionmaker[Session], context: MatchContext,
                                                           pictures: dict[str, dict[str, Findings]]) -> None:
    with transaction(factory) as session:
        probe = _picture(session, "2026-I1", pictures["bus"])
        copy_item = _picture(session, "2026-I2", pictures["copy"])
        other = _picture(session, "2026-I3", pictures["zidane"])
        [embedding] = session.scalars(select(Finding.id).where(Finding.evidence_id == probe.id,
                                                               Finding.kind == "similarity.embedding")).all()
    request_id = _ask(factory, probe.id, kind=searches.IMAGE_SEARCH, verify=True)
    with factory() as session:
        assert session.get_one(MatchRequest, request_id).parameters["finding_id"] == embedding
    result = _result(answer(factory, request_id, context))
    first, second = result["candidates"]
    assert (first["evidence_id"], first["rank"], first["same_image"], first["verified"]) == (copy_item.id, 1, True,
                                                                                            True)
    assert first["score"] >= IMAGE_THRESHOLD and first["near_duplicate"] is True and first["cosine"] >= 0.9
    assert first["verification"]["inliers"] >= 25 and len(first["verification"]["transform"]) == 3
    assert (second["evidence_id"], second["same_image"], second["score"]) == (other.id, False, None)
    assert second["cosine"] < first["cosine"] and second["verification"]["reason"]
    reliable = sum(pictures[name]["hashes"][0][2]["reliable"] is True for name in ("bus", "copy", "zidane"))
    assert result["verified"] == 2 and result["index_size"] == {"pdq": reliable, "scene": 3}
    assert result["probe"]["finding_id"] == embedding and result["probe"]["keypoints"] is True
    unverified = _result(answer(factory, _ask(factory, probe.id, kind=searches.IMAGE_SEARCH, verify=False),
                                context))
    assert [c["evidence_id"] for c in unverified["candidates"]] == [copy_item.id, other.id]  # by cosine
    assert all(c["verified"] is False and c["same_image"] is None and "verification" not in c
               for c in unverified["candidates"])
    filtered = _result(answer(factory, _ask(factory, probe.id, kind=searches.IMAGE_SEARCH,
                                            case_ids=[other.case_id]), context))
    assert [c["evidence_id"] for c in filtered["candidates"]] == [other.id]


def test_a_replaced_picture_is_skipped(factory: sessionmaker[Session], context: MatchContext,
                                       pictures: dict[str, dict[str, Findings]]) -> None:
    with transaction(factory) as session:
        probe = _picture(session, "2026-I4", pictures["bus"])
        copy_item = _picture(session, "2026-I5", pictures["copy"])
    assert len(_result(answer(factory, _ask(factory, probe.id, kind=searches.IMAGE_SEARCH), context))
               ["candidates"]) == 1
    with transaction(factory) as session:
        session.execute(delete(Finding).where(Finding.evidence_id == copy_item.id))
    assert _result(answer(factory, _ask(factory, probe.id, kind=searches.IMAGE_SEARCH), context))["candidates"] == []
    assert context.settings is not None
    with factory() as session:
        pdq, scene = image_indexes.image_indexes().synced(session, home=context.settings.home)
        assert len(pdq) == len(scene) == 1


def test_search_jobs_are_durable_and_deduplicated(factory: sessionmaker[Session],
                                                  photos: dict[str, Findings]) -> None:
    with transaction(factory) as session:
        probe, _ = face_item(session, "2026-S13", photos["variant"])
    first, second = _ask(factory, probe.id), _ask(factory, probe.id)
    assert first != second
    with transaction(factory) as session:
        assert jobs.enqueue(session, kind=searches.SEARCH_JOB, dedupe_key=f"search:{first}",
                            payload={"request_id": first})[1] is False  # one job per request
        queued = session.scalars(select(Job).where(Job.kind == searches.SEARCH_JOB).order_by(Job.id)).all()
        assert [job.payload["request_id"] for job in queued] == [first, second]
    assert searches.FACE_KIND == faces.FACE_KIND and searches.PICTURE_KIND == image_indexes.EMBEDDING_KIND
