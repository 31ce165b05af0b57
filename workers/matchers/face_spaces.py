"""The spaces faces are matched in: which embedding a face finding carries in each, its index, and the distance
under which two faces are proposed as the same person (`workers.matchers.faces` matches with them).

Each `FaceSpace` has one index over every "faces.face" finding of the record store that carries its vector
(`workers.matchers.indexes.IndexedSpace`) and a same-person threshold, a Euclidean distance:

* `DLIB`, space `storage.vectors.DLIB_FACE`: dlib's 128-d embedding (`data["embedding"]`, always computed),
  threshold `DISTANCE_THRESHOLD`, dlib's documented same-person threshold, 0.6;
* `FACENET`, space `storage.vectors.FACENET_FACE`: FaceNet's 512-d unit vector (the entry of `data["embeddings"]`
  whose model is `FACENET_MODEL`), present when an operator configured FaceNet weights
  (`workers.analyzers.faces.facenet_from_environment`); threshold `FACENET_DISTANCE_THRESHOLD`, 1.05 between
  unit vectors. Where it comes from: FaceNet (Schroff et al., 2015, arXiv:1503.03832) is trained on the squared
  L2 distance between unit embeddings, and its Figure 1 separates every pair shown at 1.1 on that squared
  distance, i.e. sqrt(1.1) = 1.049 Euclidean; facenet-pytorch fixes none (its examples/lfw_evaluate.ipynb picks
  the best threshold per LFW fold over squared Euclidean distances 0-4: 99.4% mean accuracy with the VGGFace2
  weights), and deepface uses 1.04 ("euclidean_l2") for the same VGGFace2 weights (serengil/deepface issue 399).
  The index compares by cosine: for unit vectors |a - b|^2 = 2 (1 - cos), so 1.05 is a cosine distance of 0.551.

Score. In a space whose threshold is t, a Euclidean distance d becomes score = max(0, 1 - d / (2 t)): 1 for
identical embeddings, 0.5 at the threshold, 0 at twice it; it decreases with the distance. `THRESHOLD`, the
score at the threshold, is 0.5 in every space.

Weights. FaceNet's weights are the operator's, and vectors from different weights are not comparable: a FaceNet
pair is compared only when both runs' weights digests (`facenet_weights` of `AnalysisRun.models`, the analyzer's
provenance) are equal, or one is unrecorded (`comparable`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.faces import DLIB_SAME_PERSON_THRESHOLD, FacenetEmbedder
from models.specs import DLIB_FACE_EMBEDDING
from storage.vectors import DLIB_FACE, FACENET_FACE, VectorLike
from workers.matchers import indexes

FACE_KIND = "faces.face"
DISTANCE_THRESHOLD = DLIB_SAME_PERSON_THRESHOLD  # 0.6, Euclidean
SCORE_SPAN = 2 * DISTANCE_THRESHOLD  # the dlib distance at which the score reaches 0
FACENET_DISTANCE_THRESHOLD = 1.05  # Euclidean between unit vectors (see the module)
FACENET_MODEL = FacenetEmbedder.DEFAULT_NAME  # the model the faces analyzer names in data["embeddings"]
FACENET_PROVENANCE = "face_embedding_facenet"  # FaceNet's entry in the faces analyzer's run models


def score_of(distance: float, threshold: float = DISTANCE_THRESHOLD) -> float:
    """The score of a Euclidean distance in a space whose threshold is `threshold` (see the module)."""
    return max(0.0, 1.0 - distance / (2 * threshold))


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


def facenet_vector(data: dict[str, Any]) -> list[float] | None:
    """The face's FaceNet embedding (`data["embeddings"]`), or None (none, another model's, not 512 finite
    numbers, or all zero: a vector the cosine index could not hold)."""
    embeddings = data.get("embeddings")
    if not isinstance(embeddings, list):
        return None
    for embedding in embeddings:
        if not isinstance(embedding, dict) or embedding.get("model") != FACENET_MODEL:
            continue
        vector = embedding.get("vector")
        if not isinstance(vector, list) or len(vector) != FACENET_FACE.dimension:
            return None
        try:
            values = [float(value) for value in vector]
        except (TypeError, ValueError):
            return None
        return values if all(math.isfinite(value) for value in values) and any(values) else None
    return None


def facenet_weights(models: dict[str, Any] | None) -> str | None:
    """The SHA-256 of the FaceNet weights a faces run used (from its recorded models), or None."""
    entry = (models or {}).get(FACENET_PROVENANCE)
    digest = entry.get("sha256") if isinstance(entry, dict) else None
    return digest if isinstance(digest, str) else None


@dataclass(frozen=True)
class FaceSpace:
    """A space faces are matched in: its index, the embedding model, and its same-person Euclidean distance."""

    indexed: indexes.IndexedSpace
    model: str
    distance_threshold: float
    metric: str  # how a match's detail names the distance

    @property
    def name(self) -> str:
        return self.indexed.space.name

    def vector(self, data: dict[str, Any]) -> VectorLike | None:
        return self.indexed.vector(data)

    def euclidean(self, index_distance: float) -> float:
        """An index hit's distance as the Euclidean distance the threshold is in (cosine: between unit vectors)."""
        if self.indexed.space.metric == "cosine":
            return math.sqrt(max(0.0, 2.0 * index_distance))  # |a - b|^2 = 2 (1 - cos) for unit vectors
        return index_distance

    def between(self, first: VectorLike, second: VectorLike) -> float:
        """The Euclidean distance between two faces' vectors (made unit vectors in a cosine space)."""
        a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
        if self.indexed.space.metric == "cosine":
            a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
        return float(np.linalg.norm(a - b))

    def score(self, distance: float) -> float:
        return score_of(distance, self.distance_threshold)


FACES = indexes.IndexedSpace(DLIB_FACE, frozenset({FACE_KIND}), dlib_vector)
FACENET_FACES = indexes.IndexedSpace(FACENET_FACE, frozenset({FACE_KIND}), facenet_vector)
DLIB = FaceSpace(FACES, DLIB_FACE_EMBEDDING.name, DISTANCE_THRESHOLD, "euclidean")
FACENET = FaceSpace(FACENET_FACES, FACENET_MODEL, FACENET_DISTANCE_THRESHOLD, "euclidean (unit vectors)")
FACE_SPACES = (DLIB, FACENET)  # in order of precedence (workers.matchers.faces: the first one within decides)


def comparable(space: FaceSpace, mine: str | None, theirs: str | None) -> bool:
    """Whether two faces' vectors in `space` come from the same weights, by their runs' digests (see the module)."""
    return space is not FACENET or mine is None or theirs is None or mine == theirs
