"""Answering searches by face image and by similar image, on the actor that holds the vector indexes.

A search request (`storage.searches`: kind, probe item, the finding searched from, limit, case_ids, verify) is
answered by `answer`, inside the cross-matching actor, with the matchers' own indexes and measures:

* by face: the probe face's nearest faces in the dlib index (`workers.matchers.indexes.holder(faces.FACES)`,
  every face of every case), ranked by Euclidean distance, scored as the face matcher scores them
  (`faces.score_of`); `probable_match` when closer than `faces.DISTANCE_THRESHOLD` (dlib's 0.6). A face that is
  the gallery face of a reference photo (the face the face matcher matches persons through) carries the ids of
  the persons it pictures; their names are the API's to show, to whom it may;
* by similar image: the probe's near-duplicates by PDQ (reliable hashes within `images.PDQ_MAX_DISTANCE`), then
  its nearest scene embeddings by cosine, with no floor (a similar image, not only the same one; those the image
  matcher would examine are flagged `near_duplicate`). With `verify` (the default), the first `VERIFY_TOP` are
  verified geometrically as the image matcher verifies them (`images.verify_candidate`: RANSAC on the stored
  keypoints), and those confirmed as the same image rank first, by the matcher's score.

Both exclude the probe item itself, keep only candidates in `case_ids` when the request names them, and skip
findings that no longer exist (replaced by a re-analysis since they were indexed; the face index forgets them).
When a case filter or the probe's own faces leave fewer than `limit`, the search is widened (4 x the
neighbours, up to `MAX_NEIGHBOURS`); `searched` and `exhaustive` say how far it looked.

`answer` never raises for a bad request (a missing request, a probe analysed again since, nothing to search
with): it answers `MatchAnswer(error=...)`, recorded as a failed request. A failure of the record store or of
the object store is raised, for the dispatcher to retry the job.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from models.specs import DLIB_FACE_EMBEDDING
from storage import searches
from storage.messages import MatchAnswer
from storage.settings import get_settings
from storage.tables import AnalysisRun, Case, Evidence, Finding
from workers.crossmatch import MatchContext, match_context, matching_context
from workers.matchers import faces, images, indexes
from workers.matchers.image_indexes import image_indexes

MAX_NEIGHBOURS = 4_096  # the most index neighbours one search looks at
VERIFY_TOP = 10  # image candidates verified geometrically, at most, in ranking order
_WIDEN = 4

T = TypeVar("T")


class SearchFailed(Exception):
    """A request that cannot be answered: recorded as a failed request with this reason."""


def answer(session: Session, *, request_id: str, context: MatchContext | None = None) -> MatchAnswer:
    """Answer one search request (see the module): a result, or the reason there is none. `context` (the Locard
    home and object store) is set for the indexes while it runs; by default, the one in force."""
    request = searches.get_search(session, request_id=request_id)
    if request is None:
        return MatchAnswer(error=f"search request {request_id} does not exist")
    parameters = dict(request.parameters or {})
    try:
        limit, case_ids = _limit(parameters), _case_ids(parameters)
        finding_id = parameters.get("finding_id")
        if not isinstance(finding_id, str):
            raise SearchFailed("the request names no finding to search from")
        with matching_context(context or match_context()):
            if request.kind == searches.FACE_SEARCH:
                result = face_search(session, probe_evidence_id=request.probe_evidence_id, finding_id=finding_id,
                                     limit=limit, case_ids=case_ids)
            else:
                result = image_search(session, probe_evidence_id=request.probe_evidence_id, finding_id=finding_id,
                                      limit=limit, case_ids=case_ids, verify=parameters.get("verify", True) is True)
    except SearchFailed as exc:
        return MatchAnswer(error=str(exc))
    return MatchAnswer(result=result)


def _limit(parameters: dict[str, Any]) -> int:
    limit = parameters.get("limit", searches.DEFAULT_LIMIT)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= searches.MAX_LIMIT:
        raise SearchFailed(f"limit must be an integer from 1 to {searches.MAX_LIMIT}, got {limit!r}")
    return limit


def _case_ids(parameters: dict[str, Any]) -> set[str] | None:
    case_ids = parameters.get("case_ids")
    if case_ids is None:
        return None
    if not isinstance(case_ids, list) or not all(isinstance(case, str) for case in case_ids):
        raise SearchFailed(f"case_ids must be a list of case ids, got {case_ids!r}")
    return set(case_ids)


def _widening(size: int, limit: int, first: int, look: Callable[[int], list[T]]) -> tuple[list[T], int]:
    """`look(k)`'s candidates for k neighbours, k widened until it gives `limit` or covers the index."""
    k = max(1, min(size, MAX_NEIGHBOURS, first))
    while True:
        found = look(k)
        if len(found) >= limit or k >= min(size, MAX_NEIGHBOURS):
            return found, k
        k = min(size, MAX_NEIGHBOURS, k * _WIDEN)


def _elapsed(clock: float) -> float:
    return round((time.perf_counter() - clock) * 1000, 2)


