"""Faces: each face found in evidence, against the persons register, the watchlists in force, and the faces in all
other evidence of every case.

Consumes the faces analyzer's "faces.face" findings that carry an embedding in at least one face space
(`workers.matchers.face_spaces`: dlib's 128-d, always computed; FaceNet's 512-d, when an operator configured its
weights); a face without any (a profile, whose embeddings the analyzer withholds) is not matched. In each space
it carries, a face's nearest `NEIGHBOURS` faces closer than the space's threshold (dlib: 0.6 Euclidean; FaceNet:
1.05 between unit vectors) are candidates; a face found in either space is one candidate, compared in every
space in which both faces carry a vector (through the index when its search found it, from the two findings'
vectors otherwise). Each candidate becomes:

* a match to a *person* (side B the person) when the face is a reference photo's gallery face: the largest face
  of an evidence item linked to the person (`storage.persons.person_photos`). The person is resolved when
  matching, so linking a photo whose analysis has ended makes it the person's gallery at once, without
  re-analysis; several photos of one person give one match, through the nearest. Items matched before the link
  are not matched again now (a later re-matching job will). A person on watchlists in force
  (`storage.watchlists.active_watchlists_of`) makes the match carry those lists (name, purpose, owner, expiry)
  and `detail["alert"]`; an expired list is ignored;
* a match to that *finding* (side B the other face) otherwise, in any case.

Faces of the same item are never matched with each other, and a reference photo is never matched with the person
it pictures (through another photo of that person either). A gallery face is the person's: it is matched with
the gallery faces of other persons (one face registered under two persons is worth a reviewer's look), not with
faces in other evidence, which find it from their side (older ones once re-matched).

Two spaces, one match. A pair is recorded once whichever spaces found it (`storage.matches.add_match` keeps the
first of a pair), so the spaces are combined here: the *deciding* space is the first of `FACE_SPACES` (dlib, then
FaceNet) in which the pair is within the threshold; its distance gives the score and the top-level `distance`,
`distance_threshold`, `metric`, `embedding_model` and `space` of `detail`. dlib comes first because it is always
computed, with verified weights and a documented threshold, whereas FaceNet's weights are the operator's: so
configuring FaceNet never changes a dlib match; it adds the pairs only FaceNet finds, and corroboration.
`detail["spaces"]` gives, per space compared, the distance, threshold, score, whether it is within and whether
its search found it (FaceNet: both weights digests); `agreeing_spaces` and `disagreeing_spaces` name the spaces
within and beyond their thresholds, so an examiner sees at once a pair both models find (stronger) and one the
other model contradicts (worth a closer look).

Score. In the deciding space, `face_spaces.score_of`: 1 for identical embeddings, 0.5 at the threshold (the
matcher's `threshold`, recorded with each match), 0 at twice it. A distance is investigative information, never
an identification.

Quality. Poor faces (the analyzer's quality grade) are matched, but `detail["low_quality"]` says so, with both
sides' grades, scores and issues.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.persons import PersonPhoto, persons_pictured
from storage.tables import AnalysisRun, Finding, utcnow
from storage.vectors import VectorHit, VectorLike
from storage.watchlists import active_watchlists_of
from workers.matchers import indexes
from workers.matchers.base import Matcher, Proposal, Subject
from workers.matchers.face_spaces import (
    DISTANCE_THRESHOLD,
    FACE_KIND,
    FACE_SPACES,
    FACENET,
    FACENET_FACES,
    FACES,
    SCORE_SPAN,
    THRESHOLD,
    FaceSpace,
    comparable,
    dlib_vector,
    facenet_vector,
    facenet_weights,
    score_of,
)
from workers.matchers.registry import register

__all__ = ["DISTANCE_THRESHOLD", "FACENET_FACES", "FACES", "FACE_KIND", "SCORE_SPAN", "THRESHOLD", "FaceMatcher",
           "dlib_vector", "facenet_vector", "score_of"]

NEIGHBOURS = 100  # faces looked at per face and space (nearest first); all beyond are farther
LOW_QUALITY_GRADES = frozenset({"poor"})
METHOD = "similarity"  # a distance under the threshold (storage.matches.METHODS)
_SEARCH_TRIES = 3  # a search repeated after removing hits whose findings were replaced


@dataclass(frozen=True)
class Face:
    """A face near the subject: its finding, where it is, and the FaceNet weights of its run."""

    finding_id: str
    evidence_id: str
    case_id: str
    analyzer: str
    analyzer_version: str
    data: dict[str, Any]
    weights: str | None


@dataclass(frozen=True)
class Comparison:
    """A face's distance to the subject in one space; `searched`: found by the space's index search (otherwise
    computed from the two findings' vectors)."""

    space: FaceSpace
    distance: float
    searched: bool

    @property
    def within(self) -> bool:
        return self.distance < self.space.distance_threshold


@dataclass(frozen=True)
class Candidate:
    """A face some space found near the subject, compared in every space both faces carry (in FACE_SPACES order)."""

    face: Face
    comparisons: tuple[Comparison, ...]

    @property
    def deciding(self) -> Comparison:
        return next(comparison for comparison in self.comparisons if comparison.within)

    @property
    def score(self) -> float:
        return self.deciding.space.score(self.deciding.distance)


def quality_of(data: dict[str, Any]) -> dict[str, Any]:
    quality = data.get("quality") or {}
    return {"grade": quality.get("grade"), "score": quality.get("score"), "issues": quality.get("issues") or []}


def box_area(data: dict[str, Any]) -> float:
    box = data.get("box") or [0, 0, 0, 0]
    return max(0.0, float(box[2]) - float(box[0])) * max(0.0, float(box[3]) - float(box[1]))


@register
class FaceMatcher(Matcher):
    """Faces in evidence, against the persons register's reference photos, watchlists and all other evidence."""

    name = "faces"
    version = "1.1.0"
    modality = "face"
    consumes = frozenset({FACE_KIND})
    threshold = THRESHOLD

    def wants(self, subject: Subject) -> bool:
        return subject.kind in self.consumes and any(space.vector(subject.data) is not None
                                                     for space in FACE_SPACES)

    def propose(self, session: Session, subject: Subject) -> list[Proposal]:
        vectors = {space.name: vector for space in FACE_SPACES
                   if (vector := space.vector(subject.data)) is not None}
        if not vectors:
            return []
        weights = self._weights(session, subject.finding_id) if FACENET.name in vectors else None
        near = [candidate for candidate in self._candidates(session, subject, vectors, weights)
                if candidate.face.evidence_id != subject.evidence_id]
        gallery = self._gallery(session, {candidate.face.evidence_id for candidate in near})
        own_persons = set(persons_pictured(session, evidence_id=subject.evidence_id))
        is_gallery = bool(own_persons) and subject.finding_id in self._gallery(session, {subject.evidence_id})
        by_person: dict[str, Candidate] = {}
        proposals = []
        for candidate in near:  # best first
            persons = gallery.get(candidate.face.finding_id)
            if persons is None:
                if not is_gallery:
                    proposals.append(self._to_finding(subject, candidate, weights))
                continue
            for person_id in persons - own_persons:
                by_person.setdefault(person_id, candidate)
        proposals += [self._to_person(session, subject, person_id, candidate, weights)
                      for person_id, candidate in by_person.items()]
        return proposals

    def _candidates(self, session: Session, subject: Subject, vectors: dict[str, VectorLike],
                    weights: str | None) -> list[Candidate]:
        """The faces some space finds within its threshold, each compared in every space both carry, best first."""
        found: dict[str, tuple[Face, dict[str, float]]] = {}
        for space in FACE_SPACES:
            if space.name not in vectors:
                continue
            for face, distance in self._near(session, subject, space, vectors[space.name]):
                if comparable(space, weights, face.weights):
                    found.setdefault(face.finding_id, (face, {}))[1][space.name] = distance
        candidates = []
        for face, searched in found.values():
            comparisons = []
            for space in FACE_SPACES:
                if space.name in searched:
                    comparisons.append(Comparison(space, searched[space.name], True))
                    continue
                theirs = space.vector(face.data)
                if space.name in vectors and theirs is not None and comparable(space, weights, face.weights):
                    comparisons.append(Comparison(space, space.between(vectors[space.name], theirs), False))
            candidates.append(Candidate(face, tuple(comparisons)))
        return sorted(candidates, key=lambda candidate: (-candidate.score, candidate.face.finding_id))

    def _near(self, session: Session, subject: Subject, space: FaceSpace,
              vector: VectorLike) -> list[tuple[Face, float]]:
        """The faces within the space's threshold, with their distances, nearest first, as the record store has
        them now: a hit whose finding was replaced since it was indexed is removed from the index and the search
        repeated."""
        holder = indexes.holder(space.indexed, session=session)
        index = holder.index(session)
        faces: list[tuple[Face, float]] = []
        for _ in range(_SEARCH_TRIES):
            hits = [VectorHit(hit.id, space.euclidean(hit.distance)) for hit in index.search(vector, k=NEIGHBOURS)]
            hits = [hit for hit in hits if hit.distance < space.distance_threshold and hit.id != subject.finding_id]
            faces = self._faces(session, hits)
            gone = {hit.id for hit in hits} - {face.finding_id for face, _ in faces}
            if not gone:
                break
            holder.forget(gone)
        return faces

    @staticmethod
    def _faces(session: Session, hits: list[VectorHit]) -> list[tuple[Face, float]]:
        if not hits:
            return []
        distances = {hit.id: hit.distance for hit in hits}
        rows = session.execute(select(Finding, AnalysisRun.analyzer_version, AnalysisRun.models)
                               .join(AnalysisRun, AnalysisRun.id == Finding.run_id)
                               .where(Finding.id.in_(sorted(distances)))).tuples()
        faces = [(Face(finding.id, finding.evidence_id, finding.case_id, finding.analyzer, version,
                       dict(finding.data), facenet_weights(models)), distances[finding.id])
                 for finding, version, models in rows]
        return sorted(faces, key=lambda pair: (pair[1], pair[0].finding_id))

    @staticmethod
    def _weights(session: Session, finding_id: str) -> str | None:
        """The FaceNet weights of the run that recorded a finding."""
        return facenet_weights(session.scalar(select(AnalysisRun.models)
                                              .join(Finding, Finding.run_id == AnalysisRun.id)
                                              .where(Finding.id == finding_id)))

    @staticmethod
    def _gallery(session: Session, evidence_ids: set[str]) -> dict[str, set[str]]:
        """Of these items, the reference photos' gallery faces (each photo's largest face): finding id -> the
        persons the photo pictures."""
        if not evidence_ids:
            return {}
        pictured: dict[str, set[str]] = defaultdict(set)
        for person_id, evidence_id in session.execute(select(PersonPhoto.person_id, PersonPhoto.evidence_id)
                                                      .where(PersonPhoto.evidence_id.in_(sorted(evidence_ids)))):
            pictured[evidence_id].add(person_id)
        if not pictured:
            return {}
        largest: dict[str, tuple[float, str]] = {}
        for finding_id, evidence_id, data in session.execute(
                select(Finding.id, Finding.evidence_id, Finding.data)
                .where(Finding.evidence_id.in_(sorted(pictured)), Finding.kind == FACE_KIND)):
            area = box_area(dict(data))
            best = largest.get(evidence_id)
            if best is None or (area, best[1]) > (best[0], finding_id):
                largest[evidence_id] = (area, finding_id)
        return {finding_id: pictured[evidence_id] for evidence_id, (_, finding_id) in largest.items()}

    @staticmethod
    def _space(comparison: Comparison, weights: str | None, face: Face) -> dict[str, Any]:
        """What one space says of the pair."""
        space = comparison.space
        said: dict[str, Any] = {"embedding_model": space.model, "metric": space.metric,
                                "distance": round(comparison.distance, 4),
                                "distance_threshold": space.distance_threshold,
                                "score": round(space.score(comparison.distance), 4), "within": comparison.within,
                                "found_by_search": comparison.searched}
        if space is FACENET:
            said |= {"weights_sha256": weights, "other_weights_sha256": face.weights}
        return said

    def _side(self, subject: Subject, candidate: Candidate, weights: str | None) -> dict[str, Any]:
        face, deciding = candidate.face, candidate.deciding
        mine, theirs = quality_of(subject.data), quality_of(face.data)
        return {"distance": round(deciding.distance, 4), "distance_threshold": deciding.space.distance_threshold,
                "metric": deciding.space.metric, "embedding_model": deciding.space.model,
                "score_formula": f"max(0, 1 - distance / {2 * deciding.space.distance_threshold:g})",
                "space": deciding.space.name,
                "spaces": {c.space.name: self._space(c, weights, face) for c in candidate.comparisons},
                "agreeing_spaces": [c.space.name for c in candidate.comparisons if c.within],
                "disagreeing_spaces": [c.space.name for c in candidate.comparisons if not c.within],
                "box": subject.data.get("box"), "frame": subject.data.get("frame"), "quality": mine,
                "other_box": face.data.get("box"), "other_frame": face.data.get("frame"), "other_quality": theirs,
                "low_quality": mine["grade"] in LOW_QUALITY_GRADES or theirs["grade"] in LOW_QUALITY_GRADES}

    def _to_finding(self, subject: Subject, candidate: Candidate, weights: str | None) -> Proposal:
        face = candidate.face
        detail = {**self._side(subject, candidate, weights), "same_case": face.case_id == subject.case_id}
        return Proposal("finding", face.finding_id, round(candidate.score, 4), METHOD, detail,
                        target_evidence_id=face.evidence_id, target_case_id=face.case_id,
                        target_analyzer=face.analyzer, target_version=face.analyzer_version)

    def _to_person(self, session: Session, subject: Subject, person_id: str, candidate: Candidate,
                   weights: str | None) -> Proposal:
        face = candidate.face
        watchlists = [{"id": watchlist.id, "name": watchlist.name, "purpose": watchlist.purpose,
                       "owner": watchlist.owner, "expires_at": watchlist.expires_at.isoformat()}
                      for watchlist in active_watchlists_of(session, person_id=person_id, now=utcnow())]
        detail = {**self._side(subject, candidate, weights), "reference_finding_id": face.finding_id,
                  "reference_evidence_id": face.evidence_id, "reference_analyzer_version": face.analyzer_version,
                  "watchlists": watchlists, "alert": bool(watchlists)}
        return Proposal("person", person_id, round(candidate.score, 4), METHOD, detail)
