"""Near-duplicate lookup of PDQ hashes (256 bits, Hamming distance) by multi-index hashing, never a full scan.

Multi-index hashing (Norouzi, Punjani and Fleet, 2012) cuts each hash into m chunks of 256/m bits and indexes
every chunk on its own. By pigeonhole, two hashes at most D bits apart differ in at most floor(D/m) bits in at
least one chunk: if every chunk differed in floor(D/m) + 1 bits or more, the whole would differ in
m * (floor(D/m) + 1) > D. So the candidates are the hashes that, in some chunk, lie within floor(D/m) bits of
the query's chunk, and an exact Hamming check of those candidates (numpy popcount) gives exactly the hashes
within D: no false negatives, by construction, and none of the false positives survives.

Choice of m for D = 31 (Meta's threshold) over n random-looking hashes:

* m = 32 (8-bit chunks, exact chunk match): 32 lookups, each hitting n/256 hashes: ~n/8 candidates
  (125,000 at n = 10^6): a scan of an eighth of the collection;
* m = 16 (16-bit chunks, chunk within 1 bit): 16 x 17 = 272 lookups, each hitting n/65,536: ~n/241 candidates
  (~4,200 at n = 10^6), found through 272 contiguous slices; the default;
* m = 8 (32-bit chunks, within 3 bits): 8 x 5,489 lookups of a table of 2^32 keys: few candidates, but ~44,000
  probes of a hash table per query, slower in Python than checking the candidates of m = 16.

Each chunk's table is compressed-sparse: positions sorted by chunk value, and 2^b + 1 offsets, so a probe is
two array reads and all probes of a query are gathered in a few vectorised numpy operations. Hashes added
since the tables were last built (a delta of at most 1/16 of the indexed ones) are checked directly; past that,
the tables are rebuilt (about a second at 10^6). Removal leaves a tombstone; past `compact_fraction` dead
positions the arrays are rebuilt without them. Persistence (hashes and ids; the tables are rebuilt on load) is
atomic and checked as in `storage.index_files`; `open_pdq_index` rebuilds from the record store when it fails.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from storage.index_files import MANIFEST, IndexCorrupt, index_directory, read_index, write_index

log = logging.getLogger("locard.pdq_index")

PDQ_BITS = 256
PDQ_BYTES = PDQ_BITS // 8
SAME_IMAGE = 31  # Meta's suggested threshold: a distance of 31 or less is the same image
HASHES_FILE = "hashes.bin"
IDS_FILE = "ids.json"
HashLike = str | bytes | np.ndarray


@dataclass(frozen=True)
class PdqHit:
    """A stored hash within the asked distance of the query: its Locard id and the Hamming distance (0-256)."""

    id: str
    distance: int


def pdq_bytes(value: HashLike) -> np.ndarray:
    """A PDQ hash (64 hex digits as the hashes analyzer writes it, 32 bytes, or 32 uint8) as 32 uint8."""
    if isinstance(value, str):
        if len(value) != 2 * PDQ_BYTES:
            raise ValueError(f"a PDQ hash is {2 * PDQ_BYTES} hex digits, got {len(value)}")
        value = bytes.fromhex(value)
    array = np.frombuffer(value, dtype=np.uint8) if isinstance(value, bytes) else np.asarray(value)
    if array.dtype != np.uint8 or array.shape != (PDQ_BYTES,):
        raise ValueError(f"a PDQ hash is {PDQ_BYTES} bytes, got dtype {array.dtype} and shape {array.shape}")
    return array


def hamming(hashes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Hamming distances of (n, 32) uint8 hashes to one 32-byte hash, by popcount over 64-bit words."""
    words = np.ascontiguousarray(hashes).view(np.uint64)
    return np.bitwise_count(words ^ np.ascontiguousarray(query).view(np.uint64)).sum(axis=1, dtype=np.int64)


