"""Faces: each face found in evidence, against the persons register, the watchlists in force, and the faces in all
other evidence of every case.

Consumes the faces analyzer's "faces.face" findings that carry dlib's 128-d embedding (`data["embedding"]`); a
face without one (a profile, whose embedding the analyzer withholds) is not matched. One index holds every such
face in the record store (`workers.matchers.indexes`, space `storage.vectors.DLIB_FACE`); a face's nearest
`NEIGHBOURS` faces closer than `DISTANCE_THRESHOLD` (dlib's same-person threshold, 0.6 Euclidean) become:

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

Score. The Euclidean distance d becomes score = max(0, 1 - d / (2 x 0.6)): 1 for identical embeddings, 0.5 at
the threshold, 0 at twice it; it decreases with the distance, so ranking by score is ranking by distance. The
matcher's `threshold` (recorded with each match) is the score at 0.6, and `detail` records the distance and the
distance threshold too. A distance is investigative information, never an identification.

Quality. Poor faces (the analyzer's quality grade) are matched, but `detail["low_quality"]` says so, with both
sides' grades, scores and issues.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.faces import DLIB_SAME_PERSON_THRESHOLD
from models.specs import DLIB_FACE_EMBEDDING
from storage.persons import PersonPhoto, persons_pictured
from storage.tables import AnalysisRun, Finding, utcnow
from storage.vectors import DLIB_FACE, VectorHit
from storage.watchlists import active_watchlists_of
from workers.matchers import indexes
from workers.matchers.base import Matcher, Proposal, Subject
from workers.matchers.registry import register

FACE_KIND = "faces.face"
DISTANCE_THRESHOLD = DLIB_SAME_PERSON_THRESHOLD  # 0.6, Euclidean
SCORE_SPAN = 2 * DISTANCE_THRESHOLD  # the distance at which the score reaches 0
NEIGHBOURS = 100  # faces looked at per face (nearest first); all beyond are farther
LOW_QUALITY_GRADES = frozenset({"poor"})
METHOD = "similarity"  # a distance under the threshold (storage.matches.METHODS)
_SEARCH_TRIES = 3  # a search repeated after removing hits whose findings were replaced


def score_of(distance: float) -> float:
    """The score of a Euclidean distance between dlib embeddings (see the module)."""
    return max(0.0, 1.0 - distance / SCORE_SPAN)


THRESHOLD = score_of(DISTANCE_THRESHOLD)  # 0.5


def dlib_vector(data: dict[str, Any]) -> list[float] | None:
    """The face's dlib embedding, or None (no embedding, another model's, or not 128 numbers)."""
    embedding = data.get("embedding")
    if not isinstance(embedding, dict) or embedding.get("model", DLIB_FACE_EMBEDDING.name) != DLIB_FACE_EMBEDDING.name:
        return None
    vector = embedding.get("vector")
    if not isinstance(vector, list) or len(vector) != DLIB_FACE.dimension:
        return None
    return [float(value) for value in vector]


FACES = indexes.IndexedSpace(DLIB_FACE, frozenset({FACE_KIND}), dlib_vector)


@dataclass(frozen=True)
class Face:
    """A face near the subject: its finding, where it is, and its distance."""

    finding_id: str
    evidence_id: str
    case_id: str
    analyzer: str
    analyzer_version: str
    data: dict[str, Any]
    distance: float


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
    version = "1.0.0"
    modality = "face"
    consumes = frozenset({FACE_KIND})
    threshold = THRESHOLD

    def wants(self, subject: Subject) -> bool:
        return subject.kind in self.consumes and dlib_vector(subject.data) is not None

    def propose(self, session: Session, subject: Subject) -> list[Proposal]:
        vector = dlib_vector(subject.data)
        if vector is None:
            return []
        near = [face for face in self._near(session, subject, vector) if face.evidence_id != subject.evidence_id]
        gallery = self._gallery(session, {face.evidence_id for face in near})
        own_persons = set(persons_pictured(session, evidence_id=subject.evidence_id))
        is_gallery = bool(own_persons) and subject.finding_id in self._gallery(session, {subject.evidence_id})
        by_person: dict[str, Face] = {}
        proposals = []
        for face in near:  # nearest first
            persons = gallery.get(face.finding_id)
            if persons is None:
                if not is_gallery:
                    proposals.append(self._to_finding(subject, face))
                continue
            for person_id in persons - own_persons:
                by_person.setdefault(person_id, face)
        proposals += [self._to_person(session, subject, person_id, face) for person_id, face in by_person.items()]
        return proposals

    def _near(self, session: Session, subject: Subject, vector: list[float]) -> list[Face]:
        """The faces within the threshold, nearest first, as the record store has them now: a hit whose finding
        was replaced since it was indexed is removed from the index and the search repeated."""
        holder = indexes.holder(FACES, session=session)
        index = holder.index(session)
        faces: list[Face] = []
        for _ in range(_SEARCH_TRIES):
            hits = [hit for hit in index.search(vector, k=NEIGHBOURS)
                    if hit.distance < DISTANCE_THRESHOLD and hit.id != subject.finding_id]
            faces = self._faces(session, hits)
            gone = {hit.id for hit in hits} - {face.finding_id for face in faces}
            if not gone:
                break
            holder.forget(gone)
        return faces

    @staticmethod
    def _faces(session: Session, hits: list[VectorHit]) -> list[Face]:
        if not hits:
            return []
        distances = {hit.id: hit.distance for hit in hits}
        rows = session.execute(select(Finding, AnalysisRun.analyzer_version)
                               .join(AnalysisRun, AnalysisRun.id == Finding.run_id)
                               .where(Finding.id.in_(sorted(distances)))).tuples()
        faces = [Face(finding.id, finding.evidence_id, finding.case_id, finding.analyzer, version, dict(finding.data),
                      distances[finding.id]) for finding, version in rows]
        return sorted(faces, key=lambda face: (face.distance, face.finding_id))

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

    def _side(self, subject: Subject, face: Face) -> dict[str, Any]:
        mine, theirs = quality_of(subject.data), quality_of(face.data)
        return {"distance": round(face.distance, 4), "distance_threshold": DISTANCE_THRESHOLD,
                "metric": "euclidean", "embedding_model": DLIB_FACE_EMBEDDING.name,
                "score_formula": f"max(0, 1 - distance / {SCORE_SPAN:g})",
                "box": subject.data.get("box"), "frame": subject.data.get("frame"), "quality": mine,
                "other_box": face.data.get("box"), "other_frame": face.data.get("frame"), "other_quality": theirs,
                "low_quality": mine["grade"] in LOW_QUALITY_GRADES or theirs["grade"] in LOW_QUALITY_GRADES}

    def _to_finding(self, subject: Subject, face: Face) -> Proposal:
        detail = {**self._side(subject, face), "same_case": face.case_id == subject.case_id}
        return Proposal("finding", face.finding_id, round(score_of(face.distance), 4), METHOD, detail,
                        target_evidence_id=face.evidence_id, target_case_id=face.case_id,
                        target_analyzer=face.analyzer, target_version=face.analyzer_version)

    def _to_person(self, session: Session, subject: Subject, person_id: str, face: Face) -> Proposal:
        watchlists = [{"id": watchlist.id, "name": watchlist.name, "purpose": watchlist.purpose,
                       "owner": watchlist.owner, "expires_at": watchlist.expires_at.isoformat()}
                      for watchlist in active_watchlists_of(session, person_id=person_id, now=utcnow())]
        detail = {**self._side(subject, face), "reference_finding_id": face.finding_id,
                  "reference_evidence_id": face.evidence_id, "reference_analyzer_version": face.analyzer_version,
                  "watchlists": watchlists, "alert": bool(watchlists)}
        return Proposal("person", person_id, round(score_of(face.distance), 4), METHOD, detail)
