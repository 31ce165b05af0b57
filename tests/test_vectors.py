"""The vector index seam: FAISS (exact, then HNSW) against brute force, persistence, damage, spaces, threads."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from storage.index_files import MANIFEST, IndexCorrupt, index_directory
from storage.vector_faiss import IDS_FILE, INDEX_FILE, FaissVectorIndex, IndexSettings, open_index
from storage.vectors import (
    DLIB_FACE,
    SCENE,
    DimensionMismatch,
    EmbeddingSpace,
    InvalidVector,
    MemoryVectorIndex,
    VectorIndex,
)
from tests.vector_samples import face_gallery, face_probes, unit_vectors

SMALL = IndexSettings(exact_up_to=1_000)


def brute_force(space: EmbeddingSpace, stored: np.ndarray, query: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k nearest rows by the space's distance, computed the plainest way (float64)."""
    stored, query = stored.astype(np.float64), query.astype(np.float64)
    if space.metric == "l2":
        distances = np.linalg.norm(stored - query, axis=1)
    else:
        distances = 1.0 - (stored / np.linalg.norm(stored, axis=1, keepdims=True)) @ (query / np.linalg.norm(query))
    order = np.argsort(distances, kind="stable")[:k]
    return [(int(row), float(distances[row])) for row in order]


def recall_at(index: VectorIndex, exact: VectorIndex, queries: np.ndarray, k: int) -> float:
    found = index.search_batch(queries, k=k)
    truth = exact.search_batch(queries, k=k)
    return float(np.mean([len({hit.id for hit in a} & {hit.id for hit in b}) / k
                          for a, b in zip(found, truth, strict=True)]))


@pytest.mark.parametrize("space", [DLIB_FACE, SCENE])
@pytest.mark.parametrize("make", [lambda space: FaissVectorIndex(space), MemoryVectorIndex])
def test_exact_search_is_brute_force(space: EmbeddingSpace, make) -> None:
    if space.metric == "l2":
        gallery = face_gallery(600, seed=3)
        stored, queries = gallery.vectors, face_probes(gallery, 20)
    else:
        stored = unit_vectors(600, dimension=space.dimension, clusters=40, seed=3)
        queries = unit_vectors(20, dimension=space.dimension, clusters=40, seed=4)
    index = make(space)
    assert isinstance(index, VectorIndex)
    ids = [f"finding-{row}" for row in range(len(stored))]
    index.add(ids=ids, vectors=stored)
    for query in queries:
        hits = index.search(query, k=10)
        expected = brute_force(space, stored, query, 10)
        assert [hit.id for hit in hits] == [ids[row] for row, _ in expected]
        assert [hit.distance for hit in hits] == pytest.approx([distance for _, distance in expected], abs=1e-4)


def test_add_replace_remove_and_k_beyond_size() -> None:
    index = FaissVectorIndex(DLIB_FACE)
    gallery = face_gallery(50, seed=5)
    index.add(ids=gallery.ids, vectors=gallery.vectors)
    assert len(index) == 50 and gallery.ids[7] in index
    assert len(index.search(gallery.vectors[0], k=500)) == 50

    assert index.search(gallery.vectors[7], k=1)[0].id == gallery.ids[7]
    assert index.remove(ids=[gallery.ids[7], "never-added"]) == 1
    assert gallery.ids[7] not in index and len(index) == 49
    hits = index.search(gallery.vectors[7], k=49)  # every live vector, none of them the removed one
    assert sorted(hit.id for hit in hits) == sorted(set(gallery.ids) - {gallery.ids[7]})

    # adding an id again replaces its vector: a re-analysis replaces its findings
    index.add(ids=[gallery.ids[3]], vectors=[gallery.vectors[30]])
    hits = index.search(gallery.vectors[30], k=2)
    assert {hit.id for hit in hits} == {gallery.ids[3], gallery.ids[30]} and hits[0].distance == pytest.approx(0)
    assert len(index) == 49 and gallery.ids[3] not in {hit.id for hit in index.search(gallery.vectors[3], k=1)}


