"""Searches by face image and by similar image: durable requests answered by the cross-matching actor.

A search starts from one finding of a probe item that the caller may see: one of its faces ("faces.face" with
dlib's embedding; by default the largest) or its picture (its "similarity.embedding", with the PDQ hash and the
keypoints recorded beside it). `request_search` checks that the probe has one, records a `MatchRequest` (kind
`FACE_SEARCH` or `IMAGE_SEARCH`, the finding searched from in `parameters["finding_id"]`) and queues a durable
job of kind `SEARCH_JOB`; the dispatcher hands it to the actor that holds the vector indexes, whose answer
(`workers.searches.answer`) is recorded by `storage.matching.finish_request` like a fingerprint request's, so a
search survives restarts like any analysis. Results are shown per reader by `storage.matching.result_for_cases`.

The probe is checked here, before anything is queued, so that a caller learns at once that an item was not
analysed (yet) or holds no usable face; the worker checks again when it answers (the item may have been analysed
again meanwhile: its findings are then new ones, and the request fails with the reason).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage import jobs
from storage.tables import Evidence, Finding, MatchRequest
from storage.vectors import DLIB_FACE

FACE_SEARCH = "face_search"
IMAGE_SEARCH = "image_search"
KINDS = (FACE_SEARCH, IMAGE_SEARCH)
SEARCH_JOB = "search"  # the durable job answering one search request (payload: {"request_id": ...})
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
# The analyzers' finding kinds a search starts from (workers.matchers.faces.FACE_KIND and
# workers.matchers.image_indexes.EMBEDDING_KIND; storage may not import the workers).
FACE_KIND = "faces.face"
PICTURE_KIND = "similarity.embedding"


class NotSearchable(Exception):
    """The probe holds nothing to search with; `reason` says why, for the caller."""

    def __init__(self, evidence_id: str, reason: str) -> None:
        super().__init__(evidence_id, reason)
        self.evidence_id = evidence_id
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class NoFace(NotSearchable):
    """The probe has no face with an embedding: not analysed for faces (yet), no face found, only profiles (whose
    embedding the analyzer withholds), or the finding named is not one of its faces."""


class NoPicture(NotSearchable):
    """The probe has no image-similarity findings: not analysed (yet), or not an image."""


def has_face_embedding(data: dict[str, Any]) -> bool:
    """Whether a face finding's data carries a dlib embedding (the worker reads it with
    `workers.matchers.faces.dlib_vector`)."""
    embedding = data.get("embedding")
    vector = embedding.get("vector") if isinstance(embedding, dict) else None
    return isinstance(vector, list) and len(vector) == DLIB_FACE.dimension


def _area(data: dict[str, Any]) -> float:
    box = data.get("box")
    if not isinstance(box, list) or len(box) != 4:
        return 0.0
    return max(0.0, float(box[2]) - float(box[0])) * max(0.0, float(box[3]) - float(box[1]))


def searchable_faces(session: Session, *, evidence_id: str) -> list[Finding]:
    """The item's faces that carry a dlib embedding, largest first (ties: by id)."""
    faces = session.scalars(select(Finding).where(Finding.evidence_id == evidence_id, Finding.kind == FACE_KIND)
                            .order_by(Finding.id)).all()
    usable = [face for face in faces if has_face_embedding(dict(face.data or {}))]
    return sorted(usable, key=lambda face: -_area(dict(face.data or {})))


def probe_finding(session: Session, *, kind: str, probe: Evidence, finding_id: str | None) -> Finding:
    """The finding a search of `kind` starts from: `finding_id` when it is one of the probe's usable findings,
    else (None) the largest face with an embedding, or the item's picture; `NoFace` / `NoPicture` otherwise."""
    if kind == FACE_SEARCH:
        faces = searchable_faces(session, evidence_id=probe.id)
        if finding_id is not None:
            chosen = [face for face in faces if face.id == finding_id]
            if not chosen:
                raise NoFace(probe.id, f"{finding_id} is not a face of evidence {probe.id} that carries an "
                                       "embedding (see the item's faces findings)")
            return chosen[0]
        if not faces:
            raise NoFace(probe.id, f"evidence {probe.id} has no face with an embedding: it was not analysed for "
                                   "faces (yet), no face was found on it, or only profiles, whose embedding is "
                                   "withheld (see its analysis status and findings)")
        return faces[0]
    if kind == IMAGE_SEARCH:
        pictures: Sequence[Finding] = session.scalars(
            select(Finding).where(Finding.evidence_id == probe.id, Finding.kind == PICTURE_KIND)
            .order_by(Finding.id)).all()
        if finding_id is not None:
            pictures = [picture for picture in pictures if picture.id == finding_id]
        if not pictures:
            raise NoPicture(probe.id, f"evidence {probe.id} has no image-similarity findings: it was not analysed "
                                      "as an image (yet), or it is not one (see its analysis status)")
        return pictures[0]
    raise ValueError(f"unknown search kind {kind!r}")


def request_search(session: Session, *, kind: str, probe: Evidence, finding_id: str | None,
                   parameters: dict[str, Any], requested_by: str, max_attempts: int = 3) -> MatchRequest:
    """Record a search from the probe's finding (see `probe_finding`) and queue it for the cross-matching actor.
    `parameters` (limit 1 to `MAX_LIMIT`, `case_ids`, `verify`, the purpose) are kept with the request, with the
    finding searched from as "finding_id"."""
    limit = parameters.get("limit", DEFAULT_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be an integer from 1 to {MAX_LIMIT}, got {limit!r}")
    finding = probe_finding(session, kind=kind, probe=probe, finding_id=finding_id)
    request = MatchRequest(kind=kind, probe_evidence_id=probe.id, candidate_evidence_id=None,
                           parameters={**parameters, "limit": limit, "finding_id": finding.id},
                           requested_by=requested_by)
    session.add(request)
    session.flush()
    jobs.enqueue(session, kind=SEARCH_JOB, dedupe_key=f"{SEARCH_JOB}:{request.id}", evidence_id=probe.id,
                 payload={"request_id": request.id}, max_attempts=max_attempts)
    return request


def get_search(session: Session, *, request_id: str) -> MatchRequest | None:
    """A search request (None for a missing id, or a request of another kind: a fingerprint's)."""
    request = session.get(MatchRequest, request_id)
    return request if request is not None and request.kind in KINDS else None
