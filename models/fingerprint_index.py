"""1:N fingerprint search: a minutia-pair hash index narrows the gallery, Bozorth3 re-ranks the shortlist.

Bozorth3 costs milliseconds per comparison (measured ~2-8 ms a pair on one core, see
`evaluation/bench_fingerprints.py`), so comparing a probe with 100,000 templates one by one would take
minutes. Like production AFIS, the search here has two stages:

1. **Index** (pure numpy). Every template is reduced to minutia *pairs*: each minutia with its
   `NEIGHBOURS` nearest neighbours between `MIN_DISTANCE` and `MAX_DISTANCE` pixels (Bozorth3's own first
   step builds the same pair table). A pair is described by three rotation- and translation-invariant values:
   its length, and the direction of each minutia relative to the line joining them. Quantised (length in
   `DISTANCE_BIN` px, directions in `ANGLE_BINS` sectors) they form a key; the gallery is an inverted index
   key -> (template number, direction of the joining line), in CSR layout (`indptr`, `ids`, `phis`). The probe's
   pairs look up their key in both orders, and in the neighbouring bin of each value (soft quantisation: 8 keys
   a pair and order), and every gallery pair found casts a vote for (template, rotation), the rotation being
   the difference of the joining lines' directions (`ROTATION_BINS` sectors). Votes are counted with one
   `np.bincount`; a template's index score is its best rotation (with the two neighbouring sectors), divided
   by the square root of its pair count (large templates would otherwise collect chance votes). Unrelated
   prints spread their chance votes over all rotations; a mate piles them into one.
2. **Re-rank**: the `rerank` best templates by index score are compared with the probe by NIST Bozorth3, and
   the result is sorted by Bozorth3 score (the score examiners know), index score kept alongside.

Decision threshold: NIST's usual guidance is that a Bozorth3 score of 40 or more is a probable match
(`PROBABLE_MATCH`). Measured here (tests and benchmark; synthetic prints plus the one real latent), genuine
pairs scored 49-344 and impostor pairs 4-29, except one pair of different synthetic fingers at 58 (synthetic
fingers share one generator). On 100,000 templates: 0.6 s a search (median), 231 MiB, rank 1 for 9 of 10
probes (the tenth mate fell outside the index's top 100). A candidate list is an investigative lead for an
examiner, never an identification.

Memory: 5 bytes a stored pair (int32 template number + uint8 line direction), ~1.1 kB a template of 70
minutiae, plus its ISO record (needed by the re-ranking). Thread-safety: `add`/`remove` and `search` take a
lock; the index is rebuilt lazily (`_compact`) after changes. Nothing here does I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from models.fingerprints import PROBABLE_MATCH, FingerprintRejected
from models.minutiae import Bozorth3, bozorth3_score, parse_iso_19794_2

# Chosen by measurement (2,000-template gallery, 30 probes of synthetic fingers at other impressions: share of
# mates within the index's top 100 / at index rank 1): 10 px & 16 sectors 60 % / 7 %; 6 px & 32 sectors
# 80 % / 77 %; 4 px & 32 sectors 93 % / 77 % (chosen); 48 sectors 87 % / 70 %; 12 neighbours 83 % / 73 %;
# without soft angle bins 83 % / 60 %.
NEIGHBOURS = 8
MIN_DISTANCE, MAX_DISTANCE = 12.0, 150.0
DISTANCE_BIN = 4.0
ANGLE_BINS = 32  # 11.25 degrees: MINDTCT's own direction step
ROTATION_BINS = 32
SOFT_DISTANCE, SOFT_ANGLES = True, True  # probe-side soft quantisation of each value
ROTATION_SMOOTHING = 1  # neighbouring rotation sectors added on each side
MAX_INDEX_MINUTIAE = 120  # the most reliable ones; latents carry many spurious minutiae
DEFAULT_RERANK = 100


def _distance_bins() -> int:
    return int(np.ceil(MAX_DISTANCE / DISTANCE_BIN)) + 1


def _key_count() -> int:
    return _distance_bins() * ANGLE_BINS * ANGLE_BINS


@dataclass(frozen=True)
class Candidate:
    """One search result: Bozorth3 score (0 when not re-ranked), index score, and rank (1 = best)."""

    template_id: str
    score: int
    index_score: float
    rank: int

    @property
    def probable_match(self) -> bool:
        return self.score >= PROBABLE_MATCH


def most_reliable(minutiae: np.ndarray, limit: int = MAX_INDEX_MINUTIAE) -> np.ndarray:
    """Row numbers of the minutiae to use: all of them in record order when there are no more than `limit`, else
    the `limit` of highest quality (column 3), best first, ties in record order."""
    if len(minutiae) <= limit:
        return np.arange(len(minutiae))
    return np.argsort(-minutiae[:, 3], kind="stable")[:limit]


def _minutiae_for_index(iso: bytes) -> np.ndarray:
    minutiae = parse_iso_19794_2(iso).minutiae
    return minutiae[most_reliable(minutiae)]


def _pairs(minutiae: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each minutia with its nearest neighbours: (distance, beta_i, beta_j, phi) of pairs i -> j, degrees.

    phi is the direction of the line i -> j in the ISO convention (counter-clockwise from east, y down);
    beta_i = theta_i - phi and beta_j = theta_j - phi, in [0, 360).
    """
    n = len(minutiae)
    empty = np.zeros(0, np.float64)
    if n < 2:
        return empty, empty, empty, empty
    xy = minutiae[:, :2].astype(np.float64)
    delta = xy[None, :, :] - xy[:, None, :]
    dist = np.hypot(delta[..., 0], delta[..., 1])
    usable = (dist >= MIN_DISTANCE) & (dist <= MAX_DISTANCE)
    masked = np.where(usable, dist, np.inf)
    k = min(NEIGHBOURS, n - 1)
    nearest = np.argpartition(masked, k - 1, axis=1)[:, :k] if k < n else np.argsort(masked, axis=1)
    rows = np.repeat(np.arange(n), nearest.shape[1])
    cols = nearest.ravel()
    keep = np.isfinite(masked[rows, cols])
    rows, cols = rows[keep], cols[keep]
    i, j = np.minimum(rows, cols), np.maximum(rows, cols)
    unique = np.unique(i * n + j)
    i, j = unique // n, unique % n
    d = dist[i, j]
    phi = np.degrees(np.arctan2(-(xy[j, 1] - xy[i, 1]), xy[j, 0] - xy[i, 0])) % 360.0
    theta = minutiae[:, 2].astype(np.float64)
    return d, (theta[i] - phi) % 360.0, (theta[j] - phi) % 360.0, phi