def test_tombstones_are_compacted_without_changing_results() -> None:
    index, exact = FaissVectorIndex(DLIB_FACE), MemoryVectorIndex(DLIB_FACE)
    gallery = face_gallery(400, seed=6)
    for target in (index, exact):
        target.add(ids=gallery.ids, vectors=gallery.vectors)
    index.remove(ids=gallery.ids[:60])
    assert index.tombstones == 60
    index.remove(ids=gallery.ids[60:100])  # 100 of 400 dead: past a fifth, compacted
    exact.remove(ids=gallery.ids[:100])
    assert index.tombstones == 0 and len(index) == 300
    probes = face_probes(gallery, 10)
    assert recall_at(index, exact, probes, 10) == 1.0


def test_crossing_the_threshold_goes_hnsw_and_keeps_recall() -> None:
    gallery = face_gallery(3_000, seed=7)
    index, exact = FaissVectorIndex(DLIB_FACE, settings=SMALL), MemoryVectorIndex(DLIB_FACE)
    exact.add(ids=gallery.ids, vectors=gallery.vectors)
    index.add(ids=gallery.ids[:900], vectors=gallery.vectors[:900])
    assert index.kind == "flat"
    for start in range(900, 3_000, 700):
        index.add(ids=gallery.ids[start:start + 700], vectors=gallery.vectors[start:start + 700])
    assert index.kind == "hnsw" and len(index) == 3_000
    assert recall_at(index, exact, face_probes(gallery, 100), 10) >= 0.95

    index.remove(ids=gallery.ids[:10])  # HNSW cannot delete: tombstones are skipped by the selector
    exact.remove(ids=gallery.ids[:10])
    hits = index.search(gallery.vectors[5], k=20)
    assert len(hits) == 20 and not {hit.id for hit in hits} & set(gallery.ids[:10])
    index.remove(ids=gallery.ids[10:2_600])  # below half the threshold: compacted back to exact
    exact.remove(ids=gallery.ids[10:2_600])
    assert index.kind == "flat" and recall_at(index, exact, face_probes(gallery, 30), 10) == 1.0


def test_cosine_space_ignores_length_and_l2_does_not() -> None:
    space = EmbeddingSpace("cosine-4", 4, "cosine")
    index = FaissVectorIndex(space)
    index.add(ids=["a", "b"], vectors=[[1, 0, 0, 0], [1, 1, 0, 0]])
    hits = index.search([10, 0, 0, 0], k=2)
    assert [hit.id for hit in hits] == ["a", "b"]
    assert [hit.distance for hit in hits] == pytest.approx([0.0, 1 - np.sqrt(0.5)], abs=1e-6)

    l2 = FaissVectorIndex(EmbeddingSpace("l2-4", 4, "l2"))
    l2.add(ids=["a", "b"], vectors=[[1, 0, 0, 0], [3, 0, 0, 0]])
    hits = l2.search([2.9, 0, 0, 0], k=2)
    assert [hit.id for hit in hits] == ["b", "a"]
    assert [hit.distance for hit in hits] == pytest.approx([0.1, 1.9], abs=1e-5)


@pytest.mark.parametrize("make", [lambda space: FaissVectorIndex(space), MemoryVectorIndex])
def test_wrong_vectors_are_refused_clearly(make) -> None:
    index = make(DLIB_FACE)
    with pytest.raises(DimensionMismatch, match=r"dlib-face-128 holds 128-d vectors, got 512-d"):
        index.add(ids=["x"], vectors=np.ones((1, 512), dtype=np.float32))
    with pytest.raises(DimensionMismatch, match="got 768-d"):
        index.search(np.ones(768), k=1)
    with pytest.raises(InvalidVector, match="NaN"):
        index.add(ids=["x"], vectors=[[np.nan] * 128])
    with pytest.raises(ValueError, match="2 ids for 1 vectors"):
        index.add(ids=["x", "y"], vectors=np.ones((1, 128)))
    with pytest.raises(ValueError, match="k must be"):
        index.search(np.ones(128), k=0)
    with pytest.raises(InvalidVector, match="zero-length"):
        make(SCENE).add(ids=["x"], vectors=np.zeros((1, 768)))
    assert len(index) == 0


