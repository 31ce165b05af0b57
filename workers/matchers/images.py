"""Images: the same picture in other evidence (a copy, a crop, a re-encode, a resize), in any case.

An item's picture is represented by its "similarity.embedding" finding (side A; side B is the other item's), so
a pair of items is matched once whichever finding found it. Candidates come from two indexes
(`workers.matchers.image_indexes`, every item of every case):

* PDQ: the other items whose reliable hash (quality >= 50) lies within `PDQ_MAX_DISTANCE` (31, Meta's "same
  image") of this item's reliable hash;
* scene embedding: the `SCENE_K` nearest scene embeddings whose cosine similarity is at least
  `SCENE_MIN_COSINE`.

Every candidate is then confirmed or refuted by geometric verification of the two items' stored keypoints
(`models.keypoints.verify`: ratio-test matches, RANSAC, at least 25 inliers making 25 % of the matches), fetched
from the object store ("similarity.keypoints" artifacts, SHA-256 checked). Neither index decides alone: PDQ
collides on pictures that share their low frequencies, and scene embeddings are close for two views of one scene.
A candidate without keypoints on either side cannot be verified and is not matched.

The score combines the evidence (a verified pair only; every other candidate scores 0):
`0.6 + 0.25 * min(1, inliers / STRONG_INLIERS) + 0.15 * max(pdq_agreement, scene_agreement)`, where
`pdq_agreement = 1 - distance / 32` (0 without two reliable hashes) and `scene_agreement = (cosine -
SCENE_MIN_COSINE) / (1 - SCENE_MIN_COSINE)`, clipped to 0-1. So `THRESHOLD` 0.6 means "verified", and more
inliers and closer hashes or embeddings rank a match higher. The detail holds the inliers, the model and its
3 x 3 matrix (from A's upright image to B's), the PDQ distance, the cosine, how the candidate was found and the
thresholds in force.

Scene threshold, measured (tests/test_image_matcher.py's photos; YOLOv8n scene embeddings, cosine): copies of 8
real photos (bus, zidane, astronaut, coffee, chelsea, rocket, the two motorcycle views, hubble deep field) as
80 % and 60 % central crops, JPEG q60, half size, and 80 % crop + half size + q60: 0.866-0.999 (0.903 without
the hubble field, whose crops lose most of its stars); the 36 pairs of different photos: 0.656-0.884, except the
motorcycle stereo pair (two views of one scene) at 0.992. `SCENE_MIN_COSINE` 0.85 keeps every copy a candidate;
the two different pairs above it (astronaut/zidane 0.884, the stereo pair) are left to verification.

Cost: one `verify` (~30 ms at 2000 ORB keypoints) and one more fit for the matrix per candidate, in the
dispatcher's process; keypoint files are cached (`CACHE_SIZE`). The seam for moving this to an actor is
`ImageMatcher.assess`, which returns every candidate with its verdict. Its steps (`candidates`, `compare`,
`verify_candidate`, `sides`) are public: the search by similar image (`workers.searches`) takes them as they are.
"""

from __future__ import annotations

import logging
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.objectstore import ObjectStore, ObjectStoreError, S3ObjectStore
from storage.pdq_index import SAME_IMAGE, PdqIndex, hamming, pdq_bytes
from storage.settings import get_settings
from storage.tables import AnalysisRun, Finding
from storage.vector_faiss import FaissVectorIndex
from workers.crossmatch import MatchContext, match_context
from workers.matchers.base import Matcher, Proposal, Subject
from workers.matchers.image_indexes import EMBEDDING_KIND, PDQ_KIND, image_indexes, reliable_hash, scene_vector
from workers.matchers.registry import register

KEYPOINTS_KIND = "similarity.keypoints"
KEYPOINTS_ARTIFACT = "keypoints.npz"
PDQ_MAX_DISTANCE = SAME_IMAGE  # 31
SCENE_MIN_COSINE = 0.85  # measured: see the module's description
SCENE_K = 32
STRONG_INLIERS = 200
THRESHOLD = 0.6
MAX_KEYPOINT_BYTES = 64 << 20
CACHE_SIZE = 64

log = logging.getLogger("locard.matchers.images")


