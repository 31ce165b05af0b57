"""The face matcher's FaceNet space: faces matched through FaceNet's 512-d vectors, alone or beside dlib's.

FaceNet weights do not ship in any package and nothing is downloaded, so two kinds of test:

* recorded findings whose vectors are shaped like FaceNet's, not uniform noise (on which every face is as far
  from every other): unit vectors around identity centres that share a common direction, as trained face
  embeddings do, so that two people lie about 1.2 apart (cosine similarity about 0.3; the FaceNet paper's Figure 1
  shows different people at 1.10-1.15) and two photos of one person 0.55-0.9 apart (the paper: 0.88-1.0);
  dlib-shaped vectors, where a test needs both spaces, come from `tests.vector_samples`;
* the real faces analyzer with operator-configured weights made in the test (a randomly initialised
  InceptionResnetV1, saved and hashed), on ultralytics' zidane.jpg: it shows what the analyzer writes is what
  the matcher reads and indexes, not recognition accuracy. It loads models: run it under the heavy-work lock.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from models.specs import DLIB_FACE_EMBEDDING
from storage import matches, persons
from storage.db import transaction
from storage.matches import Match
from storage.tables import AnalysisRun, Evidence, Finding
from storage.vectors import FACENET_FACE
from tests import match_samples as samples
from tests.face_samples import analyze_faces
from tests.media_samples import zidane_jpg_path
from tests.register_samples import person
from tests.vector_samples import face_gallery
from workers.crossmatch import crossmatch
from workers.matchers import indexes
from workers.matchers.base import Subject
from workers.matchers.face_spaces import (
    DISTANCE_THRESHOLD,
    FACENET,
    FACENET_DISTANCE_THRESHOLD,
    FACENET_FACES,
    FACENET_MODEL,
    FACES,
    THRESHOLD,
    facenet_weights,
    score_of,
)
from workers.matchers.faces import FaceMatcher, dlib_vector, facenet_vector

DIMENSION = FACENET_FACE.dimension
COMMON = 0.77  # weight of the direction every face shares: centres of two people ~1.1 apart, photos ~1.2
PHOTO_OFFSET = (0.45, 0.75)  # length of a photo's offset from its person's centre: two photos 0.55-0.9 apart
DLIB, FACENET_SPACE = FACES.space.name, FACENET_FACES.space.name

Faces = list[tuple[str, str | None, dict[str, Any]]]


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


class People:
    """FaceNet-shaped identities (see the module) and photos of them, reproducibly."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.common = _unit(self.rng.standard_normal(DIMENSION))

    def person(self) -> np.ndarray:
        return _unit(COMMON * self.common + _unit(self.rng.standard_normal(DIMENSION)))

    def photo(self, centre: np.ndarray) -> np.ndarray:
        offset = _unit(self.rng.standard_normal(DIMENSION)) * self.rng.uniform(*PHOTO_OFFSET)
        return _unit(centre + offset)


def euclidean(first: Any, second: Any) -> float:
    return float(np.linalg.norm(_unit(np.asarray(first, dtype=np.float64)) - _unit(np.asarray(second, np.float64))))


def face(*, facenet: Any = None, dlib: Any = None, model: str = FACENET_MODEL) -> tuple[str, str | None, dict]:
    """A "faces.face" finding as the analyzer writes it, with the embeddings given (rounded as it rounds)."""
    data: dict[str, Any] = {"box": [10.0, 10.0, 110.0, 120.0], "frame": 0,
                            "quality": {"grade": "good", "score": 0.9, "issues": []},
                            "embedding": None if dlib is None else {
                                "model": DLIB_FACE_EMBEDDING.name, "dimensions": len(dlib),
                                "vector": [round(float(value), 6) for value in dlib]}}
    if facenet is not None:
        data["embeddings"] = [{"model": model, "dimensions": len(facenet),
                               "vector": [round(float(value), 6) for value in facenet]}]
    return "faces.face", "face", data


