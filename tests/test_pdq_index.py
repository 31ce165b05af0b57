"""PDQ near-duplicate lookup by multi-index hashing: exactly the brute-force answer, from a few candidates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from storage.index_files import IndexCorrupt, index_directory
from storage.pdq_index import HASHES_FILE, SAME_IMAGE, PdqIndex, hamming, open_pdq_index, pdq_bytes
from tests.vector_samples import flip_bits, planted_pdq, random_pdq


def brute_force(collection: np.ndarray, ids: list[str], probe: np.ndarray, max_distance: int) -> list[tuple[int, str]]:
    distances = [int(np.unpackbits(row ^ probe).sum()) for row in collection]
    return sorted((distance, ids[row]) for row, distance in enumerate(distances) if distance <= max_distance)


def answers(index: PdqIndex, probe: np.ndarray, max_distance: int = SAME_IMAGE) -> list[tuple[int, str]]:
    return [(hit.distance, hit.id) for hit in index.near(probe, max_distance=max_distance)]


@pytest.mark.parametrize("chunks", [16, 32])
def test_lookup_is_exactly_brute_force_with_planted_near_duplicates(chunks: int) -> None:
    collection, probes = planted_pdq(5_000, probes=25, per_probe=5, seed=1)
    ids = [f"pdq-{row}" for row in range(len(collection))]
    index = PdqIndex(chunks=chunks)
    index.add(ids=ids, hashes=collection)
    planted = 0
    for probe in probes:
        expected = brute_force(collection, ids, probe, SAME_IMAGE)
        assert answers(index, probe) == expected
        planted += len(expected)
        assert expected[0][0] == 0 and any(distance == SAME_IMAGE for distance, _ in expected)
    assert planted >= 25 * 5
    for probe in random_pdq(10, seed=99):  # random probes: nothing near, and nothing invented
        assert answers(index, probe) == brute_force(collection, ids, probe, SAME_IMAGE)
    # other radii follow the same pigeonhole: 0 and 47 (two bits per 16-bit chunk)
    assert answers(index, probes[0], 0) == brute_force(collection, ids, probes[0], 0)
    assert answers(index, probes[0], 47) == brute_force(collection, ids, probes[0], 47)


def test_distance_32_is_not_a_near_duplicate() -> None:
    rng = np.random.default_rng(4)
    probe = random_pdq(1, seed=5)[0]
    index = PdqIndex()
    index.add(ids=["at-31", "at-32"], hashes=[flip_bits(probe, 31, rng), flip_bits(probe, 32, rng)])
    assert answers(index, probe) == [(31, "at-31")]


def test_candidates_are_a_small_fraction_not_a_scan() -> None:
    collection, probes = planted_pdq(20_000, probes=5, seed=2)
    index = PdqIndex(chunks=16)
    index.add(ids=[str(row) for row in range(len(collection))], hashes=collection)
    # expected ~ 16 chunks x 17 probes x n / 65,536 = 83 candidates; far below the 20,000 of a scan
    assert all(index.candidates_per_query(probe) < 400 for probe in probes)


def test_incremental_adds_removals_and_replacements() -> None:
    collection, probes = planted_pdq(3_000, probes=4, seed=3)
    ids = [f"h{row}" for row in range(len(collection))]
    index = PdqIndex()
    for start in range(0, 3_000, 50):  # many small batches: a delta beside the tables, re-indexed as it grows
        index.add(ids=ids[start:start + 50], hashes=collection[start:start + 50])
    for probe in probes:
        assert answers(index, probe) == brute_force(collection, ids, probe, SAME_IMAGE)

    near = answers(index, probes[0])
    gone = near[0][1]
    assert index.remove(ids=[gone, "unknown"]) == 1 and gone not in index
    assert gone not in {item for _, item in answers(index, probes[0])}

    other = near[1][1]
    index.add(ids=[other], hashes=[random_pdq(1, seed=77)[0]])  # a re-analysis gives it another hash
    assert other not in {item for _, item in answers(index, probes[0])} and len(index) == 2_999

    index.remove(ids=ids[:1_000])  # past a fifth dead: compacted
    survivors = [row for row in range(1_000, 3_000) if ids[row] not in (gone, other)]
    for probe in probes:
        expected = brute_force(collection[survivors], [ids[row] for row in survivors], probe, SAME_IMAGE)
        assert answers(index, probe) == expected


def test_hashes_are_taken_as_the_hashes_analyzer_writes_them() -> None:
    value = random_pdq(1, seed=8)[0]
    text = value.tobytes().hex()
    assert np.array_equal(pdq_bytes(text), value) and np.array_equal(pdq_bytes(value.tobytes()), value)
    index = PdqIndex()
    index.add(ids=["finding-1"], hashes=[text])
    assert answers(index, value) == [(0, "finding-1")]
    with pytest.raises(ValueError, match="64 hex digits"):
        pdq_bytes(text[:-2])
    with pytest.raises(ValueError, match="32 bytes"):
        pdq_bytes(np.zeros(16, dtype=np.uint8))
    with pytest.raises(ValueError, match="distinct ids"):
        index.add(ids=["a", "a"], hashes=[text, text])


def test_hamming_counts_bits() -> None:
    hashes = random_pdq(50, seed=9)
    probe = hashes[0]
    assert hamming(hashes, probe).tolist() == [int(np.unpackbits(row ^ probe).sum()) for row in hashes]


def test_persistence_round_trip_and_damage(tmp_path: Path) -> None:
    collection, probes = planted_pdq(2_000, probes=3, seed=6)
    ids = [f"h{row}" for row in range(len(collection))]
    source = lambda: zip(ids, collection, strict=True)  # noqa: E731
    index = open_pdq_index(tmp_path, source=source)
    assert index.origin == "rebuilt" and len(index) == 2_000
    index.remove(ids=ids[:3])
    index.save()
    loaded = open_pdq_index(tmp_path, source=list)  # a sound index is loaded; an empty source would show
    assert loaded.origin == "loaded" and len(loaded) == 1_997
    for probe in probes:
        assert answers(loaded, probe) == answers(index, probe)

    directory = index_directory(tmp_path, "pdq", "pdq")
    data = (directory / HASHES_FILE).read_bytes()
    (directory / HASHES_FILE).write_bytes(data[:-32])  # torn: one hash short
    with pytest.raises(IndexCorrupt):
        PdqIndex.load(directory)
    rebuilt = open_pdq_index(tmp_path, source=source)
    assert rebuilt.origin == "rebuilt" and len(rebuilt) == 2_000
    assert answers(rebuilt, probes[0]) == brute_force(collection, ids, probes[0], SAME_IMAGE)