def test_saved_index_loads_with_the_same_answers(tmp_path: Path) -> None:
    gallery = face_gallery(1_500, seed=8)
    index = open_index(tmp_path, DLIB_FACE, source=lambda: zip(gallery.ids, gallery.vectors, strict=True),
                       settings=SMALL)
    assert index.origin == "rebuilt" and index.kind == "hnsw" and len(index) == 1_500
    index.remove(ids=gallery.ids[:5])
    index.save()

    def no_source():
        raise AssertionError("a sound index must not be rebuilt")

    loaded = open_index(tmp_path, DLIB_FACE, source=no_source, settings=SMALL)
    assert loaded.origin == "loaded" and loaded.kind == "hnsw" and len(loaded) == 1_495
    probes = face_probes(gallery, 20)
    assert loaded.search_batch(probes, k=10) == index.search_batch(probes, k=10)
    assert gallery.ids[0] not in loaded


@pytest.mark.parametrize("damage", ["flip a byte of the index", "truncate the id map", "drop the manifest",
                                    "another space in the manifest", "garbage manifest"])
def test_a_damaged_index_is_detected_and_rebuilt(tmp_path: Path, damage: str) -> None:
    gallery = face_gallery(300, seed=9)
    source = lambda: zip(gallery.ids, gallery.vectors, strict=True)  # noqa: E731
    open_index(tmp_path, DLIB_FACE, source=source)
    directory = index_directory(tmp_path, "vectors", DLIB_FACE.name)
    if damage == "flip a byte of the index":
        data = bytearray((directory / INDEX_FILE).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (directory / INDEX_FILE).write_bytes(bytes(data))
    elif damage == "truncate the id map":
        data = (directory / IDS_FILE).read_bytes()
        (directory / IDS_FILE).write_bytes(data[: len(data) // 2])
    elif damage == "drop the manifest":
        (directory / MANIFEST).unlink()
    elif damage == "another space in the manifest":
        manifest = json.loads((directory / MANIFEST).read_text())
        manifest["space"]["dimension"] = 512
        (directory / MANIFEST).write_text(json.dumps(manifest))
    else:
        (directory / MANIFEST).write_text("{not json")
    if damage != "drop the manifest":
        with pytest.raises(IndexCorrupt):
            FaissVectorIndex.load(directory, DLIB_FACE)
    reopened = open_index(tmp_path, DLIB_FACE, source=source)
    assert reopened.origin == "rebuilt" and len(reopened) == 300
    assert reopened.search(gallery.vectors[42], k=1)[0].id == gallery.ids[42]
    assert FaissVectorIndex.load(directory, DLIB_FACE).origin == "loaded"  # the rebuilt one was saved


def test_a_space_with_an_unsafe_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="index name"):
        open_index(tmp_path, EmbeddingSpace("../escape", 4, "l2"), source=list)


def test_readers_search_while_a_writer_crosses_the_threshold() -> None:
    gallery = face_gallery(2_400, seed=10)
    index = FaissVectorIndex(DLIB_FACE, settings=SMALL)
    index.add(ids=gallery.ids[:200], vectors=gallery.vectors[:200])
    known = set(gallery.ids)
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                hits = index.search(gallery.vectors[0], k=5)
                assert len(hits) == 5 and {hit.id for hit in hits} <= known and hits[0].id == gallery.ids[0]
        except BaseException as exc:  # handed to the main thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for start in range(200, 2_400, 200):
            index.add(ids=gallery.ids[start:start + 200], vectors=gallery.vectors[start:start + 200])
        index.remove(ids=gallery.ids[1_000:1_600])
    finally:
        done.set()
        for reader in readers:
            reader.join()
    assert not errors
    assert index.kind == "hnsw" and len(index) == 1_800
