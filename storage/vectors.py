"""The vector index seam: nearest-neighbour search over the embeddings of one embedding space.

A space is a name, a dimension and a metric, one per embedding model whose vectors Locard compares:

* `DLIB_FACE` "dlib-face-128": dlib's ResNet face descriptors (the faces analyzer's "embedding"), compared by
  Euclidean distance as dlib is calibrated (0.6 is dlib's same-person threshold); not unit length (~1.4);
* `FACENET_FACE` "facenet-512": FaceNet's 512-d vectors (the faces analyzer's "embeddings", when configured),
  unit length, compared by cosine;
* `SCENE` "scene-768": the similarity analyzer's 768-d scene embedding, compared by cosine.

Ids are Locard's own strings (a finding's id, a register photo's id); an index maps them to int64 positions
internally and keeps that map with the index. Adding an id again replaces its vector (a re-analysis replaces
its findings). `search` returns `VectorHit`s, nearest first, with a distance whose meaning is the space's:
Euclidean distance for "l2", 1 - cosine similarity for "cosine" (vectors are normalised on the way in, so
their length never matters).

Implementations: `storage.vector_faiss.FaissVectorIndex` (exact below a size threshold, HNSW above it,
persisted under the Locard home and rebuilt from the record store when its files are damaged), and
`MemoryVectorIndex` here: exact, numpy only, for unit tests and as the reference the benchmark compares with.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Metric = Literal["l2", "cosine"]
VectorLike = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class EmbeddingSpace:
    """What an index holds: vectors of one model, `dimension` numbers each, compared by `metric`."""

    name: str
    dimension: int
    metric: Metric

    def __post_init__(self) -> None:
        if self.dimension < 1:
            raise ValueError(f"space {self.name}: dimension must be positive, got {self.dimension}")
        if self.metric not in ("l2", "cosine"):
            raise ValueError(f"space {self.name}: metric must be 'l2' or 'cosine', got {self.metric!r}")


DLIB_FACE = EmbeddingSpace("dlib-face-128", 128, "l2")
FACENET_FACE = EmbeddingSpace("facenet-512", 512, "cosine")
SCENE = EmbeddingSpace("scene-768", 768, "cosine")
SPACES = {space.name: space for space in (DLIB_FACE, FACENET_FACE, SCENE)}


@dataclass(frozen=True)
class VectorHit:
    """One neighbour: its Locard id and its distance to the query (smaller is nearer; see the module)."""

    id: str
    distance: float


class DimensionMismatch(ValueError):
    """A vector whose length is not its space's dimension (another model's vector, most likely)."""


class InvalidVector(ValueError):
    """A vector with NaN or infinite numbers, or of zero length in a cosine space."""


@runtime_checkable
class VectorIndex(Protocol):
    """Nearest-neighbour search over the vectors of one space, keyed by Locard ids."""

    @property
    def space(self) -> EmbeddingSpace: ...

    def __len__(self) -> int: ...

    def __contains__(self, id: object) -> bool: ...

    def add(self, *, ids: Sequence[str], vectors: np.ndarray | Sequence[VectorLike]) -> None:
        """Add (or replace) one vector per id."""

    def remove(self, *, ids: Iterable[str]) -> int:
        """Remove these ids (unknown ones are ignored); how many were removed."""

    def search(self, vector: VectorLike, *, k: int) -> list[VectorHit]:
        """The k nearest vectors to `vector`, nearest first (fewer when the index holds fewer)."""

    def search_batch(self, vectors: np.ndarray | Sequence[VectorLike], *, k: int) -> list[list[VectorHit]]:
        """`search` for each row of `vectors`."""

    def rebuild(self, items: Iterable[tuple[str, VectorLike]]) -> None:
        """Replace the whole content by `items` (read from the record store)."""


def as_matrix(space: EmbeddingSpace, vectors: np.ndarray | Sequence[VectorLike]) -> np.ndarray:
    """Vectors as a C-contiguous float32 (n, dimension) matrix, checked, and normalised in a cosine space."""
    matrix = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
    if matrix.size == 0 and matrix.ndim == 2 and matrix.shape[1] in (0, space.dimension):
        return np.empty((0, space.dimension), dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != space.dimension:
        got = matrix.shape[-1] if matrix.ndim else 0
        raise DimensionMismatch(f"space {space.name} holds {space.dimension}-d vectors, got {got}-d "
                                f"(shape {tuple(matrix.shape)}): is this another model's embedding?")
    if not np.isfinite(matrix).all():
        raise InvalidVector(f"space {space.name}: a vector holds NaN or infinite numbers")
    if space.metric == "cosine":
        lengths = np.linalg.norm(matrix, axis=1, keepdims=True)
        if (lengths == 0).any():
            raise InvalidVector(f"space {space.name}: a zero-length vector has no direction to compare")
        matrix /= lengths
    return np.ascontiguousarray(matrix)


def check_ids(ids: Sequence[str], count: int) -> None:
    if len(ids) != count:
        raise ValueError(f"{len(ids)} ids for {count} vectors")
    if len(set(ids)) != len(ids):
        raise ValueError("the same id twice in one batch")
    for item in ids:
        if not isinstance(item, str) or not item:
            raise ValueError(f"ids are non-empty strings, got {item!r}")


def check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def distances_from_scores(space: EmbeddingSpace, scores: np.ndarray) -> np.ndarray:
    """Faiss's scores (squared L2, or inner product of unit vectors) as the space's distance."""
    if space.metric == "l2":
        return np.sqrt(np.maximum(scores, 0.0))
    return 1.0 - scores


class MemoryVectorIndex:
    """An exact index in numpy: every search compares with every vector. For tests and as the reference."""

    def __init__(self, space: EmbeddingSpace) -> None:
        self._space = space
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._vectors = np.empty((0, space.dimension), dtype=np.float32)

    @property
    def space(self) -> EmbeddingSpace:
        return self._space

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, id: object) -> bool:
        return id in self._ids

    def add(self, *, ids: Sequence[str], vectors: np.ndarray | Sequence[VectorLike]) -> None:
        matrix = as_matrix(self._space, vectors)
        check_ids(ids, len(matrix))
        replaced = set(ids)
        with self._lock:
            keep = [index for index, item in enumerate(self._ids) if item not in replaced]
            self._ids = [self._ids[index] for index in keep] + list(ids)
            self._vectors = np.vstack([self._vectors[keep], matrix])

    def remove(self, *, ids: Iterable[str]) -> int:
        gone = set(ids)
        with self._lock:
            keep = [index for index, item in enumerate(self._ids) if item not in gone]
            removed = len(self._ids) - len(keep)
            self._ids = [self._ids[index] for index in keep]
            self._vectors = self._vectors[keep]
        return removed

    def search(self, vector: VectorLike, *, k: int) -> list[VectorHit]:
        return self.search_batch([vector], k=k)[0]

    def search_batch(self, vectors: np.ndarray | Sequence[VectorLike], *, k: int) -> list[list[VectorHit]]:
        check_k(k)
        queries = as_matrix(self._space, vectors)
        with self._lock:
            ids, stored = list(self._ids), self._vectors
        if not ids:
            return [[] for _ in queries]
        if self._space.metric == "l2":
            scores = (np.sum(queries.astype(np.float64) ** 2, axis=1)[:, None]
                      - 2.0 * queries.astype(np.float64) @ stored.T.astype(np.float64)
                      + np.sum(stored.astype(np.float64) ** 2, axis=1)[None, :])
            order = np.argsort(scores, axis=1, kind="stable")[:, :k]
        else:
            scores = queries.astype(np.float64) @ stored.T.astype(np.float64)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        distances = distances_from_scores(self._space, np.take_along_axis(scores, order, axis=1))
        return [[VectorHit(ids[int(position)], float(distance)) for position, distance in zip(row, far, strict=True)]
                for row, far in zip(order, distances, strict=True)]

    def rebuild(self, items: Iterable[tuple[str, VectorLike]]) -> None:
        pairs = list(items)
        matrix = as_matrix(self._space, [vector for _, vector in pairs])
        ids = [item for item, _ in pairs]
        check_ids(ids, len(matrix))
        with self._lock:
            self._ids, self._vectors = ids, matrix
