"""The audit log (Directive (EU) 2016/680, Art. 25) and the HMAC chains that make it and custody tamper-evident.

Every collection, alteration, consultation, disclosure, combination and erasure of personal data is written to
`audit_log`; the database refuses updates and deletes of it, as it does for `custody_events`. Both tables are
also hash chains: each row carries `prev_hash` (the previous row's hash) and

    entry_hash = HMAC-SHA256(chain_key, prev_hash || canonical JSON of the row's content, its id included)

so an edit, a deletion, a reordering or a forged row is found by `verify` even when someone with database rights
removed the triggers first. The key is not kept in the database.

Verification fails closed. Only custody events recorded before migration 0003 may lack hashes, and only as a
prefix: `chain_origins` (written once by migration 0006) records the last such id, and every later row must be
chained; the audit log has no unchained rows at all. A head at zeros with chained rows present, a row after the
origin without hashes, a missing origin or head: each is a fault. What the database alone cannot show (its newest
rows deleted and the head rewound, everything deleted, stripped, or an older backup restored, the origin moved)
is found against `anchors`: signed checkpoints of the heads kept outside the record store (`storage.checkpoints`).
The chain must still pass through each checkpointed entry with exactly its hash and must not end before it.

Rows are chained at flush time by `storage.chaining`, which `storage.db.session_factory` installs on every
session factory it builds (importing this module registers nothing).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar, cast

from sqlalchemy import JSON, Integer, String, Table, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.tables import Base, CustodyEvent, utcnow

ACTIONS = ("collection", "alteration", "consultation", "disclosure", "combination", "erasure", "authentication")
CHAINS = ("audit", "custody")
GENESIS_HASH = "0" * 64
VERIFY_BATCH = 5000


class AuditEntry(Base):
    """One logged processing operation on personal data. Append-only: the database refuses updates and deletes."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # assigned by the chain
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(200), index=True)
    actor_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    action: Mapped[str] = mapped_column(String(20))  # one of ACTIONS
    resource: Mapped[str] = mapped_column(String(200))  # "GET /api/v1/evidence/{evidence_id}", "evidence", ...
    resource_id: Mapped[str | None] = mapped_column(String(200))
    case_id: Mapped[str | None] = mapped_column(String(36), index=True)  # no foreign key: the log outlives data
    person: Mapped[str | None] = mapped_column(String(200), index=True)  # the data subject, when known
    purpose_case: Mapped[str | None] = mapped_column(String(64))
    justification: Mapped[str | None] = mapped_column(Text)
    recipients: Mapped[list[str]] = mapped_column(JSON, default=list)
    outcome: Mapped[str] = mapped_column(String(20), default="ok")  # "ok", "denied", "error"
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64))


class ChainHead(Base):
    """The last row of one hash chain ("audit" or "custody"); updated, under lock, with every append."""

    __tablename__ = "chain_heads"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64), default=GENESIS_HASH)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ChainOrigin(Base):
    """Where one chain begins: its ids up to `unchained_through` predate it (custody recorded before migration
    0003; always 0 for the audit log). Written once by migration 0006; the database refuses updates and deletes."""

    __tablename__ = "chain_origins"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    unchained_through: Mapped[int] = mapped_column(Integer, default=0)


# The hashed content of each chain, in this fixed list rather than read from the table: adding a column must not
# silently change the hash of every row written before it (tests check that these cover every column).
AUDIT_FIELDS = ("id", "at", "actor", "actor_roles", "action", "resource", "resource_id", "case_id", "person",
                "purpose_case", "justification", "recipients", "outcome", "detail")
CUSTODY_FIELDS = ("id", "evidence_id", "at", "actor", "action", "detail")
_HEADS = cast(Table, ChainHead.__table__)
_TABLES: dict[str, tuple[Table, tuple[str, ...]]] = {
    "audit": (cast(Table, AuditEntry.__table__), AUDIT_FIELDS),
    "custody": (cast(Table, CustodyEvent.__table__), CUSTODY_FIELDS),
}


# --- hashing ------------------------------------------------------------------------------------------------------