def _item(session: Session, case: str, faces: Faces, *, weights: str | None = None) -> tuple[Evidence, list[str]]:
    """An item with these faces, recorded by a faces run (that used FaceNet weights `weights`, when given)."""
    evidence = samples.item(session, case)
    ids = samples.record(session, evidence, "faces", "1.2.1", copy.deepcopy(faces))
    if weights is not None:
        run = session.get_one(AnalysisRun, session.get_one(Finding, ids[0]).run_id)
        run.models = {"face_embedding_facenet": {"name": FACENET_MODEL, "sha256": weights}}
        session.flush()
    return evidence, ids


def _matches(factory: sessionmaker[Session], evidence_id: str) -> list[Match]:
    with factory() as session:
        return list(matches.matches_of(session, evidence_id=evidence_id, modality="face"))


def test_the_shape_of_the_vectors_used_here() -> None:
    """The premise of the tests below: photos of one person within FaceNet's threshold, of two people beyond."""
    people = People(seed=7)
    alike, apart = [], []
    for _ in range(40):
        first, second = people.person(), people.person()
        a, b, c = people.photo(first), people.photo(first), people.photo(second)
        alike.append(euclidean(a, b))
        apart.append(euclidean(a, c))
        assert abs(float(np.linalg.norm(a)) - 1.0) < 1e-9
    assert min(alike) > 0.5 and max(alike) < 0.95 < FACENET_DISTANCE_THRESHOLD
    assert min(apart) > FACENET_DISTANCE_THRESHOLD + 0.05 and max(apart) < 1.35


def test_facenet_vector_reads_only_512_finite_numbers_of_facenet() -> None:
    people = People()
    vector = people.photo(people.person())
    _, _, data = face(facenet=vector)
    read = facenet_vector(data)
    assert read is not None and len(read) == 512 and dlib_vector(data) is None
    assert np.allclose(read, vector, atol=1e-6)
    other = {"model": "arcface-r100", "dimensions": 512, "vector": [1.0] * 512}
    assert facenet_vector({**data, "embeddings": [other, *data["embeddings"]]}) == read  # found among others
    assert facenet_vector({"embeddings": [other]}) is None  # another model's 512 numbers
    assert facenet_vector(face(facenet=vector[:511])[2]) is None
    assert facenet_vector(face(facenet=np.zeros(512))[2]) is None  # no direction: the cosine index refuses it
    assert facenet_vector(face(facenet=vector, model="facenet-casia")[2]) is None
    nan = copy.deepcopy(data)
    nan["embeddings"][0]["vector"][3] = float("nan")
    assert facenet_vector(nan) is None
    assert facenet_vector({"embeddings": None}) is None and facenet_vector({"embeddings": "x"}) is None
    assert facenet_vector({}) is None and facenet_vector({"embeddings": [{"model": FACENET_MODEL}]}) is None
    dlib_only = face(dlib=np.ones(128))
    assert facenet_vector(dlib_only[2]) is None and dlib_vector(dlib_only[2]) is not None


def test_facenet_scores_and_distances() -> None:
    people = People()
    a, b = people.photo(people.person()), people.photo(people.person())
    assert FACENET.euclidean(1.0 - float(a @ b)) == pytest.approx(euclidean(a, b), abs=1e-9)
    assert FACENET.between(a * 3.0, b * 0.5) == pytest.approx(euclidean(a, b), abs=1e-9)  # lengths do not count
    assert FACENET.score(FACENET_DISTANCE_THRESHOLD) == THRESHOLD == 0.5 and FACENET.score(0.0) == 1.0
    assert FACENET.score(0.5) > FACENET.score(1.0) > FACENET.score(1.5) > 0.0
    assert facenet_weights({"face_embedding_facenet": {"sha256": "ab" * 32}}) == "ab" * 32
    assert facenet_weights({}) is None and facenet_weights(None) is None