def _key(d_bin: np.ndarray, b1_bin: np.ndarray, b2_bin: np.ndarray) -> np.ndarray:
    return ((d_bin * ANGLE_BINS + b1_bin % ANGLE_BINS) * ANGLE_BINS + b2_bin % ANGLE_BINS).astype(np.int64)


def gallery_keys(iso: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The keys of a template's pairs and the quantised direction of each pair's joining line."""
    d, b1, b2, phi = _pairs(_minutiae_for_index(iso))
    step = 360.0 / ANGLE_BINS
    keys = _key(np.minimum((d / DISTANCE_BIN).astype(np.int64), _distance_bins() - 1),
                (b1 / step).astype(np.int64), (b2 / step).astype(np.int64))
    phis = (phi / (360.0 / ROTATION_BINS)).astype(np.int64) % ROTATION_BINS
    return keys, phis.astype(np.uint8)


def probe_keys(iso: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The probe's keys (both orders of each pair, each value also in its nearest neighbouring bin) and phi."""
    d, b1, b2, phi = _pairs(_minutiae_for_index(iso))
    # the reverse order: the line turns by 180 degrees and the two minutiae swap roles
    d = np.concatenate([d, d])
    b1, b2 = np.concatenate([b1, (b2 + 180.0) % 360.0]), np.concatenate([b2, (b1 + 180.0) % 360.0])
    phi = np.concatenate([phi, (phi + 180.0) % 360.0])
    step = 360.0 / ANGLE_BINS
    dq, b1q, b2q = d / DISTANCE_BIN, b1 / step, b2 / step
    base = [np.floor(v).astype(np.int64) for v in (dq, b1q, b2q)]
    other = [np.where(v - np.floor(v) < 0.5, -1, 1) + b for v, b in zip((dq, b1q, b2q), base, strict=True)]
    keys, phis = [], []
    angle_options = (base[1], other[1]) if SOFT_ANGLES else (base[1],)
    for use_d in (base[0], other[0]) if SOFT_DISTANCE else (base[0],):
        for use_b1 in angle_options:
            for use_b2 in (base[2], other[2]) if SOFT_ANGLES else (base[2],):
                valid = (use_d >= 0) & (use_d < _distance_bins())
                keys.append(np.where(valid, _key(np.clip(use_d, 0, _distance_bins() - 1), use_b1, use_b2), -1))
                phis.append(phi)
    all_keys, all_phis = np.concatenate(keys), np.concatenate(phis)
    valid = all_keys >= 0
    phi_bins = (all_phis[valid] / (360.0 / ROTATION_BINS)).astype(np.int64) % ROTATION_BINS
    return all_keys[valid], phi_bins


class FingerprintIndex:
    """A gallery of minutiae templates searchable 1:N: `add`, `remove`, `search`, `verify`.

    Templates are ISO/IEC 19794-2 records (nbis' layout or the standard one) identified by a string id.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._ids: list[str] = []
        self._isos: list[bytes] = []
        self._pair_counts: list[int] = []
        self._alive: list[bool] = []
        self._slot: dict[str, int] = {}
        self._pending_keys: list[np.ndarray] = []
        self._pending_phis: list[np.ndarray] = []
        self._pending_owner: list[np.ndarray] = []
        self._indptr = np.zeros(_key_count() + 1, np.int64)
        self._owners = np.zeros(0, np.int32)
        self._phis = np.zeros(0, np.uint8)

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, template_id: object) -> bool:
        return template_id in self._slot

    def add(self, template_id: str, iso: bytes) -> None:
        """Add (or replace) one template."""
        self.add_many([(template_id, iso)])

    def add_many(self, templates: Iterable[tuple[str, bytes]]) -> int:
        """Add (or replace) templates; returns how many. A malformed record raises `FingerprintRejected`."""
        prepared = []
        for template_id, iso in templates:
            keys, phis = gallery_keys(iso)
            prepared.append((template_id, bytes(iso), keys, phis))
        with self._lock:
            for template_id, iso, keys, phis in prepared:
                if template_id in self._slot:
                    self._remove_locked(template_id)
                slot = len(self._ids)
                self._ids.append(template_id)
                self._isos.append(iso)
                self._pair_counts.append(len(keys))
                self._alive.append(True)
                self._slot[template_id] = slot
                self._pending_keys.append(keys)
                self._pending_phis.append(phis)
                self._pending_owner.append(np.full(len(keys), slot, np.int32))
        return len(prepared)

    def remove(self, template_id: str) -> bool:
        """Remove a template; False when it was not there. Its postings are skipped, then dropped on compaction."""
        with self._lock:
            if template_id not in self._slot:
                return False
            self._remove_locked(template_id)
            return True

    def _remove_locked(self, template_id: str) -> None:
        slot = self._slot.pop(template_id)
        self._alive[slot] = False
        self._isos[slot] = b""

    def memory_bytes(self) -> int:
        """Bytes held by the postings, the CSR pointers and the ISO records (approximate for Python objects)."""
        with self._lock:
            self._compact()
            iso_bytes = sum(len(iso) + 33 for iso in self._isos)
            return int(self._indptr.nbytes + self._owners.nbytes + self._phis.nbytes + iso_bytes
                       + 8 * 4 * len(self._ids) + sum(len(i) + 49 for i in self._ids))

    def _compact(self) -> None:
        """Merge pending additions into the CSR arrays (and drop removed templates' postings)."""
        if not self._pending_keys and len(self._slot) == len(self._ids):
            return
        old_keys = np.repeat(np.arange(_key_count(), dtype=np.int64), np.diff(self._indptr))
        keys = np.concatenate([old_keys, *self._pending_keys])
        owners = np.concatenate([self._owners, *self._pending_owner])
        phis = np.concatenate([self._phis, *self._pending_phis])
        alive = np.asarray(self._alive, bool)
        keep = alive[owners] if len(owners) else np.zeros(0, bool)
        keys, owners, phis = keys[keep], owners[keep], phis[keep]
        order = np.argsort(keys, kind="stable")
        self._owners, self._phis = owners[order].astype(np.int32), phis[order].astype(np.uint8)
        self._indptr = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=_key_count()))]).astype(np.int64)
        self._pending_keys, self._pending_phis, self._pending_owner = [], [], []

    def index_scores(self, probe_iso: bytes) -> np.ndarray:
        """Index score of every slot (removed ones -inf) for a probe."""
        keys, probe_phi = probe_keys(probe_iso)
        with self._lock:
            self._compact()
            slots = len(self._ids)
            starts, ends = self._indptr[keys], self._indptr[keys + 1]
            lengths = ends - starts
            total = int(lengths.sum())
            if total == 0 or slots == 0:
                return np.full(slots, -np.inf)
            # positions of every posting of every looked-up key, without a Python loop
            offsets = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
            positions = np.arange(total, dtype=np.int64) + offsets
            owners = self._owners[positions]
            rotation = (np.repeat(probe_phi, lengths) - self._phis[positions]) % ROTATION_BINS
            votes = np.bincount(owners.astype(np.int64) * ROTATION_BINS + rotation,
                                minlength=slots * ROTATION_BINS).reshape(slots, ROTATION_BINS)
            pair_counts = np.asarray(self._pair_counts, np.float64)
            alive = np.asarray(self._alive, bool)
        smoothed = votes.copy()
        for shift in range(1, ROTATION_SMOOTHING + 1):
            smoothed += np.roll(votes, shift, axis=1) + np.roll(votes, -shift, axis=1)
        scores = smoothed.max(axis=1) / np.sqrt(np.maximum(pair_counts, 1.0))
        scores[~alive] = -np.inf
        return scores

    def search(self, probe_iso: bytes, *, limit: int = 20, rerank: int = DEFAULT_RERANK,
               exclude: Iterable[str] = frozenset()) -> list[Candidate]:
        """The `limit` best candidates: the `rerank` best by index score, re-scored by Bozorth3 and sorted by it.

        With `rerank=0` the candidates are ordered by index score alone (score 0). Excluded ids never appear.
        """
        if limit < 1 or rerank < 0:
            raise ValueError("limit must be at least 1 and rerank at least 0")
        excluded = set(exclude)
        scores = self.index_scores(probe_iso)
        with self._lock:
            for template_id in excluded:
                slot = self._slot.get(template_id)
                if slot is not None:
                    scores[slot] = -np.inf
            finite = int(np.isfinite(scores).sum())
            shortlist_size = min(finite, max(rerank, limit))
            if shortlist_size == 0:
                return []
            top = np.argpartition(-scores, shortlist_size - 1)[:shortlist_size]
            top = top[np.argsort(-scores[top], kind="stable")]
            shortlist = [(self._ids[slot], self._isos[slot], float(scores[slot])) for slot in top]
        if rerank == 0:
            return [Candidate(tid, 0, round(s, 4), rank) for rank, (tid, _, s) in enumerate(shortlist[:limit], 1)]
        matcher = Bozorth3(probe_iso)
        rescored = [(matcher.score(iso), s, tid) for tid, iso, s in shortlist[:rerank]]
        rescored.sort(key=lambda item: (-item[0], -item[1], item[2]))
        return [Candidate(tid, bz, round(s, 4), rank) for rank, (bz, s, tid) in enumerate(rescored[:limit], 1)]

    def verify(self, a_iso: bytes, b_iso: bytes) -> int:
        """1:1 Bozorth3 score of two records."""
        return bozorth3_score(a_iso, b_iso)

    def get(self, template_id: str) -> bytes:
        """The ISO record stored under an id."""
        with self._lock:
            slot = self._slot.get(template_id)
            if slot is None:
                raise KeyError(template_id)
            return self._isos[slot]


__all__ = ["DEFAULT_RERANK", "PROBABLE_MATCH", "Candidate", "FingerprintIndex", "FingerprintRejected"]