def _ranked(candidates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for rank, entry in enumerate(candidates, start=1):
        entry["rank"] = rank
    return candidates


def _probe(session: Session, *, evidence_id: str, finding_id: str) -> tuple[Finding, str]:
    """The finding searched from, with its analyzer's version; it must still exist on the probe."""
    row = session.execute(select(Finding, AnalysisRun.analyzer_version)
                          .join(AnalysisRun, AnalysisRun.id == Finding.run_id)
                          .where(Finding.id == finding_id, Finding.evidence_id == evidence_id)).tuples().first()
    if row is None:
        raise SearchFailed(f"finding {finding_id} of evidence {evidence_id} no longer exists: the item was analysed "
                           "again since the search was asked for; ask again")
    return row[0], row[1]


def _places(session: Session, *, evidence_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each item's case reference and file name."""
    if not evidence_ids:
        return {}
    rows = session.execute(select(Evidence.id, Case.reference, Evidence.original_filename)
                           .join(Case, Case.id == Evidence.case_id)
                           .where(Evidence.id.in_(sorted(set(evidence_ids))))).tuples()
    return {evidence_id: {"case_reference": reference, "filename": filename}
            for evidence_id, reference, filename in rows}


# --- by face ------------------------------------------------------------------------------------------------------

def face_search(session: Session, *, probe_evidence_id: str, finding_id: str, limit: int,
                case_ids: set[str] | None) -> dict[str, Any]:
    """The probe face's nearest faces in other items (see the module), ranked, at most `limit`."""
    clock = time.perf_counter()
    probe, probe_version = _probe(session, evidence_id=probe_evidence_id, finding_id=finding_id)
    data = dict(probe.data or {})
    vector = faces.dlib_vector(data)
    if probe.kind != faces.FACE_KIND or vector is None:
        raise SearchFailed(f"finding {finding_id} is not a face with a dlib embedding")
    holder = indexes.holder(faces.FACES, session=session)
    index = holder.index(session)

    def look(k: int) -> list[dict[str, Any]]:
        hits = [hit for hit in index.search(vector, k=k) if hit.id != probe.id]
        rows = {finding.id: (finding, version, reference, filename) for finding, version, reference, filename in
                session.execute(select(Finding, AnalysisRun.analyzer_version, Case.reference,
                                       Evidence.original_filename)
                                .join(AnalysisRun, AnalysisRun.id == Finding.run_id)
                                .join(Case, Case.id == Finding.case_id)
                                .join(Evidence, Evidence.id == Finding.evidence_id)
                                .where(Finding.id.in_(sorted({hit.id for hit in hits})))).tuples()}
        gone = {hit.id for hit in hits} - set(rows)
        if gone:
            holder.forget(gone)
        kept = []
        for hit in hits:  # nearest first
            if hit.id not in rows:
                continue
            finding, version, reference, filename = rows[hit.id]
            if finding.evidence_id == probe.evidence_id or (case_ids is not None and finding.case_id not in case_ids):
                continue
            kept.append(_face_candidate(finding, version, hit.distance,
                                        {"case_reference": reference, "filename": filename}))
        return kept

    found, searched = _widening(len(index), limit, 4 * limit + 8, look) if len(index) else ([], 0)
    found = found[:limit]
    gallery = faces.FaceMatcher._gallery(session, {entry["evidence_id"] for entry in found})
    for entry in found:
        entry["person_ids"] = sorted(gallery.get(entry["finding_id"], ()))
        entry["reference_photo"] = bool(entry["person_ids"])
    return {"candidates": _ranked(found),
            "probe": {"evidence_id": probe.evidence_id, "finding_id": probe.id, "box": data.get("box"),
                      "frame": data.get("frame"), "quality": faces.quality_of(data), "analyzer": probe.analyzer,
                      "analyzer_version": probe_version,
                      "embedding_model": (data.get("embedding") or {}).get("model", DLIB_FACE_EMBEDDING.name)},
            "index": faces.FACES.space.name, "index_size": len(index), "searched": searched,
            "exhaustive": searched >= len(index), "metric": "euclidean",
            "distance_threshold": faces.DISTANCE_THRESHOLD, "threshold": faces.THRESHOLD,
            "score_formula": f"max(0, 1 - distance / {faces.SCORE_SPAN:g})",
            "matcher": faces.FaceMatcher.name, "matcher_version": faces.FaceMatcher.version,
            "elapsed_ms": _elapsed(clock)}


def _face_candidate(finding: Finding, version: str, distance: float, place: dict[str, Any]) -> dict[str, Any]:
    data = dict(finding.data or {})
    quality = faces.quality_of(data)
    return {"finding_id": finding.id, "evidence_id": finding.evidence_id, "case_id": finding.case_id, **place,
            "analyzer": finding.analyzer, "analyzer_version": version, "box": data.get("box"),
            "frame": data.get("frame"), "quality": quality,
            "low_quality": quality["grade"] in faces.LOW_QUALITY_GRADES, "distance": round(distance, 4),
            "score": round(faces.score_of(distance), 4), "probable_match": distance < faces.DISTANCE_THRESHOLD}


# --- by similar image ---------------------------------------------------------------------------------------------

def image_search(session: Session, *, probe_evidence_id: str, finding_id: str, limit: int,
                 case_ids: set[str] | None, verify: bool) -> dict[str, Any]:
    """The probe picture's near-duplicates and nearest scenes in other items (see the module), ranked."""
    clock = time.perf_counter()
    probe, probe_version = _probe(session, evidence_id=probe_evidence_id, finding_id=finding_id)
    own = images.sides(session, evidence_ids=[probe_evidence_id]).get(probe_evidence_id)
    if own is None or own.embedding_id != probe.id:
        raise SearchFailed(f"finding {finding_id} is not the picture of evidence {probe_evidence_id}")
    if own.vector is None and own.pdq is None:
        raise SearchFailed(f"evidence {probe_evidence_id} has neither a usable scene embedding nor a reliable PDQ "
                           "hash to search with")
    context = match_context()
    settings = context.settings or get_settings()
    pdq_index, scene_index = image_indexes().synced(session, home=settings.home)

    def look(k: int) -> list[images.Assessment]:
        found_by = images.candidates(own, pdq_index, scene_index, k=k, min_cosine=-math.inf)
        by_item: dict[str, set[str]] = {}
        for evidence_id, found in images.evidence_of(session, finding_ids=sorted(found_by)):
            if evidence_id != probe_evidence_id:
                by_item.setdefault(evidence_id, set()).update(found_by[found])
        targets = images.sides(session, evidence_ids=sorted(by_item))
        return _image_order([images.compare(own, target, sorted(by_item[evidence_id]))
                             for evidence_id, target in targets.items()
                             if case_ids is None or target.case_id in case_ids])

    size = max(len(scene_index), 1)
    found, searched = _widening(size, limit, max(4 * limit, images.SCENE_K), look)
    found = found[:limit]
    verified = found[:VERIFY_TOP] if verify else []
    if verified:
        store = context.store or images.default_store()
        for assessment in verified:
            images.verify_candidate(store, own, assessment)
    found = sorted(found, key=lambda a: -a.score if a.accepted else 0.0)  # stable: the confirmed first
    places = _places(session, evidence_ids=[a.target.evidence_id for a in found])
    checked = {id(assessment) for assessment in verified}
    candidates = [_image_candidate(a, places.get(a.target.evidence_id, {}), verified=id(a) in checked) for a in found]
    return {"candidates": _ranked(candidates),
            "probe": {"evidence_id": probe.evidence_id, "finding_id": probe.id, "analyzer": probe.analyzer,
                      "analyzer_version": probe_version, "model": dict(probe.data or {}).get("model"),
                      "pdq": own.pdq is not None, "scene_embedding": own.vector is not None,
                      "keypoints": own.keypoints is not None},
            "index_size": {"pdq": len(pdq_index), "scene": len(scene_index)}, "searched": searched,
            "exhaustive": searched >= len(scene_index), "verify": verify, "verified": len(verified),
            "thresholds": {"pdq_max_distance": images.PDQ_MAX_DISTANCE,
                           "scene_min_cosine": images.SCENE_MIN_COSINE, "score": images.THRESHOLD},
            "matcher": images.ImageMatcher.name, "matcher_version": images.ImageMatcher.version,
            "elapsed_ms": _elapsed(clock)}


def _image_order(found: list[images.Assessment]) -> list[images.Assessment]:
    """PDQ near-duplicates first (nearest hash first), then the others by cosine (highest first)."""
    def key(assessment: images.Assessment) -> tuple[int, float, str]:
        if "pdq" in assessment.found_by and assessment.pdq_distance is not None:
            return 0, float(assessment.pdq_distance), assessment.target.evidence_id
        cosine = assessment.cosine if assessment.cosine is not None else -math.inf
        return 1, -cosine, assessment.target.evidence_id

    return sorted(found, key=key)


def _image_candidate(found: images.Assessment, place: dict[str, Any], *, verified: bool) -> dict[str, Any]:
    target = found.target
    near = ((found.pdq_distance is not None and found.pdq_distance <= images.PDQ_MAX_DISTANCE)
            or (found.cosine is not None and found.cosine >= images.SCENE_MIN_COSINE))
    entry: dict[str, Any] = {
        "finding_id": target.embedding_id, "evidence_id": target.evidence_id, "case_id": target.case_id, **place,
        "analyzer": target.analyzer, "analyzer_version": target.analyzer_version, "found_by": found.found_by,
        "pdq_distance": found.pdq_distance, "cosine": None if found.cosine is None else round(found.cosine, 4),
        "near_duplicate": near, "verified": verified, "same_image": found.accepted if verified else None,
        "score": found.score if found.accepted else None}
    if verified:
        entry["verification"] = ({key: found.detail[key] for key in ("inliers", "matches", "inlier_ratio", "model",
                                                                     "transform", "rotation_deg", "scale")}
                                 if found.accepted else {"reason": found.reason, **(found.verification or {})})
    return entry