def test_the_same_person_is_matched_across_cases_through_facenet_alone(factory: sessionmaker[Session]) -> None:
    people = People(seed=1)
    pia, quinn = people.person(), people.person()
    photos = [people.photo(pia) for _ in range(3)]
    with transaction(factory) as session:
        earlier, [target] = _item(session, "2026-N1", [face(facenet=photos[0])])
        stranger, _ = _item(session, "2026-N2", [face(facenet=people.photo(quinn))])
        later, [first, second] = _item(session, "2026-N3", [face(facenet=photos[1]), face(facenet=photos[2])])
        result = crossmatch(session, evidence_id=later.id)
    with transaction(factory) as session:
        again = crossmatch(session, evidence_id=earlier.id)  # the other direction: the same pairs
        alone = crossmatch(session, evidence_id=stranger.id)
    assert (result.findings, result.new, again.new, alone.new) == (2, 2, 0, 0)
    found = _matches(factory, later.id)
    assert sorted(m.finding_id for m in found) == sorted([first, second])  # never each other: the same item
    for match in found:
        assert (match.target_kind, match.target_id, match.target_evidence_id) == ("finding", target, earlier.id)
        assert match.matcher == "faces" and match.matcher_version == FaceMatcher.version == "1.1.0"
        detail = match.detail
        mine = photos[1] if match.finding_id == first else photos[2]
        assert detail["distance"] == pytest.approx(euclidean(mine, photos[0]), abs=1e-3)
        assert detail["distance"] < detail["distance_threshold"] == FACENET_DISTANCE_THRESHOLD
        assert (detail["space"], detail["embedding_model"]) == (FACENET_SPACE, FACENET_MODEL)
        assert match.score == pytest.approx(score_of(detail["distance"], FACENET_DISTANCE_THRESHOLD), abs=1e-4)
        assert match.threshold == THRESHOLD and match.score > THRESHOLD
        assert (detail["agreeing_spaces"], detail["disagreeing_spaces"]) == ([FACENET_SPACE], [])
        assert list(detail["spaces"]) == [FACENET_SPACE]  # no dlib embedding on either side: not compared
        assert detail["spaces"][FACENET_SPACE]["found_by_search"] is True
    assert _matches(factory, stranger.id) == []


def test_a_reference_photo_is_found_through_facenet_alone(factory: sessionmaker[Session]) -> None:
    people = People(seed=6)
    pia = people.person()
    with transaction(factory) as session:
        photo, [reference] = _item(session, "REGISTER", [face(facenet=people.photo(pia))])
        person_id = persons.put_person(session, row=persons.parse_person(person(21)))[0].id
        persons.link_photo(session, person_id=person_id, evidence_id=photo.id, added_by="t")
        evidence, _ = _item(session, "2026-N18", [face(facenet=people.photo(pia))])
        result = crossmatch(session, evidence_id=evidence.id)
    assert result.new == 1
    [match] = _matches(factory, evidence.id)
    assert (match.target_kind, match.target_id) == ("person", person_id)
    assert match.detail["reference_finding_id"] == reference and match.detail["space"] == FACENET_SPACE
    assert _matches(factory, photo.id) == []  # the reference face is the person's, not a finding match


def test_faces_without_a_usable_facenet_vector_are_not_indexed_nor_matched(factory: sessionmaker[Session]) -> None:
    people = People(seed=2)
    pia = people.person()
    short = face(facenet=people.photo(pia)[:511])
    other_model = face(facenet=people.photo(pia), model="facenet-casia")
    matcher = FaceMatcher()
    for data, wanted in ((short[2], False), (other_model[2], False), (face(facenet=pia)[2], True)):
        assert matcher.wants(Subject("f", "e", "c", "faces.face", "faces", "1.2.1", "face", 0.9, data)) is wanted
    with transaction(factory) as session:
        _, [short_id] = _item(session, "2026-N4", [short])
        _, [other_id] = _item(session, "2026-N5", [other_model])
        later, [probe] = _item(session, "2026-N6", [face(facenet=people.photo(pia))])
        result = crossmatch(session, evidence_id=later.id)
        held = indexes.holder(FACENET_FACES, session=session).index(session)
        assert probe in held and short_id not in held and other_id not in held and len(held) == 1
    assert (result.findings, result.new) == (1, 0)