@dataclass(frozen=True)
class ImageSide:
    """One item's picture as the matcher sees it: its findings of the three kinds it reads."""

    evidence_id: str
    case_id: str
    embedding_id: str
    analyzer: str
    analyzer_version: str
    vector: np.ndarray | None  # unit length
    pdq: str | None  # reliable hashes only
    keypoints: Finding | None


@dataclass
class Assessment:
    """One candidate and the verdict on it (`accepted`, or the `reason` it was not)."""

    target: ImageSide
    found_by: list[str]
    pdq_distance: int | None
    cosine: float | None
    verification: dict[str, Any] | None = None
    transform: list[list[float]] | None = None
    score: float = 0.0
    accepted: bool = False
    reason: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


class KeypointCache:
    """The last `CACHE_SIZE` keypoint files read, by (bucket, key, version); files are immutable."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple[str, str, str], Any] = OrderedDict()

    def get(self, store: ObjectStore, artifact: dict[str, Any]) -> Any:
        from models.keypoints import KeypointSet

        name = (str(artifact["bucket"]), str(artifact["key"]), str(artifact.get("version_id") or ""))
        if name in self._items:
            self._items.move_to_end(name)
            return self._items[name]
        with tempfile.TemporaryDirectory(prefix="locard-keypoints-") as folder:
            path = Path(folder) / KEYPOINTS_ARTIFACT
            store.download(*name, path, expected_sha256=artifact.get("sha256"), max_bytes=MAX_KEYPOINT_BYTES)
            keypoints = KeypointSet.from_bytes(path.read_bytes())
        self._items[name] = keypoints
        while len(self._items) > CACHE_SIZE:
            self._items.popitem(last=False)
        return keypoints


_KEYPOINTS = KeypointCache()


@register
class ImageMatcher(Matcher):
    """Pictures against the pictures of all other evidence: PDQ and scene candidates, confirmed by RANSAC."""

    name = "images"
    version = "1.0.0"
    modality = "image"
    consumes = frozenset({EMBEDDING_KIND, PDQ_KIND, KEYPOINTS_KIND})
    threshold = THRESHOLD

    def wants(self, subject: Subject) -> bool:
        return subject.kind == EMBEDDING_KIND  # the item's picture; its hash and keypoints are read with it

    def propose(self, session: Session, subject: Subject) -> list[Proposal]:
        proposals = []
        for found in self.assess(session, subject):
            if not found.accepted:
                log.info("image candidate %s for %s not matched: %s", found.target.evidence_id,
                         subject.evidence_id, found.reason)
                continue
            target = found.target
            proposals.append(Proposal(
                target_kind="finding", target_id=target.embedding_id, score=found.score, method="similarity",
                detail=found.detail, target_evidence_id=target.evidence_id, target_case_id=target.case_id,
                target_analyzer=target.analyzer, target_version=target.analyzer_version))
        return proposals

    def assess(self, session: Session, subject: Subject, *, context: MatchContext | None = None) -> list[Assessment]:
        """Every candidate of the subject's item in other evidence, verified, with its verdict (`context`: the
        crossmatch's by default)."""
        own = sides(session, evidence_ids=[subject.evidence_id]).get(subject.evidence_id)
        if own is None or own.embedding_id != subject.finding_id:
            return []  # another embedding of the item (or the finding was replaced meanwhile)
        context = context or match_context()
        settings = context.settings or get_settings()
        pdq_index, scene_index = image_indexes().synced(session, home=settings.home)
        found_by = candidates(own, pdq_index, scene_index)
        by_item: dict[str, set[str]] = {}
        for evidence_id, finding_id in evidence_of(session, finding_ids=list(found_by)):
            if evidence_id != subject.evidence_id:
                by_item.setdefault(evidence_id, set()).update(found_by[finding_id])
        targets = sides(session, evidence_ids=sorted(by_item))
        store = context.store or default_store()
        return [verify_candidate(store, own, compare(own, targets[evidence_id], sorted(by_item[evidence_id])))
                for evidence_id in sorted(by_item) if evidence_id in targets]


