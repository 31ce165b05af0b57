"""`VectorIndex` on FAISS: exact (flat) while small, HNSW past a size threshold, persisted under the Locard home.

Positions. FAISS holds the vectors at positions 0..n-1 in the order they were added, and `_ids[position]` is the
Locard id there. Removing (or replacing) an id leaves a tombstone: its position is excluded from every search by
an id selector, and once tombstones pass `compact_fraction` of the positions the index is rebuilt without them.
HNSW cannot delete in place, so the same scheme serves both kinds, and rebuilding keeps the order.

Exact or approximate. Below `exact_up_to` live vectors the index is an `IndexFlat` (exact; 128-d at 10^5 is
~3 ms a query on one core). Adding past the threshold rebuilds it as `IndexHNSWFlat` (M links per node, search
breadth `ef_search`); it goes back to flat only when a compaction or rebuild finds it below half the threshold,
so an index at the threshold does not flip back and forth. evaluation/bench_vectors.py measures the recall of
the HNSW index against exact search on clustered face-like vectors, and the defaults come from it.

Threads. One writer and any number of readers: `_write` serialises writers; `_state` guards the FAISS index and
the id map, held by searches and by the short steps of a write. A switch or compaction builds the new index
with only `_write` held, from a snapshot, so searches go on against the old index until the swap.

Persistence. `save` writes the serialised index and the id map through `storage.index_files` (atomic, with
SHA-256 in a manifest); `open_index` loads them, or rebuilds from the caller's record-store reader when they are
missing, torn, altered, or of another space, and saves the result.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from storage.index_files import MANIFEST, IndexCorrupt, index_directory, read_index, write_index
from storage.vectors import (
    EmbeddingSpace,
    VectorHit,
    VectorLike,
    as_matrix,
    check_ids,
    check_k,
    distances_from_scores,
)

log = logging.getLogger("locard.vectors")

Kind = Literal["flat", "hnsw"]
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.json"
_REBUILD_BATCH = 16_384


@dataclass(frozen=True)
class IndexSettings:
    """When to go approximate and how hard the HNSW graph searches (see evaluation/bench_vectors.py)."""

    exact_up_to: int = 100_000
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 1_024  # recall@10 0.95 at 10^6 clustered faces for ~5 ms a query (bench_vectors)
    compact_fraction: float = 0.2


class FaissVectorIndex:
    """A `VectorIndex` of one space on FAISS; `directory` is where `save` writes it (None: never saved)."""

    def __init__(self, space: EmbeddingSpace, *, directory: Path | None = None,
                 settings: IndexSettings | None = None) -> None:
        self._space = space
        self.directory = directory
        self.settings = settings or IndexSettings()
        self.origin: Literal["created", "loaded", "rebuilt"] = "created"
        self._write = threading.Lock()
        self._state = threading.Lock()
        self._kind: Kind = "flat"
        self._index: Any = self._new_index("flat")
        self._ids: list[str | None] = []
        self._positions: dict[str, int] = {}
        self._selector: tuple[Any, Any] | None = None

    @property
    def space(self) -> EmbeddingSpace:
        return self._space

    @property
    def kind(self) -> Kind:
        return self._kind

    @property
    def tombstones(self) -> int:
        return len(self._ids) - len(self._positions)

    def __len__(self) -> int:
        return len(self._positions)

    def __contains__(self, id: object) -> bool:
        return id in self._positions

    def _new_index(self, kind: Kind) -> Any:
        metric = faiss.METRIC_L2 if self._space.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            return faiss.IndexFlat(self._space.dimension, metric)
        index = faiss.IndexHNSWFlat(self._space.dimension, self.settings.hnsw_m, metric)
        index.hnsw.efConstruction = self.settings.ef_construction
        index.hnsw.efSearch = self.settings.ef_search
        return index

    # writing

    def add(self, *, ids: Sequence[str], vectors: np.ndarray | Sequence[VectorLike]) -> None:
        matrix = as_matrix(self._space, vectors)
        check_ids(ids, len(matrix))
        if not len(matrix):
            return
        with self._write:
            with self._state:
                for item in ids:
                    if item in self._positions:
                        self._ids[self._positions.pop(item)] = None
                start = len(self._ids)
                self._index.add(matrix)
                self._ids.extend(ids)
                self._positions.update((item, start + offset) for offset, item in enumerate(ids))
                self._selector = None
            self._reshape_if_due()

    def remove(self, *, ids: Iterable[str]) -> int:
        removed = 0
        with self._write:
            with self._state:
                for item in ids:
                    position = self._positions.pop(item, None)
                    if position is not None:
                        self._ids[position] = None
                        removed += 1
                if removed:
                    self._selector = None
            self._reshape_if_due()
        return removed

    def rebuild(self, items: Iterable[tuple[str, VectorLike]]) -> None:
        """Replace everything by `items`, read in batches (later duplicates of an id win)."""
        ids: list[str] = []
        chunks: list[np.ndarray] = []
        pending_ids: list[str] = []
        pending: list[VectorLike] = []
        for item, vector in items:
            pending_ids.append(item)
            pending.append(vector)
            if len(pending) >= _REBUILD_BATCH:
                chunks.append(as_matrix(self._space, pending))
                ids.extend(pending_ids)
                pending_ids, pending = [], []
        chunks.append(as_matrix(self._space, pending))
        ids.extend(pending_ids)
        matrix = np.concatenate(chunks)
        last = {item: row for row, item in enumerate(ids)}
        if len(last) != len(ids):
            keep = np.array(sorted(last.values()), dtype=np.int64)
            matrix, ids = matrix[keep], [ids[row] for row in keep]
        with self._write:
            self._swap(ids, matrix, self._kind_for(len(ids), current="flat"))

    def _kind_for(self, live: int, *, current: Kind) -> Kind:
        if live > self.settings.exact_up_to:
            return "hnsw"
        if current == "hnsw" and live > self.settings.exact_up_to // 2:
            return "hnsw"
        return "flat"

    def _reshape_if_due(self) -> None:
        """Under `_write`: go approximate past the threshold, or compact when tombstones pile up."""
        live, total = len(self._positions), len(self._ids)
        crossed = self._kind == "flat" and live > self.settings.exact_up_to
        crowded = total - live >= max(64, self.settings.compact_fraction * total)
        if not (crossed or crowded):
            return
        with self._state:
            keep = [position for position, item in enumerate(self._ids) if item is not None]
            ids = [self._ids[position] or "" for position in keep]
            matrix = self._index.reconstruct_n(0, total)[keep] if total else \
                np.empty((0, self._space.dimension), dtype=np.float32)
        kind = self._kind_for(len(ids), current=self._kind)
        log.info("vector index %s: rebuilding as %s (%d live, %d tombstones)", self._space.name, kind, live,
                 total - live)
        self._swap(ids, np.ascontiguousarray(matrix, dtype=np.float32), kind)

    def _swap(self, ids: list[str], matrix: np.ndarray, kind: Kind) -> None:
        """Under `_write`: build an index of `kind` over `matrix` (readers go on meanwhile), then swap it in."""
        index = self._new_index(kind)
        if len(matrix):
            index.add(matrix)
        with self._state:
            self._index, self._kind = index, kind
            self._ids = list(ids)
            self._positions = {item: position for position, item in enumerate(ids)}
            self._selector = None

    # reading

    def search(self, vector: VectorLike, *, k: int) -> list[VectorHit]:
        return self.search_batch([vector], k=k)[0]

    def search_batch(self, vectors: np.ndarray | Sequence[VectorLike], *, k: int) -> list[list[VectorHit]]:
        check_k(k)
        queries = as_matrix(self._space, vectors)
        with self._state:
            if not self._positions:
                return [[] for _ in queries]
            scores, labels = self._index.search(queries, k, params=self._parameters(k))
            ids = self._ids
            rows = [[(item, score) for label, score in zip(row_labels, row_scores, strict=True)
                     if label >= 0 and (item := ids[label]) is not None]
                    for row_labels, row_scores in zip(labels, scores, strict=True)]
        hits = []
        for row in rows:
            distances = distances_from_scores(self._space, np.array([score for _, score in row], dtype=np.float64))
            hits.append([VectorHit(item, float(distance)) for (item, _), distance in zip(row, distances, strict=True)])
        return hits

    def _parameters(self, k: int) -> Any:
        """Under `_state`: the search parameters: HNSW's breadth, and a selector that skips tombstones."""
        parameters: Any
        if self._kind == "hnsw":
            parameters = faiss.SearchParametersHNSW()  # type: ignore[attr-defined]  # absent from faiss's stubs
            parameters.efSearch = max(self.settings.ef_search, k)
        else:
            parameters = faiss.SearchParameters()
        if len(self._ids) != len(self._positions):
            if self._selector is None:
                dead = np.array([position for position, item in enumerate(self._ids) if item is None], dtype=np.int64)
                batch = faiss.IDSelectorBatch(dead)
                self._selector = (batch, faiss.IDSelectorNot(batch))  # the batch must outlive the "not"
            parameters.sel = self._selector[1]
        return parameters

    # persistence

    def _meta(self) -> dict[str, Any]:
        return {"space": asdict(self._space), "kind": self._kind, "count": len(self._positions),
                "positions": len(self._ids), "faiss": faiss.__version__}

    def save(self) -> None:
        """Write the index and its id map under `directory`, atomically (see storage.index_files)."""
        if self.directory is None:
            raise ValueError(f"vector index {self._space.name} has no directory to save to")
        with self._write:
            with self._state:
                data = faiss.serialize_index(self._index).tobytes()
                ids = json.dumps(self._ids).encode()
                meta = self._meta()
            write_index(self.directory, files={INDEX_FILE: data, IDS_FILE: ids}, meta=meta)

    @classmethod
    def load(cls, directory: Path, space: EmbeddingSpace, *, settings: IndexSettings | None = None
             ) -> FaissVectorIndex:
        """The index saved in `directory`; `IndexCorrupt` when it is damaged or holds another space."""
        manifest, files = read_index(directory)
        if manifest.get("space") != asdict(space):
            raise IndexCorrupt(f"{directory}: holds space {manifest.get('space')}, not {asdict(space)}")
        if set(files) != {INDEX_FILE, IDS_FILE} or manifest.get("kind") not in ("flat", "hnsw"):
            raise IndexCorrupt(f"{directory}: unexpected files or kind in the manifest")
        try:
            ids = json.loads(files[IDS_FILE])
            faiss_index: Any = faiss.deserialize_index(np.frombuffer(files[INDEX_FILE], dtype=np.uint8))
        except (ValueError, RuntimeError) as exc:
            raise IndexCorrupt(f"{directory}: unreadable index: {exc}") from exc
        if not isinstance(ids, list) or not all(item is None or isinstance(item, str) for item in ids):
            raise IndexCorrupt(f"{directory}: the id map is not a list of ids")
        if faiss_index.ntotal != len(ids) or faiss_index.d != space.dimension:
            raise IndexCorrupt(f"{directory}: {faiss_index.ntotal} vectors of {faiss_index.d}-d for {len(ids)} ids")
        index = cls(space, directory=directory, settings=settings)
        index._index, index._kind, index._ids = faiss_index, manifest["kind"], ids
        index._positions = {item: position for position, item in enumerate(ids) if item is not None}
        if len(index._positions) != sum(item is not None for item in ids):
            raise IndexCorrupt(f"{directory}: an id appears at two positions")
        if index._kind == "hnsw":
            faiss_index.hnsw.efSearch = index.settings.ef_search
        index.origin = "loaded"
        return index


def open_index(home: Path, space: EmbeddingSpace, *, source: Callable[[], Iterable[tuple[str, VectorLike]]],
               settings: IndexSettings | None = None) -> FaissVectorIndex:
    """The space's index under the Locard home: loaded, or rebuilt from `source()` (the record store) and saved.

    `source` is only called when the saved index is missing or damaged; it yields (id, vector) pairs.
    """
    directory = index_directory(home, "vectors", space.name)
    if (directory / MANIFEST).exists():
        try:
            return FaissVectorIndex.load(directory, space, settings=settings)
        except IndexCorrupt as exc:
            log.warning("vector index %s: %s; rebuilding it from the record store", space.name, exc)
    index = FaissVectorIndex(space, directory=directory, settings=settings)
    index.rebuild(source())
    index.save()
    index.origin = "rebuilt"
    return index