def test_each_space_proposes_and_a_pair_found_by_both_is_one_match_with_both_distances(
        factory: sessionmaker[Session]) -> None:
    """dlib decides when it agrees (its score, as without FaceNet); FaceNet adds what only it finds; the detail
    says which spaces agreed, with every distance."""
    gallery = face_gallery(300, seed=3)
    by_identity: dict[int, list[int]] = {}
    for position, identity in enumerate(gallery.identities):
        by_identity.setdefault(int(identity), []).append(position)
    a, b = [positions for positions in by_identity.values() if len(positions) >= 2][:2]
    dlib_a1, dlib_a2, dlib_b = gallery.vectors[a[0]], gallery.vectors[a[1]], gallery.vectors[b[0]]
    assert float(np.linalg.norm(dlib_a1 - dlib_a2)) < DISTANCE_THRESHOLD < float(np.linalg.norm(dlib_a1 - dlib_b))
    people = People(seed=4)
    pia, quinn = people.person(), people.person()
    probe_facenet = people.photo(pia)
    with transaction(factory) as session:
        _, [both] = _item(session, "2026-N7", [face(dlib=dlib_a2, facenet=people.photo(pia))])
        _, [dlib_only] = _item(session, "2026-N8", [face(dlib=dlib_a2, facenet=people.photo(quinn))])
        _, [facenet_only] = _item(session, "2026-N9", [face(dlib=dlib_b, facenet=people.photo(pia))])
        _, [neither] = _item(session, "2026-N10", [face(dlib=dlib_b, facenet=people.photo(quinn))])
        probe, _ = _item(session, "2026-N11", [face(dlib=dlib_a1, facenet=probe_facenet)])
        result = crossmatch(session, evidence_id=probe.id)
    assert result.new == 3
    found = {match.target_id: match for match in _matches(factory, probe.id)}
    assert set(found) == {both, dlib_only, facenet_only}
    expected = {both: (DLIB, [DLIB, FACENET_SPACE], []), dlib_only: (DLIB, [DLIB], [FACENET_SPACE]),
                facenet_only: (FACENET_SPACE, [FACENET_SPACE], [DLIB])}
    for target, (deciding, agreeing, disagreeing) in expected.items():
        detail = found[target].detail
        assert (detail["space"], detail["agreeing_spaces"], detail["disagreeing_spaces"]) == (deciding, agreeing,
                                                                                             disagreeing)
        spaces = detail["spaces"]
        assert list(spaces) == [DLIB, FACENET_SPACE]  # both faces carry both: compared in both
        for name in (DLIB, FACENET_SPACE):
            assert spaces[name]["within"] is (name in agreeing)
            assert spaces[name]["found_by_search"] is (name in agreeing)  # the other space's distance is computed
            assert spaces[name]["score"] == pytest.approx(
                score_of(spaces[name]["distance"], spaces[name]["distance_threshold"]), abs=1e-4)
        assert detail["distance"] == spaces[deciding]["distance"]
        assert found[target].score == pytest.approx(spaces[deciding]["score"], abs=1e-4)
    dlib_distance = found[both].detail["spaces"][DLIB]["distance"]
    assert dlib_distance == pytest.approx(float(np.linalg.norm(dlib_a1 - dlib_a2)), abs=1e-3)
    assert found[both].score == pytest.approx(score_of(dlib_distance), abs=1e-4)  # dlib's score, as before
    assert found[both].detail["metric"] == "euclidean" and found[both].detail["distance_threshold"] == 0.6
    assert found[dlib_only].detail["spaces"][FACENET_SPACE]["distance"] > FACENET_DISTANCE_THRESHOLD
    assert neither not in found


