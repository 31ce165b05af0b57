"""The vector indexes a matcher searches, held once per process and kept in step with the record store.

A `VectorIndexHolder` holds the `storage.vector_faiss` index of one indexed space (`IndexedSpace`: an embedding
space, the finding kinds that carry its vectors, and how to read a vector from a finding's data) over every such
finding of one record store, in every case. It is opened once, on first use: loaded from the Locard home
(`<home>/indexes/vectors/<space>`), or rebuilt from the record store when missing or damaged
(`storage.vector_faiss.open_index`). Without a home (unit tests, a bare `crossmatch` call) it lives in memory
only and is built from the record store.

Keeping in step. Each `index(session)` first syncs: the findings created since the watermark (the latest
`created_at` the index has seen, less `SYNC_MARGIN`) are read by id, and those not yet indexed are added; only
their data is read, so a sync costs one index-only query plus the new rows. The margin covers a transaction
that stamped its findings before another's but committed after it. Findings are never updated in place: a
re-analysis deletes them and records new ones (new ids), so removals are found where they matter: a search hit
whose finding no longer exists is removed from the index (`forget`) by the matcher that met it; `rebuild` builds
it again from the record store (done on opening an index saved without a watermark, or for another record
store).

Persistence. `save` writes the index and then, beside it (`<home>/indexes/vector-sync/<space>`), the watermark
and the record store it belongs to; a holder in another process opening the same home loads both, with no
rebuild, and syncs from that watermark. Saving is automatic after a sync once `save_every` vectors were added
or `save_seconds` passed since the last save; a crash loses nothing but the work of re-reading since the
watermark.

Threads. One lock per holder serialises opening, syncing and saving; searches go to the FAISS index, which
is safe to search while it is written (`storage.vector_faiss`). `holder(...)` hands out one holder per (home,
record store, space) in the process.

The home: that of the settings in the cross-matching's context (`workers.crossmatch.match_context`, set by the
dispatcher's `take`); without settings (a bare `crossmatch` call, unit tests) holders are in memory.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from storage.index_files import IndexCorrupt, index_directory, read_index, write_index
from storage.tables import Finding
from storage.vector_faiss import FaissVectorIndex, IndexSettings, open_index
from storage.vectors import EmbeddingSpace, VectorLike
from workers.crossmatch import match_context

log = logging.getLogger("locard.matchers")

SYNC_MARGIN = dt.timedelta(minutes=10)
SYNC_FILE = "sync.json"
_BATCH = 2_000

def current_home() -> Path | None:
    """The Locard home of the cross-matching running now (`workers.crossmatch.match_context`), or None."""
    settings = match_context().settings
    return settings.home if settings is not None else None


@dataclass(frozen=True)
class IndexedSpace:
    """What a holder indexes: the vectors of `space` read by `vector` from findings of the `kinds`."""

    space: EmbeddingSpace
    kinds: frozenset[str]
    vector: Callable[[dict[str, Any]], VectorLike | None]  # None: this finding carries no vector of the space


def database_identity(session: Session) -> str:
    """The record store a session reaches, as a string without its password."""
    return session.get_bind().engine.url.render_as_string(hide_password=True)


class VectorIndexHolder:
    """One space's index over one record store's findings, opened once and kept in step (see the module)."""

    def __init__(self, indexed: IndexedSpace, *, home: Path | None, database: str,
                 settings: IndexSettings | None = None, save_every: int = 1_000, save_seconds: float = 60.0) -> None:
        self.indexed = indexed
        self.home = home
        self.database = database
        self.settings = settings
        self.save_every = save_every
        self.save_seconds = save_seconds
        self.rebuilds = 0  # how often the index was built from the whole record store
        self._lock = threading.Lock()
        self._index: FaissVectorIndex | None = None
        self._watermark: dt.datetime | None = None
        self._unsaved = 0
        self._saved_at = time.monotonic()
        self._without_vector: dict[str, dt.datetime] = {}  # read in the sync window and holding no vector

    @property
    def origin(self) -> str:
        """How the index came to be: "loaded", "rebuilt", or "closed" before the first use."""
        return self._index.origin if self._index is not None else "closed"

    @property
    def watermark(self) -> dt.datetime | None:
        return self._watermark

    def index(self, session: Session) -> FaissVectorIndex:
        """The index, opened on first use and synced with the findings recorded since the last call."""
        with self._lock:
            if self._index is None:
                self._open(session)
            self._sync(session)
            assert self._index is not None
            return self._index

    def forget(self, ids: Iterable[str]) -> int:
        """Remove findings that no longer exist (replaced by re-analysis); how many were indexed."""
        with self._lock:
            if self._index is None:
                return 0
            removed = self._index.remove(ids=list(ids))
            self._unsaved += removed
            return removed

    def rebuild(self, session: Session) -> None:
        """Build the index again from every finding in the record store (a maintenance step; the index is only
        a cache of the record store)."""
        with self._lock:
            if self._index is None:
                self._open(session)
            else:
                self._rebuild(session)

    def save(self) -> None:
        """Write the index, then its watermark (nothing without a home)."""
        with self._lock:
            self._save()

    # under the lock

    def _open(self, session: Session) -> None:
        newest: list[dt.datetime] = []
        source = functools.partial(self._source, session, newest)
        if self.home is None:
            index = FaissVectorIndex(self.indexed.space, settings=self.settings)
            index.rebuild(source())
            index.origin = "rebuilt"
            self._index, self._watermark = index, max(newest, default=None)
            return
        index = open_index(self.home, self.indexed.space, source=source, settings=self.settings)
        self._index = index
        if index.origin == "rebuilt":
            self._watermark = max(newest, default=None)
            self._save_watermark()
            return
        saved = self._read_watermark()
        if saved is None:
            log.info("vector index %s: saved without a watermark of this record store; rebuilding it",
                     self.indexed.space.name)
            self._rebuild(session)
        else:
            self._watermark = saved

    def _sync(self, session: Session) -> None:
        assert self._index is not None
        since = None if self._watermark is None else self._watermark - SYNC_MARGIN
        query = select(Finding.id, Finding.created_at).where(Finding.kind.in_(sorted(self.indexed.kinds)))
        if since is not None:
            query = query.where(Finding.created_at >= since)
        recent = session.execute(query).tuples().all()
        if not recent:
            return
        index, without = self._index, self._without_vector
        for finding_id, created_at in list(without.items()):
            if since is not None and created_at < since:
                del without[finding_id]  # out of the window: never read again
        new = [finding_id for finding_id, _ in recent if finding_id not in index and finding_id not in without]
        added = self._add(session, new)
        read = set(new)
        without.update((finding_id, created_at) for finding_id, created_at in recent
                       if finding_id in read and finding_id not in index)
        self._watermark = max([created_at for _, created_at in recent] + ([self._watermark] if self._watermark
                                                                           else []))
        self._unsaved += added
        due = self._unsaved >= self.save_every or time.monotonic() - self._saved_at >= self.save_seconds
        if self._unsaved and due:
            self._save()

    def _rebuild(self, session: Session) -> None:
        assert self._index is not None
        newest: list[dt.datetime] = []
        self._index.rebuild(self._source(session, newest))
        self._watermark = max(newest, default=None)
        self._index.origin = "rebuilt"
        self._save()

    def _add(self, session: Session, finding_ids: Sequence[str]) -> int:
        assert self._index is not None
        added = 0
        for start in range(0, len(finding_ids), _BATCH):
            batch = finding_ids[start:start + _BATCH]
            rows = session.execute(select(Finding.id, Finding.data).where(Finding.id.in_(batch))).tuples()
            pairs = [(finding_id, vector) for finding_id, data in rows
                     if (vector := self.indexed.vector(dict(data))) is not None]
            if pairs:
                self._index.add(ids=[finding_id for finding_id, _ in pairs], vectors=[v for _, v in pairs])
                added += len(pairs)
        return added

    def _source(self, session: Session, newest: list[dt.datetime]) -> Iterator[tuple[str, VectorLike]]:
        """Every finding of the indexed kinds that carries a vector, read in batches (a full build; the latest
        `created_at` read is left in `newest`)."""
        self.rebuilds += 1
        query = select(Finding.id, Finding.created_at, Finding.data).where(
            Finding.kind.in_(sorted(self.indexed.kinds)))
        latest: dt.datetime | None = None
        for finding_id, created_at, data in session.execute(query.execution_options(yield_per=_BATCH)).tuples():
            latest = created_at if latest is None or created_at > latest else latest
            vector = self.indexed.vector(dict(data))
            if vector is not None:
                yield finding_id, vector
        if latest is not None:
            newest.append(latest)

    def _save(self) -> None:
        if self.home is None or self._index is None:
            self._unsaved = 0
            return
        self._index.save()
        self._save_watermark()
        self._unsaved, self._saved_at = 0, time.monotonic()

    def _sync_directory(self) -> Path:
        assert self.home is not None
        return index_directory(self.home, "vector-sync", self.indexed.space.name)

    def _save_watermark(self) -> None:
        state = {"database": self.database,
                 "watermark": self._watermark.isoformat() if self._watermark is not None else None}
        write_index(self._sync_directory(), files={SYNC_FILE: json.dumps(state).encode()},
                    meta={"space": self.indexed.space.name})

    def _read_watermark(self) -> dt.datetime | None:
        """The saved watermark, when it belongs to this record store (None: rebuild)."""
        try:
            _, files = read_index(self._sync_directory())
            state = json.loads(files[SYNC_FILE])
            if state.get("database") != self.database or not state.get("watermark"):
                return None
            return dt.datetime.fromisoformat(state["watermark"])
        except (IndexCorrupt, KeyError, ValueError, TypeError, AttributeError):
            return None


_holders: dict[tuple[str, str, str], VectorIndexHolder] = {}
_holders_lock = threading.Lock()


def holder(indexed: IndexedSpace, *, session: Session, home: Path | None = None) -> VectorIndexHolder:
    """The process's holder of `indexed` for the session's record store under `home` (default: the home in
    force, `current_home()`)."""
    home = home if home is not None else current_home()
    database = database_identity(session)
    key = (str(home) if home is not None else "", database, indexed.space.name)
    with _holders_lock:
        found = _holders.get(key)
        if found is None or found.indexed != indexed:
            found = _holders[key] = VectorIndexHolder(indexed, home=home, database=database)
        return found


def drop_holders() -> None:
    """Forget every holder of this process (their saved files stay): the next use opens them again."""
    with _holders_lock:
        _holders.clear()