class PdqIndex:
    """PDQ hashes keyed by Locard ids, with `near` by multi-index hashing over `chunks` chunks (16 or 32)."""

    def __init__(self, *, directory: Path | None = None, chunks: int = 16, compact_fraction: float = 0.2) -> None:
        if chunks not in (16, 32):
            raise ValueError(f"chunks must be 16 (16-bit) or 32 (8-bit), got {chunks}")
        self.directory = directory
        self.chunks = chunks
        self.compact_fraction = compact_fraction
        self.origin = "created"
        self._bits = PDQ_BITS // chunks
        self._write = threading.Lock()
        self._state = threading.Lock()
        self._hashes = np.empty((1024, PDQ_BYTES), dtype=np.uint8)
        self._alive = np.zeros(1024, dtype=bool)
        self._ids: list[str | None] = []
        self._positions: dict[str, int] = {}
        self._indexed = 0  # positions [0, _indexed) are in the chunk tables
        self._offsets = np.zeros((chunks, 2**self._bits + 1), dtype=np.int64)
        self._members = np.empty(0, dtype=np.int32)
        self._masks: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._positions)

    def __contains__(self, id: object) -> bool:
        return id in self._positions

    def _chunk_values(self, hashes: np.ndarray) -> np.ndarray:
        """(n, chunks) chunk values: big-endian 16-bit words, or the bytes themselves."""
        if self._bits == 8:
            return hashes.astype(np.int64)
        return np.ascontiguousarray(hashes).view(">u2").astype(np.int64)

    # writing

    def add(self, *, ids: Sequence[str], hashes: Sequence[HashLike] | np.ndarray) -> None:
        """Add (or replace) one hash per id."""
        if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint8 and hashes.ndim == 2:
            if hashes.shape[1] != PDQ_BYTES:
                raise ValueError(f"PDQ hashes are {PDQ_BYTES} bytes, got rows of {hashes.shape[1]}")
            rows = hashes
        else:
            rows = np.array([pdq_bytes(value) for value in hashes], dtype=np.uint8).reshape(-1, PDQ_BYTES)
        if len(ids) != len(rows) or len(set(ids)) != len(ids):
            raise ValueError(f"{len(ids)} distinct ids needed for {len(rows)} hashes")
        with self._write:
            with self._state:
                for item in ids:
                    if item in self._positions:
                        replaced = self._positions.pop(item)
                        self._ids[replaced], self._alive[replaced] = None, False
                start = len(self._ids)
                self._reserve(start + len(rows))
                self._hashes[start:start + len(rows)] = rows
                self._alive[start:start + len(rows)] = True
                self._ids.extend(ids)
                self._positions.update((item, start + offset) for offset, item in enumerate(ids))
            self._maintain()

    def remove(self, *, ids: Iterable[str]) -> int:
        removed = 0
        with self._write:
            with self._state:
                for item in ids:
                    position = self._positions.pop(item, None)
                    if position is not None:
                        self._ids[position] = None
                        self._alive[position] = False
                        removed += 1
            self._maintain()
        return removed

    def rebuild(self, items: Iterable[tuple[str, HashLike]]) -> None:
        """Replace everything by `items` (read from the record store; later duplicates of an id win)."""
        latest: dict[str, np.ndarray] = {}
        for item, value in items:
            latest.pop(item, None)
            latest[item] = pdq_bytes(value)
        with self._write:
            ids = list(latest)
            hashes = np.array(list(latest.values()), dtype=np.uint8).reshape(-1, PDQ_BYTES)
            self._replace(ids, hashes)

    def _reserve(self, size: int) -> None:
        if size > len(self._hashes):
            capacity = max(size, 2 * len(self._hashes))
            hashes = np.empty((capacity, PDQ_BYTES), dtype=np.uint8)
            hashes[:len(self._ids)] = self._hashes[:len(self._ids)]
            alive = np.zeros(capacity, dtype=bool)
            alive[:len(self._ids)] = self._alive[:len(self._ids)]
            self._hashes, self._alive = hashes, alive

    def _maintain(self) -> None:
        """Under `_write`: compact when tombstones pile up, re-index when the delta outgrows 1/16 of the tables."""
        total, live = len(self._ids), len(self._positions)
        if total - live >= max(64, self.compact_fraction * total):
            keep = [position for position, item in enumerate(self._ids) if item is not None]
            self._replace([self._ids[position] or "" for position in keep], self._hashes[keep].copy())
        elif total - self._indexed > max(1024, self._indexed // 16):
            self._index_tables(total)

    def _replace(self, ids: list[str], hashes: np.ndarray) -> None:
        with self._state:
            self._hashes = np.empty((max(1024, len(hashes)), PDQ_BYTES), dtype=np.uint8)
            self._hashes[:len(hashes)] = hashes
            self._alive = np.zeros(len(self._hashes), dtype=bool)
            self._alive[:len(hashes)] = True
            self._ids = list(ids)
            self._positions = {item: position for position, item in enumerate(ids)}
            self._indexed, self._members = 0, np.empty(0, dtype=np.int32)
            self._offsets[:] = 0
        self._index_tables(len(ids))

    def _index_tables(self, upto: int) -> None:
        """Under `_write`: build the chunk tables of positions [0, upto) from a snapshot, then swap them in."""
        with self._state:
            values = self._chunk_values(self._hashes[:upto])
        size = 2**self._bits
        offsets = np.zeros((self.chunks, size + 1), dtype=np.int64)
        members = np.empty(self.chunks * upto, dtype=np.int32)
        for chunk in range(self.chunks):
            column = values[:, chunk]
            offsets[chunk, 1:] = np.cumsum(np.bincount(column, minlength=size)) + chunk * upto
            offsets[chunk, 0] = chunk * upto
            members[chunk * upto:(chunk + 1) * upto] = np.argsort(column, kind="stable")
        with self._state:
            self._offsets, self._members, self._indexed = offsets, members, upto

    # reading

    def _masks_within(self, radius: int) -> np.ndarray:
        """Every chunk-sized value with at most `radius` bits set (the probes around a chunk value)."""
        if radius not in self._masks:
            values = np.arange(2**self._bits, dtype=np.int64)
            self._masks[radius] = values[np.bitwise_count(values) <= radius]
        return self._masks[radius]

    def near(self, value: HashLike, *, max_distance: int = SAME_IMAGE) -> list[PdqHit]:
        """Every stored hash within `max_distance` bits of `value`, nearest first (then by id)."""
        if not 0 <= max_distance <= PDQ_BITS:
            raise ValueError(f"max_distance must be within 0-{PDQ_BITS}, got {max_distance}")
        query = pdq_bytes(value)
        masks = self._masks_within(max_distance // self.chunks)
        keys = self._chunk_values(query[None, :])[0][:, None] ^ masks[None, :]  # (chunks, probes)
        rows = np.arange(self.chunks)[:, None]
        with self._state:
            starts, ends = self._offsets[rows, keys].ravel(), self._offsets[rows, keys + 1].ravel()
            lengths = ends - starts
            gathered = np.repeat(starts - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
            candidates = np.unique(np.concatenate([self._members[gathered].astype(np.int64),
                                                   np.arange(self._indexed, len(self._ids))]))
            candidates = candidates[self._alive[candidates]]
            distances = hamming(self._hashes[candidates], query)
            found = distances <= max_distance
            hits = [PdqHit(self._ids[position] or "", int(distance))
                    for position, distance in zip(candidates[found], distances[found], strict=True)]
        return sorted(hits, key=lambda hit: (hit.distance, hit.id))

    def candidates_per_query(self, value: HashLike, *, max_distance: int = SAME_IMAGE) -> int:
        """How many stored hashes one lookup checks exactly (for the benchmark: the cost of the method)."""
        query = pdq_bytes(value)
        keys = self._chunk_values(query[None, :])[0][:, None] ^ self._masks_within(max_distance // self.chunks)
        rows = np.arange(self.chunks)[:, None]
        with self._state:
            return int((self._offsets[rows, keys + 1] - self._offsets[rows, keys]).sum()) + len(self._ids) - \
                self._indexed

    # persistence

    def save(self) -> None:
        if self.directory is None:
            raise ValueError("this PDQ index has no directory to save to")
        with self._write:
            with self._state:
                total = len(self._ids)
                files = {HASHES_FILE: self._hashes[:total].tobytes(), IDS_FILE: json.dumps(self._ids).encode()}
                meta = {"kind": "pdq", "count": len(self._positions), "positions": total}
            write_index(self.directory, files=files, meta=meta)

    @classmethod
    def load(cls, directory: Path, *, chunks: int = 16) -> PdqIndex:
        """The index saved in `directory`; `IndexCorrupt` when it is damaged."""
        manifest, files = read_index(directory)
        if manifest.get("kind") != "pdq" or set(files) != {HASHES_FILE, IDS_FILE}:
            raise IndexCorrupt(f"{directory}: not a PDQ index")
        try:
            ids = json.loads(files[IDS_FILE])
        except ValueError as exc:
            raise IndexCorrupt(f"{directory}: unreadable id map: {exc}") from exc
        raw = files[HASHES_FILE]
        if not isinstance(ids, list) or len(raw) != PDQ_BYTES * len(ids) \
                or not all(item is None or isinstance(item, str) for item in ids):
            raise IndexCorrupt(f"{directory}: {len(raw)} bytes of hashes for {len(ids)} ids")
        live = [position for position, item in enumerate(ids) if item is not None]
        if len({ids[position] for position in live}) != len(live):
            raise IndexCorrupt(f"{directory}: an id appears at two positions")
        index = cls(directory=directory, chunks=chunks)
        hashes = np.frombuffer(raw, dtype=np.uint8).reshape(-1, PDQ_BYTES)[live]
        with index._write:
            index._replace([ids[position] for position in live], hashes)
        index.origin = "loaded"
        return index


def open_pdq_index(home: Path, *, source: Callable[[], Iterable[tuple[str, HashLike]]], name: str = "pdq",
                   chunks: int = 16) -> PdqIndex:
    """The PDQ index under the Locard home: loaded, or rebuilt from `source()` (the record store) and saved."""
    directory = index_directory(home, "pdq", name)
    if (directory / MANIFEST).exists():
        try:
            return PdqIndex.load(directory, chunks=chunks)
        except IndexCorrupt as exc:
            log.warning("PDQ index %s: %s; rebuilding it from the record store", name, exc)
    index = PdqIndex(directory=directory, chunks=chunks)
    index.rebuild(source())
    index.save()
    index.origin = "rebuilt"
    return index