def candidates(own: ImageSide, pdq_index: PdqIndex, scene_index: FaissVectorIndex, *, k: int = SCENE_K,
               min_cosine: float = SCENE_MIN_COSINE) -> dict[str, set[str]]:
    """The findings near `own` (finding id -> how each was found): "pdq", a reliable hash within
    `PDQ_MAX_DISTANCE`; "scene", among the `k` nearest scene embeddings with a cosine of `min_cosine` or more."""
    found_by: dict[str, set[str]] = {}
    if own.pdq is not None:
        for hit in pdq_index.near(own.pdq, max_distance=PDQ_MAX_DISTANCE):
            found_by.setdefault(hit.id, set()).add("pdq")
    if own.vector is not None:
        for near in scene_index.search(own.vector, k=k):
            if 1.0 - near.distance >= min_cosine:
                found_by.setdefault(near.id, set()).add("scene")
    return found_by


def compare(own: ImageSide, target: ImageSide, found_by: list[str]) -> Assessment:
    """A candidate, not verified yet: the PDQ distance (two reliable hashes) and the cosine of the embeddings."""
    distance = None if own.pdq is None or target.pdq is None else int(
        hamming(pdq_bytes(target.pdq)[None, :], pdq_bytes(own.pdq))[0])
    cosine = None if own.vector is None or target.vector is None else float(own.vector @ target.vector)
    return Assessment(target, found_by, distance, cosine)


def verify_candidate(store: ObjectStore, own: ImageSide, found: Assessment) -> Assessment:
    """Verify a candidate geometrically with both items' keypoints: `found` with its verdict and, when accepted,
    its score and detail (see the module)."""
    from models.keypoints import MIN_INLIER_RATIO, MIN_INLIERS, verify

    target, distance, cosine, found_by = found.target, found.pdq_distance, found.cosine, found.found_by
    if own.keypoints is None or target.keypoints is None:
        found.reason = "no keypoints to verify with on " + ("this item" if own.keypoints is None else "the other")
        return found
    try:
        a, b = (_KEYPOINTS.get(store, _artifact(side.keypoints)) for side in (own, target))
    except (ObjectStoreError, ValueError, KeyError) as exc:
        found.reason = f"keypoints unreadable: {exc}"
        return found
    verification = verify(a, b)
    found.verification = verification.to_dict()
    if not verification.same_image:
        found.reason = (f"geometric verification failed: {verification.inliers} inliers of "
                        f"{verification.matches} matches (needs {MIN_INLIERS} and {MIN_INLIER_RATIO:.0%})")
        return found
    found.transform = _upright(transform(a, b, verification.model), own.keypoints, target.keypoints)
    pdq_agreement = 0.0 if distance is None else max(0.0, 1.0 - distance / (PDQ_MAX_DISTANCE + 1))
    scene_agreement = 0.0 if cosine is None else float(np.clip((cosine - SCENE_MIN_COSINE)
                                                               / (1.0 - SCENE_MIN_COSINE), 0.0, 1.0))
    found.score = round(0.6 + 0.25 * min(1.0, verification.inliers / STRONG_INLIERS)
                        + 0.15 * max(pdq_agreement, scene_agreement), 4)
    found.accepted = True
    found.detail = {
        "found_by": found_by, "inliers": verification.inliers, "matches": verification.matches,
        "inlier_ratio": round(verification.inlier_ratio, 4), "model": verification.model,
        "transform": found.transform, "transform_maps": "this item's upright image to the other's",
        "rotation_deg": verification.to_dict()["rotation_deg"], "scale": verification.to_dict()["scale"],
        "pdq_distance": distance, "cosine": None if cosine is None else round(cosine, 4),
        "same_case": own.case_id == target.case_id,
        "thresholds": {"pdq_max_distance": PDQ_MAX_DISTANCE, "scene_min_cosine": SCENE_MIN_COSINE,
                       "min_inliers": MIN_INLIERS, "min_inlier_ratio": MIN_INLIER_RATIO,
                       "score": THRESHOLD},
    }
    return found