def _utc_iso(value: dt.datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetimes are not chained; use UTC")
    return value.astimezone(dt.UTC).isoformat(timespec="microseconds")


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _utc_iso(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def plain_json(value: Any) -> Any:
    """`value` as it reads back from a JSON column (tuples as lists, datetimes as UTC ISO strings, keys as text)."""
    return json.loads(json.dumps(value, default=_json_default, ensure_ascii=False))


def canonical(fields: Mapping[str, Any]) -> str:
    """The canonical JSON that is hashed: sorted keys, no spaces, UTF-8 text, datetimes as UTC ISO strings."""
    prepared = {name: _utc_iso(value) if isinstance(value, dt.datetime) else value for name, value in fields.items()}
    return json.dumps(prepared, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(key: bytes, prev_hash: str, fields: Mapping[str, Any]) -> str:
    """HMAC-SHA256(key, prev_hash || canonical(fields)), in hex."""
    return hmac.new(key, prev_hash.encode("ascii") + canonical(fields).encode("utf-8"), hashlib.sha256).hexdigest()


# --- writing and reading the log --------------------------------------------------------------------------------


def record(session: Session, *, actor: str, roles: Sequence[str], action: str, resource: str,
           resource_id: str | None = None, case_id: str | None = None, person: str | None = None,
           purpose_case: str | None = None, justification: str | None = None, recipients: Sequence[str] = (),
           outcome: str = "ok", detail: dict[str, Any] | None = None) -> AuditEntry:
    """Log one operation: who (`actor`, `roles`) did what (`action`, one of ACTIONS) to which `resource`.

    The entry is added to `session`; it is chained (id, hashes) when the session flushes (a session from
    `storage.db.session_factory`), and kept only if the session's transaction commits.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; expected one of {', '.join(ACTIONS)}")
    entry = AuditEntry(at=utcnow(), actor=_clean(actor), actor_roles=_clean(list(roles)), action=action,
                       resource=_clean(resource), resource_id=_clean(resource_id), case_id=_clean(case_id),
                       person=_clean(person), purpose_case=_clean(purpose_case), justification=_clean(justification),
                       recipients=_clean(list(recipients)), outcome=outcome, detail=_clean(dict(detail or {})))
    session.add(entry)
    return entry


T = TypeVar("T")


def _clean(value: T) -> T:
    """`value` with every NUL in its strings written as U+FFFD: what a request asked for is logged even when it
    held a character the record store cannot keep (PostgreSQL text and JSON hold no NUL)."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")  # type: ignore[return-value]
    if isinstance(value, list):
        return [_clean(item) for item in value]  # type: ignore[return-value]
    if isinstance(value, dict):
        return {_clean(key): _clean(item) for key, item in value.items()}  # type: ignore[return-value]
    return value


def query(session: Session, *, actor: str | None = None, case_id: str | None = None, person: str | None = None,
          since: dt.datetime | None = None, until: dt.datetime | None = None, action: str | None = None,
          offset: int = 0, limit: int = 100) -> Sequence[AuditEntry]:
    """Audit entries matching every given filter, oldest first; the period is `since <= at < until`."""
    statement = select(AuditEntry)
    if actor is not None:
        statement = statement.where(AuditEntry.actor == actor)
    if case_id is not None:
        statement = statement.where(AuditEntry.case_id == case_id)
    if person is not None:
        statement = statement.where(AuditEntry.person == person)
    if since is not None:
        statement = statement.where(AuditEntry.at >= since)
    if until is not None:
        statement = statement.where(AuditEntry.at < until)
    if action is not None:
        statement = statement.where(AuditEntry.action == action)
    return session.scalars(statement.order_by(AuditEntry.id).offset(max(offset, 0)).limit(max(limit, 0))).all()


# --- verification ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """A point the chain must still pass through, from a signed checkpoint kept outside the record store."""

    name: str  # says which checkpoint, for the report
    last_id: int
    last_hash: str
    unchained: int  # the chain's origin when the checkpoint was taken


@dataclass
class VerifyResult:
    """The outcome of checking one chain: `checked` chained rows were sound up to `first_bad_id` (if any)."""

    chain: str
    ok: bool
    checked: int
    unchained: int  # rows written before the chain began (custody events older than migration 0003)
    first_bad_id: int | None
    reason: str | None
    checkpoint: str | None = None  # the newest checkpoint the chain was checked against, if any

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Walk:
    """`verify`'s result, and where the verified chain ends (what a new checkpoint records)."""

    result: VerifyResult
    last_id: int
    last_hash: str
    origin: int


def _rows(session: Session, table: Table, fields: tuple[str, ...], after: int, limit: int) -> Sequence[Any]:
    columns = [table.c[name] for name in fields] + [table.c.prev_hash, table.c.entry_hash]
    return session.execute(select(*columns).where(table.c.id > after).order_by(table.c.id).limit(limit)).all()


def _head(session: Session, chain: str) -> tuple[int, str] | None:
    heads = _HEADS
    row = session.execute(select(heads.c.last_id, heads.c.last_hash).where(heads.c.name == chain)).first()
    return None if row is None else (int(row.last_id), str(row.last_hash))


def origin(session: Session, *, chain: str) -> int | None:
    """The last id of `chain` that predates it (0: none), as migration 0006 recorded it; None if missing."""
    origins = cast(Table, ChainOrigin.__table__)
    value = session.execute(select(origins.c.unchained_through).where(origins.c.name == chain)).scalar()
    return None if value is None else int(value)


def verify(session: Session, *, chain: str = "audit", key: bytes, batch_size: int = VERIFY_BATCH,
           anchors: Sequence[Anchor] = ()) -> VerifyResult:
    """Recompute every hash of `chain` ("audit" or "custody") in id order, and check its head and `anchors`.

    Reads `batch_size` rows at a time, so chains of millions of rows are checked in constant memory. The first
    fault is reported: a missing id (a deleted row), a row that does not link to the previous one (rows removed,
    inserted or reordered), a row whose content does not match its hash (edited, or forged without the key), a
    row after the chain's origin without hashes (stripped), a head that does not point at the last row (the
    last rows deleted), or a chain that no longer passes through a checkpointed entry or ends before it
    (truncated, emptied, or an older copy of the record store restored).
    """
    return walk(session, chain=chain, key=key, batch_size=batch_size, anchors=anchors).result


def walk(session: Session, *, chain: str, key: bytes, batch_size: int = VERIFY_BATCH,
         anchors: Sequence[Anchor] = (), resume: Anchor | None = None) -> Walk:
    """`verify`, also saying where the chain ends; with `resume`, only the entries after that anchor are read."""
    if chain not in _TABLES:
        raise ValueError(f"unknown chain {chain!r}; expected one of {', '.join(CHAINS)}")
    table, fields = _TABLES[chain]
    start = origin(session, chain=chain)
    base = start or 0
    checked = unchained = 0
    prev_id, prev_hash = 0, GENESIS_HASH
    newest = max([*anchors, *([resume] if resume else [])], key=lambda a: a.last_id, default=None)
    looked_again = False  # whether the walk went back for rows appended after the head was read

    def fault(first_bad_id: int | None, reason: str) -> Walk:
        result = VerifyResult(chain, False, checked, unchained, first_bad_id, reason,
                              newest.name if newest else None)
        return Walk(result, prev_id, prev_hash, base)

    if start is None:
        return fault(None, f"the {chain} chain has no recorded origin: it was removed (or the record store is "
                           "not migrated)")
    if chain == "audit" and start != 0:
        return fault(None, f"the audit chain's origin says entries up to {start} predate it, but every audit "
                           "entry is chained: the origin was changed")
    for anchor in [*anchors, *([resume] if resume else [])]:
        if anchor.unchained != start:
            return fault(None, f"{anchor.name} records that entries up to {anchor.unchained} predate the chain, "
                               f"but the record store now says {start}: the chain's origin was changed")
    expected = {anchor.last_id: anchor for anchor in anchors if anchor.last_id > start}
    if resume is not None and resume.last_id > start:
        found = session.execute(select(table.c.entry_hash).where(table.c.id == resume.last_id)).first()
        if found is None or found.entry_hash != resume.last_hash:
            return fault(resume.last_id, f"entry {resume.last_id} is missing or differs from {resume.name}: "
                                         "the chain was rewritten, or an older copy of the record store restored")
        prev_id, prev_hash = resume.last_id, resume.last_hash

    while True:
        rows = _rows(session, table, fields, prev_id, batch_size)
        for row in rows:
            row_id = int(row.id)
            if row_id <= start:
                if row.prev_hash is not None or row.entry_hash is not None:
                    return fault(row_id, f"entry {row_id} carries a hash although entries up to {start} "
                                         "predate the chain")
                unchained += 1  # written before the chain existed (custody older than migration 0003)
                prev_id = row_id
                continue
            prev_id = max(prev_id, start)  # ids before the chain may have gaps; the chain starts after them
            if row.prev_hash is None or row.entry_hash is None:
                return fault(row_id, f"entry {row_id} carries no hash, but only entries up to {start} predate "
                                     "the chain: it was written outside Locard, or chained entries were "
                                     "stripped of their hashes")
            if row_id != prev_id + 1:
                after = f"entry {prev_id}" if prev_id else "the start of the chain"
                span = f"entry {prev_id + 1} is missing" if row_id == prev_id + 2 else \
                    f"entries {prev_id + 1} to {row_id - 1} are missing"
                return fault(prev_id + 1, f"{span}: entry {row_id} follows {after} (rows were deleted)")
            if row.prev_hash != prev_hash:
                before = f"entry {prev_id}" if prev_id > start else "the start of the chain"
                return fault(row_id, f"entry {row_id} does not link to {before}: its previous-entry hash differs "
                                     "(entries were removed, inserted or reordered)")
            digest = entry_hash(key, row.prev_hash, {name: getattr(row, name) for name in fields})
            if not hmac.compare_digest(digest, str(row.entry_hash)):
                return fault(row_id, f"entry {row_id} was altered: its content does not match its hash "
                                     "(or it was written with another key)")
            pinned = expected.get(row_id)
            if pinned is not None and not hmac.compare_digest(pinned.last_hash, str(row.entry_hash)):
                return fault(row_id, f"entry {row_id} differs from {pinned.name}: the chain was rewritten, or an "
                                     "older copy of the record store restored")
            checked += 1
            prev_id, prev_hash = row_id, str(row.entry_hash)
        if rows:
            looked_again = False
        if len(rows) == batch_size:
            continue
        head = _head(session, chain)
        if head is None:
            return fault(None, f"the {chain} chain has no head row")
        if head[0] > prev_id and not looked_again:
            looked_again = True  # rows may have been appended (and the head moved) while we walked: read on
            continue
        break
    if newest is not None and newest.last_id > prev_id:
        end = f"ends at entry {prev_id}" if prev_id else "is empty"
        return fault(prev_id + 1, f"the chain {end}, but {newest.name} records entry {newest.last_id}: entries "
                                  "were deleted, or an older copy of the record store restored")
    last_id, last_hash = head
    if last_id != prev_id:
        end = f"ends at entry {prev_id}" if prev_id else "is empty"
        if last_id > prev_id:
            lost = "the last entry was" if last_id == prev_id + 1 else f"the last {last_id - prev_id} entries were"
            return fault(prev_id + 1, f"the chain {end} but its head records entry {last_id}: {lost} deleted")
        return fault(last_id + 1, f"the chain {end} but its head records entry {last_id}: "
                                  "entries were added outside Locard")
    if last_hash != prev_hash and prev_id <= start:
        return fault(prev_id or None, f"no entry up to {prev_id} carries a hash, but the head records a chained "
                                      f"entry {last_id}: chained entries were deleted or stripped of their hashes")
    if last_hash != prev_hash:
        return fault(prev_id or None, f"the head's hash does not match entry {prev_id}: the last entry was replaced")
    result = VerifyResult(chain, True, checked, unchained, None, None, newest.name if newest else None)
    return Walk(result, prev_id, prev_hash, base)


def verify_all(session: Session, *, key: bytes) -> list[VerifyResult]:
    """`verify` of the audit log and of the chain of custody, without checkpoints (`storage.checkpoints.verify`)."""
    return [verify(session, chain=chain, key=key) for chain in CHAINS]
