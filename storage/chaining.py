"""Chaining audit and custody rows at flush time: the writing half of the HMAC chains (`storage.audit` verifies).

`install(factory)` attaches a `before_flush` listener to one session factory; `storage.db.session_factory`
calls it for every factory it builds, so each session Locard makes chains its rows, and nothing is registered
on SQLAlchemy's global `Session` (a session made any other way chains nothing: the database then refuses its
audit entries, which need hashes, and `storage.audit.verify` reports its unchained custody events).

Per flush the listener locks the two chain heads (PostgreSQL: `SELECT ... FOR UPDATE`, in name order, both heads
always so two transactions can never wait on each other; SQLite: an `UPDATE` of the heads, which takes the
database write lock), gives each new row the id `head.last_id + 1` (gapless, so a deleted row shows as a gap),
computes its hashes and moves the heads on. The locks are held until the transaction ends, so chained writers
serialise: keep transactions that write audit or custody rows short.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Table, event, inspect, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import InstanceState, Session, sessionmaker

from storage.audit import AUDIT_FIELDS, CHAINS, CUSTODY_FIELDS, AuditEntry, ChainHead, entry_hash, plain_json
from storage.settings import DEVELOPMENT_AUDIT_KEY
from storage.tables import CustodyEvent, utcnow

_HEADS = cast(Table, ChainHead.__table__)
_FIELDS = {"audit": AUDIT_FIELDS, "custody": CUSTODY_FIELDS}


INSTALLED = "_locard_chained"  # set on a factory once its sessions chain


def install(factory: sessionmaker[Session]) -> None:
    """Chain the audit and custody rows of every session `factory` makes, with `factory.kw["info"]["chain_key"]`
    (the development key when it has none). Installing twice is harmless.

    Whether it is installed is marked on the factory itself, not asked of `event.contains`: SQLAlchemy's event
    registry keys listeners by `id()` of the session class each sessionmaker makes, and keeps the key after that
    class is collected, so a new factory whose class reused the address looked installed and was not.
    """
    if getattr(factory, INSTALLED, False):
        return
    event.listen(factory, "before_flush", _chain_new_rows)
    setattr(factory, INSTALLED, True)


def installed(factory: sessionmaker[Session]) -> bool:
    """Whether the sessions of `factory` chain their audit and custody rows."""
    return bool(getattr(factory, INSTALLED, False))


def _lock_heads(connection: Connection) -> dict[str, tuple[int, str]]:
    """Lock both chain heads until the transaction ends, and read them."""
    heads = _HEADS
    if connection.dialect.name == "sqlite":
        # The first write of a transaction takes SQLite's database lock (waiting out the busy timeout), so the
        # read below cannot be overtaken by another writer.
        connection.execute(update(heads).where(heads.c.name.in_(CHAINS)).values(last_id=heads.c.last_id))
        query = select(heads.c.name, heads.c.last_id, heads.c.last_hash).where(heads.c.name.in_(CHAINS))
    else:
        query = (select(heads.c.name, heads.c.last_id, heads.c.last_hash).where(heads.c.name.in_(CHAINS))
                 .order_by(heads.c.name).with_for_update())
    found = {row.name: (int(row.last_id), str(row.last_hash)) for row in connection.execute(query)}
    missing = [name for name in CHAINS if name not in found]
    if missing:
        raise RuntimeError(f"chain head(s) {', '.join(missing)} missing: the record store is not migrated")
    return found


def _prepare(obj: AuditEntry | CustodyEvent) -> None:
    """Give the row the values its defaults would give it, normalised so they hash the same after a round-trip."""
    if obj.at is None:
        obj.at = utcnow()
    obj.detail = plain_json(obj.detail if obj.detail is not None else {})
    if isinstance(obj, AuditEntry):
        obj.actor_roles = plain_json(list(obj.actor_roles or ()))
        obj.recipients = plain_json(list(obj.recipients or ()))
        if obj.outcome is None:
            obj.outcome = "ok"


def _chain_new_rows(session: Session, _flush_context: Any, _instances: Any) -> None:
    pending = [obj for obj in session.new if isinstance(obj, AuditEntry | CustodyEvent)]
    if not pending:
        return
    pending.sort(key=lambda obj: cast(InstanceState[Any], inspect(obj)).insert_order or 0)
    key = session.info.get("chain_key") or DEVELOPMENT_AUDIT_KEY.encode()
    connection = session.connection()
    heads = _lock_heads(connection)
    moved: set[str] = set()
    for obj in pending:
        chain = "audit" if isinstance(obj, AuditEntry) else "custody"
        _prepare(obj)
        last_id, last_hash = heads[chain]
        obj.id = last_id + 1
        obj.prev_hash = last_hash
        obj.entry_hash = entry_hash(key, last_hash, {name: getattr(obj, name) for name in _FIELDS[chain]})
        heads[chain] = (obj.id, obj.entry_hash)
        moved.add(chain)
    table = _HEADS
    for chain in sorted(moved):
        last_id, last_hash = heads[chain]
        connection.execute(update(table).where(table.c.name == chain)
                           .values(last_id=last_id, last_hash=last_hash, updated_at=utcnow()))