def test_facenet_vectors_of_different_weights_are_never_compared(factory: sessionmaker[Session]) -> None:
    people = People(seed=5)
    pia = people.person()
    ours, theirs = hashlib.sha256(b"weights-a").hexdigest(), hashlib.sha256(b"weights-b").hexdigest()
    with transaction(factory) as session:
        _, [same] = _item(session, "2026-N12", [face(facenet=people.photo(pia))], weights=ours)
        _, [other] = _item(session, "2026-N13", [face(facenet=people.photo(pia))], weights=theirs)
        _, [unrecorded] = _item(session, "2026-N14", [face(facenet=people.photo(pia))])
        probe, _ = _item(session, "2026-N15", [face(facenet=people.photo(pia))], weights=ours)
        crossmatch(session, evidence_id=probe.id)
    found = {match.target_id: match.detail for match in _matches(factory, probe.id)}
    assert set(found) == {same, unrecorded}  # a run without a recorded digest is given the benefit
    assert other not in found
    said = found[same]["spaces"][FACENET_SPACE]
    assert (said["weights_sha256"], said["other_weights_sha256"]) == (ours, ours)
    assert found[unrecorded]["spaces"][FACENET_SPACE]["other_weights_sha256"] is None


@pytest.mark.timeout(600)
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_analyzers_facenet_vectors_are_read_indexed_and_matched(
        factory: sessionmaker[Session], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights an operator would configure, made here: what the analyzer writes, the matcher reads."""
    import torch
    from facenet_pytorch import InceptionResnetV1

    from workers.analyzers.faces import FACENET_SHA256_ENV, FACENET_WEIGHTS_ENV, FacesAnalyzer

    torch.manual_seed(12)
    weights = tmp_path / "facenet-operator.pt"
    torch.save(InceptionResnetV1(pretrained=None, classify=False).eval().state_dict(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    monkeypatch.setenv(FACENET_WEIGHTS_ENV, str(weights))
    monkeypatch.setenv(FACENET_SHA256_ENV, digest)
    analyzer = FacesAnalyzer()
    analyzer.load()
    provenance = analyzer.provenance()
    assert facenet_weights(provenance) == digest
    found: Faces = [(f.kind, f.label, f.data) for f in analyze_faces(analyzer, zidane_jpg_path())]
    embedded = [data for _, _, data in found if facenet_vector(data) is not None]
    assert len(found) == 2 and len(embedded) == 1  # the profile gets no embedding in either space
    vector = facenet_vector(embedded[0])
    assert vector is not None and len(vector) == 512 and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4
    assert dlib_vector(embedded[0]) is not None
    with transaction(factory) as session:
        earlier, earlier_ids = _item(session, "2026-N16", found)
        later, later_ids = _item(session, "2026-N17", found)  # the same photo, again, in another case
        for evidence in (earlier, later):
            run_id = session.scalar(select(Finding.run_id).where(Finding.evidence_id == evidence.id).limit(1))
            session.get_one(AnalysisRun, run_id).models = provenance
        session.flush()
        result = crossmatch(session, evidence_id=later.id)
        held = indexes.holder(FACENET_FACES, session=session).index(session)
        indexed = {finding_id for finding_id in earlier_ids + later_ids if finding_id in held}
    assert len(indexed) == 2 and len(held) == 2  # the frontal face of each copy; not the profiles
    assert (result.findings, result.new) == (1, 1)
    [match] = _matches(factory, later.id)
    assert match.target_id in indexed and match.finding_id in indexed and match.target_evidence_id == earlier.id
    detail = match.detail
    assert detail["agreeing_spaces"] == [DLIB, FACENET_SPACE] and detail["space"] == DLIB
    said = detail["spaces"][FACENET_SPACE]
    assert said["distance"] < 1e-3 and said["found_by_search"] is True
    assert (said["weights_sha256"], said["other_weights_sha256"]) == (digest, digest)