def transform(a: Any, b: Any, model: str | None) -> np.ndarray:
    """The 3 x 3 matrix of `verify`'s winning model from A's keypoint coordinates to B's, fitted exactly as
    `models.keypoints.verify` fits it (same matches, RANSAC threshold and iterations; OpenCV's RANSAC is seeded,
    so the same inliers). `verify` reports the counts but not the matrix."""
    import cv2

    from models.keypoints import RANSAC_THRESHOLD_PX, RATIO
    from models.keypoints import _ratio_matches as ratio_matches

    pairs = ratio_matches(a, b, RATIO)
    source = a.points[pairs[:, 0]].astype(np.float32)
    target = b.points[pairs[:, 1]].astype(np.float32)
    threshold = RANSAC_THRESHOLD_PX / b.scale
    if model == "homography":
        matrix, _ = cv2.findHomography(source, target, cv2.RANSAC, threshold, maxIters=5000, confidence=0.999)
        return np.asarray(matrix, dtype=np.float64) / float(matrix[2, 2])
    similarity, _ = cv2.estimateAffinePartial2D(source, target, method=cv2.RANSAC, ransacReprojThreshold=threshold,
                                                maxIters=5000, confidence=0.999, refineIters=10)
    return np.vstack([np.asarray(similarity, dtype=np.float64), [0.0, 0.0, 1.0]])


def _upright(matrix: np.ndarray, own: Finding, target: Finding) -> list[list[float]]:
    """The matrix between the upright evidence images (keypoints are in analysed frames, `image_scale` of them)."""
    scale_a = float((own.data or {}).get("image_scale") or 1.0)
    scale_b = float((target.data or {}).get("image_scale") or 1.0)
    upright = np.diag([1.0 / scale_b, 1.0 / scale_b, 1.0]) @ matrix @ np.diag([scale_a, scale_a, 1.0])
    upright /= upright[2, 2]
    return [[round(float(value), 6) for value in row] for row in upright]


def _artifact(finding: Finding | None) -> dict[str, Any]:
    artifacts = (finding.data or {}).get("artifacts") if finding is not None else None
    for artifact in artifacts or []:
        if artifact.get("name") == KEYPOINTS_ARTIFACT:
            return dict(artifact)
    raise KeyError(f"no {KEYPOINTS_ARTIFACT} artifact recorded")


def evidence_of(session: Session, *, finding_ids: list[str]) -> list[tuple[str, str]]:
    """(evidence, finding) of the findings that still exist (an index may briefly hold a replaced one)."""
    if not finding_ids:
        return []
    return list(session.execute(select(Finding.evidence_id, Finding.id)
                                .where(Finding.id.in_(finding_ids))).tuples())


def sides(session: Session, *, evidence_ids: list[str]) -> dict[str, ImageSide]:
    """Each item's picture (items without a scene embedding have none), in one query."""
    if not evidence_ids:
        return {}
    rows = session.execute(select(Finding, AnalysisRun.analyzer_version)
                           .join(AnalysisRun, AnalysisRun.id == Finding.run_id)
                           .where(Finding.evidence_id.in_(evidence_ids),
                                  Finding.kind.in_((EMBEDDING_KIND, PDQ_KIND, KEYPOINTS_KIND)))
                           .order_by(Finding.id)).tuples()
    by_item: dict[str, dict[str, tuple[Finding, str]]] = {}
    for finding, version in rows:
        by_item.setdefault(finding.evidence_id, {}).setdefault(finding.kind, (finding, version))
    sides = {}
    for evidence_id, kinds in by_item.items():
        if EMBEDDING_KIND not in kinds:
            continue
        embedding, version = kinds[EMBEDDING_KIND]
        raw = scene_vector(embedding.data or {})
        vector = None
        if raw is not None:
            array = np.asarray(raw, dtype=np.float64)
            norm = float(np.linalg.norm(array))
            vector = array / norm if norm > 0 and np.isfinite(norm) else None
        pdq = reliable_hash(kinds[PDQ_KIND][0].data or {}) if PDQ_KIND in kinds else None
        keypoints = kinds[KEYPOINTS_KIND][0] if KEYPOINTS_KIND in kinds else None
        sides[evidence_id] = ImageSide(evidence_id, embedding.case_id, embedding.id, embedding.analyzer, version,
                                       vector, pdq, keypoints)
    return sides


_STORE: list[ObjectStore] = []


def default_store() -> ObjectStore:
    """The object store of the settings, when the crossmatch context carries none (made once per process)."""
    if not _STORE:
        _STORE.append(S3ObjectStore.from_settings(get_settings()))
    return _STORE[0]
