"""The image matcher's indexes in this process: PDQ hashes and scene embeddings of every recorded image.

`ImageIndexes` holds a `storage.pdq_index.PdqIndex` of the reliable "hash.pdq" findings (quality >= 50) and a
`storage.vector_faiss.FaissVectorIndex` of the "similarity.embedding" findings (space `SCENE`), both keyed by
finding id, under the Locard home (`<home>/indexes/pdq/pdq`, `<home>/indexes/vectors/scene-768`). They are opened
once per process and database, each rebuilt from the record store when its files are missing or damaged, then
kept in step with the record store before every lookup (`synced`):

* findings created since the watermark (the newest `created_at` seen, less `OVERLAP`, since a transaction can
  commit a finding created a little earlier) are added;
* when the record store then holds another number of findings of a kind than the holder knows (a re-analysis
  replaced findings, or a slow commit slipped under the watermark), the ids are reconciled: missing ones added,
  gone ones removed. Two COUNT queries when nothing changed.

Every finding id of the two kinds is remembered (`seen`), unreliable hashes and unusable vectors included, so the
counts compare. An index loaded from disk that holds ids the record store no longer has is rebuilt. Changes are
saved at most every `SAVE_EVERY` seconds. One lock serialises syncing; the indexes themselves are thread-safe
for searches. Moving this behind an actor later keeps the same `synced` call.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from storage.pdq_index import PdqIndex, open_pdq_index
from storage.tables import Finding
from storage.vector_faiss import FaissVectorIndex, open_index
from storage.vectors import SCENE, DimensionMismatch, InvalidVector, VectorLike

log = logging.getLogger("locard.matchers.images")

PDQ_KIND, EMBEDDING_KIND = "hash.pdq", "similarity.embedding"
KINDS = (PDQ_KIND, EMBEDDING_KIND)
OVERLAP = dt.timedelta(minutes=5)
SAVE_EVERY = 60.0  # seconds between saves of changed indexes
BATCH = 2_000


def reliable_hash(data: dict[str, Any]) -> str | None:
    """The PDQ hex of a "hash.pdq" finding's data when the analyzer judged it reliable (quality >= 50)."""
    value = data.get("pdq")
    return value if data.get("reliable") is True and isinstance(value, str) and len(value) == 64 else None


def scene_vector(data: dict[str, Any]) -> list[float] | None:
    """The scene embedding of a "similarity.embedding" finding's data, when it has the space's dimension."""
    vector = data.get("vector")
    return vector if isinstance(vector, list) and len(vector) == SCENE.dimension else None


@dataclass
class ImageIndexes:
    """One process's PDQ and scene indexes, for one database and Locard home at a time."""

    url: str = ""
    home: Path | None = None
    pdq: PdqIndex | None = None
    scene: FaissVectorIndex | None = None
    watermark: dt.datetime | None = None
    seen: dict[str, set[str]] = field(default_factory=lambda: {kind: set() for kind in KINDS})
    reconciles: int = 0  # full id comparisons (for tests and logs)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _dirty: bool = False
    _saved_at: float = 0.0

    def synced(self, session: Session, *, home: Path) -> tuple[PdqIndex, FaissVectorIndex]:
        """Both indexes, caught up with what `session` sees of the record store."""
        url = session.get_bind().engine.url.render_as_string(hide_password=True)
        with self.lock:
            if self.pdq is None or self.scene is None or url != self.url or Path(home) != self.home:
                self._open(session, url=url, home=Path(home))
            else:
                self._catch_up(session)
            assert self.pdq is not None and self.scene is not None
            self._save_if_due()
            return self.pdq, self.scene

    # opening

    def _open(self, session: Session, *, url: str, home: Path) -> None:
        self.url, self.home, self.watermark = url, home, None
        self.seen = {kind: set() for kind in KINDS}
        self.pdq = open_pdq_index(home, source=lambda: _hashes(session))
        self.scene = open_index(home, SCENE, source=lambda: _vectors(session))
        self.watermark = session.scalar(select(func.max(Finding.created_at)).where(Finding.kind.in_(KINDS)))
        if not self._reconcile(session, trust_loaded=True):
            log.info("image indexes under %s hold findings the record store no longer has: rebuilding", home)
            self.seen = {kind: set() for kind in KINDS}
            self.pdq.rebuild(_hashes(session))
            self.scene.rebuild(_vectors(session))
            self._reconcile(session, trust_loaded=True)
            self._dirty = True
        self._saved_at = time.monotonic()

    # keeping in step

    def _catch_up(self, session: Session) -> None:
        query = select(Finding.id, Finding.kind, Finding.data, Finding.created_at).where(Finding.kind.in_(KINDS))
        if self.watermark is not None:
            query = query.where(Finding.created_at >= _aware(self.watermark) - OVERLAP)
        for batch in session.execute(query.order_by(Finding.created_at)).tuples().partitions(BATCH):
            fresh = [(fid, kind, data) for fid, kind, data, _ in batch if fid not in self.seen[kind]]
            self._add(fresh)
            newest = _aware(batch[-1][3])
            self.watermark = newest if self.watermark is None else max(_aware(self.watermark), newest)
        counts = dict(session.execute(select(Finding.kind, func.count()).where(Finding.kind.in_(KINDS))
                                      .group_by(Finding.kind)).tuples().all())
        if any(counts.get(kind, 0) != len(self.seen[kind]) for kind in KINDS):
            self._reconcile(session, trust_loaded=False)

    def _reconcile(self, session: Session, *, trust_loaded: bool) -> bool:
        """Make `seen` and the indexes hold exactly the record store's findings. With `trust_loaded` (just
        opened), ids already in an index are taken as they are; returns False when an index holds ids the record
        store does not (it must be rebuilt)."""
        assert self.pdq is not None and self.scene is not None
        self.reconciles += 1
        indexes: dict[str, PdqIndex | FaissVectorIndex] = {PDQ_KIND: self.pdq, EMBEDDING_KIND: self.scene}
        for kind in KINDS:
            present = set(session.scalars(select(Finding.id).where(Finding.kind == kind)))
            index = indexes[kind]
            if trust_loaded:
                known = {fid for fid in present if fid in index}
                if len(known) != len(index):
                    return False
                self.seen[kind] |= known
            missing = sorted(present - self.seen[kind])
            for start in range(0, len(missing), BATCH):
                chunk = missing[start:start + BATCH]
                rows = session.execute(select(Finding.id, Finding.kind, Finding.data)
                                       .where(Finding.id.in_(chunk))).tuples()
                self._add(list(rows))
            gone = self.seen[kind] - present
            if gone:
                index.remove(ids=gone)
                self.seen[kind] -= gone
                self._dirty = True
        return True

    def _add(self, rows: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        assert self.pdq is not None and self.scene is not None
        hashes: dict[str, str] = {}
        vectors: dict[str, list[float]] = {}
        for fid, kind, data in rows:
            self.seen[kind].add(fid)
            if kind == PDQ_KIND and (value := reliable_hash(data or {})) is not None:
                hashes[fid] = value
            elif kind == EMBEDDING_KIND and (vector := scene_vector(data or {})) is not None:
                vectors[fid] = vector
        if hashes:
            self.pdq.add(ids=list(hashes), hashes=list(hashes.values()))
            self._dirty = True
        for fid, vector in vectors.items():  # one by one: a malformed vector must not drop the batch
            try:
                self.scene.add(ids=[fid], vectors=[vector])
                self._dirty = True
            except (DimensionMismatch, InvalidVector) as exc:
                log.warning("scene embedding of finding %s not indexed: %s", fid, exc)

    def _save_if_due(self) -> None:
        if self._dirty and time.monotonic() - self._saved_at >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Write both indexes under the home now (they are rebuilt from the record store if this is lost)."""
        if self.pdq is not None and self.scene is not None:
            self.pdq.save()
            self.scene.save()
            self._dirty, self._saved_at = False, time.monotonic()


def _aware(moment: dt.datetime) -> dt.datetime:
    """SQLite hands back naive UTC datetimes; PostgreSQL aware ones."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _rows(session: Session, kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    query = select(Finding.id, Finding.data).where(Finding.kind == kind).order_by(Finding.id)
    for batch in session.execute(query).tuples().partitions(BATCH):
        yield from batch


def _hashes(session: Session) -> Iterator[tuple[str, str]]:
    """The record store's reliable PDQ hashes, for rebuilding the PDQ index."""
    for fid, data in _rows(session, PDQ_KIND):
        if (value := reliable_hash(data or {})) is not None:
            yield fid, value


def _vectors(session: Session) -> Iterator[tuple[str, VectorLike]]:
    """The record store's scene embeddings, for rebuilding the scene index."""
    for fid, data in _rows(session, EMBEDDING_KIND):
        if (vector := scene_vector(data or {})) is not None:
            yield fid, vector


_HOLDER = ImageIndexes()


def image_indexes() -> ImageIndexes:
    """This process's image indexes (one per process, shared by every crossmatch job)."""
    return _HOLDER
