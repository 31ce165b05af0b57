"""The audit log and the HMAC chains over it and over custody, on both record stores.

Tampering is done the way a database administrator would: straight in SQL, with the append-only triggers
dropped (SQLite) or disabled (PostgreSQL) first.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import time
from typing import Any

import pytest
from alembic import command
from sqlalchemy import Engine, func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage import audit, intake, records
from storage.audit import AUDIT_FIELDS, CUSTODY_FIELDS, GENESIS_HASH, AuditEntry, ChainHead
from storage.db import alembic_config, make_engine, session_factory, transaction
from storage.fakes import MemoryObjectStore
from storage.settings import DEVELOPMENT_AUDIT_KEY
from storage.tables import Case, CustodyEvent, utcnow
from tests.media_samples import bus_jpg_path

KEY = b"test-audit-chain-key-0123456789-abcdef"
OTHER_KEY = b"not-the-audit-chain-key-9876543210-zyx"


@pytest.fixture
def chained(engine: Engine) -> sessionmaker[Session]:
    """Sessions that chain with the test key (as the API and workers do with `Settings.chain_key`)."""
    return session_factory(engine, chain_key=KEY)


def _append(factory: sessionmaker[Session], count: int, **overrides: Any) -> None:
    """`count` audit entries, a few per transaction."""
    done = 0
    while done < count:
        with transaction(factory) as session:
            for _ in range(min(3, count - done)):
                done += 1
                fields: dict[str, Any] = {
                    "actor": f"examiner-{done % 3}", "roles": ["examiner"], "action": "consultation",
                    "resource": "GET /api/v1/evidence/{evidence_id}", "resource_id": f"ev-{done}",
                    "case_id": "case-1", "person": f"85.07.30-033.{done:02d}", "detail": {"n": done},
                }
                fields.update(overrides)
                audit.record(session, **fields)


def _verify(factory: sessionmaker[Session], chain: str = "audit", key: bytes = KEY,
            **kwargs: Any) -> audit.VerifyResult:
    with factory() as session:
        return audit.verify(session, chain=chain, key=key, **kwargs)


def _tamper(engine: Engine, table: str, *statements: Any) -> None:
    """Run `statements` as a DBA would, past the append-only triggers."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
            conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
        else:
            conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        for statement in statements:
            conn.execute(statement)
        if engine.dialect.name != "sqlite":
            conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))


AUDIT = AuditEntry.__table__
CUSTODY = CustodyEvent.__table__
HEADS = ChainHead.__table__


# --- chaining ---------------------------------------------------------------------------------------------------


def test_entries_are_chained_with_the_documented_hmac(chained: sessionmaker[Session]) -> None:
    moment = dt.datetime(2026, 11, 28, 18, 0, 0, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    with transaction(chained) as session:
        audit.record(session, actor="examiner-1", roles=("examiner", "analyst"), action="disclosure",
                     resource="evidence", resource_id="ev-1", case_id="c-1", person="Jörg Müller",
                     purpose_case="2026-0042", justification="court order 12/2026", recipients=("prosecutor",),
                     detail={"when": moment, "ratio": 0.1 + 0.2, "nested": {2: ("a", "ß")}, "none": None})
        audit.record(session, actor="examiner-2", roles=[], action="authentication", resource="POST /login",
                     outcome="denied")
    with chained() as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        head = session.get_one(ChainHead, "audit")
    assert [row.id for row in rows] == [1, 2]
    first = rows[0]
    # What was stored is what was hashed: JSON normalised as it reads back.
    assert first.detail == {"when": "2026-11-28T17:00:00.000000+00:00", "ratio": 0.30000000000000004,
                            "nested": {"2": ["a", "ß"]}, "none": None}
    assert first.actor_roles == ["examiner", "analyst"] and first.recipients == ["prosecutor"]
    assert first.at.tzinfo is not None
    # The hash is exactly HMAC-SHA256(key, prev_hash || canonical JSON of every column but the hashes).
    content = {column: getattr(first, column) for column in AUDIT_FIELDS}
    content["at"] = first.at.astimezone(dt.UTC).isoformat(timespec="microseconds")
    message = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    assert first.prev_hash == GENESIS_HASH
    assert first.entry_hash == hmac.new(KEY, (GENESIS_HASH + message).encode(), hashlib.sha256).hexdigest()
    assert rows[1].prev_hash == first.entry_hash
    assert rows[1].outcome == "denied" and rows[1].detail == {}
    assert (head.last_id, head.last_hash) == (2, rows[1].entry_hash)
    result = _verify(chained)
    assert result.to_dict() == {"chain": "audit", "ok": True, "checked": 2, "unchained": 0, "first_bad_id": None,
                                "reason": None, "checkpoint": None}


def test_hashed_fields_cover_every_column() -> None:
    assert set(AUDIT_FIELDS) | {"prev_hash", "entry_hash"} == set(AUDIT.columns.keys())
    assert set(CUSTODY_FIELDS) | {"prev_hash", "entry_hash"} == set(CUSTODY.columns.keys())


def test_record_refuses_an_unknown_action(chained: sessionmaker[Session]) -> None:
    with chained() as session, pytest.raises(ValueError, match="unknown audit action"):
        audit.record(session, actor="x", roles=[], action="browse", resource="evidence")


def test_audit_and_custody_verify_and_the_key_matters(engine: Engine, chained: sessionmaker[Session]) -> None:
    _append(chained, 10)
    evidence_id = _ingest(chained, "2026-0001")
    with transaction(chained) as session:
        records.add_custody(session, evidence_id=evidence_id, actor="examiner-1", action="downloaded", detail={})
    results = {r.chain: r for r in _verify_all(chained)}
    assert results["audit"].ok and results["audit"].checked == 10
    assert results["custody"].ok and results["custody"].checked == 3 and results["custody"].unchained == 0
    with chained() as session:
        actions = [event.action for event in records.custody_of(session, evidence_id=evidence_id)]
        ids = session.scalars(select(CustodyEvent.id).order_by(CustodyEvent.id)).all()
    assert actions == ["received", "stored", "downloaded"] and ids == [1, 2, 3]
    # Another key does not verify, and a factory without one chains with the development key.
    wrong = _verify(chained, key=OTHER_KEY)
    assert not wrong.ok and wrong.first_bad_id == 1 and "another key" in (wrong.reason or "")
    development = session_factory(engine)  # no key given: the development key
    _append(development, 2)
    assert _verify(chained).first_bad_id == 11
    # A session made without session_factory chains nothing, so the database refuses its audit entry (no hashes).
    with pytest.raises(IntegrityError), Session(engine) as session, session.begin():
        audit.record(session, actor="plain-session", roles=[], action="erasure", resource="evidence")
    with development() as session:
        rows = session.execute(select(AuditEntry.id, AuditEntry.prev_hash, AuditEntry.entry_hash)
                               .where(AuditEntry.id > 10).order_by(AuditEntry.id)).all()
    development_key = DEVELOPMENT_AUDIT_KEY.encode()
    for row_id, prev_hash, stored in rows:
        with development() as session:
            entry = session.get_one(AuditEntry, row_id)
            content = {name: getattr(entry, name) for name in AUDIT_FIELDS}
        assert stored == audit.entry_hash(development_key, prev_hash, content)
    assert [row.id for row in rows] == [11, 12]


def test_a_rolled_back_savepoint_leaves_the_chain_linear(chained: sessionmaker[Session]) -> None:
    with transaction(chained) as session:
        audit.record(session, actor="a", roles=[], action="collection", resource="evidence")
        try:
            with session.begin_nested():
                audit.record(session, actor="b", roles=[], action="collection", resource="evidence")
                session.flush()
                raise RuntimeError("abandon")
        except RuntimeError:
            pass
        audit.record(session, actor="c", roles=[], action="collection", resource="evidence")
    with chained() as session:
        assert [(e.id, e.actor) for e in audit.query(session)] == [(1, "a"), (2, "c")]
    assert _verify(chained).ok


# --- tampering ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("change", [{"actor": "someone-else"}, {"justification": "added afterwards"},
                                    {"detail": {"n": 70}}, {"at": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)}])
def test_an_edited_entry_is_named(engine: Engine, chained: sessionmaker[Session], change: dict[str, Any]) -> None:
    _append(chained, 10)
    _tamper(engine, "audit_log", update(AUDIT).where(AUDIT.c.id == 7).values(**change))
    result = _verify(chained)
    assert not result.ok and result.first_bad_id == 7 and result.checked == 6
    assert "entry 7 was altered" in (result.reason or "")


def test_a_deleted_entry_is_named_missing(engine: Engine, chained: sessionmaker[Session]) -> None:
    _append(chained, 10)
    _tamper(engine, "audit_log", AUDIT.delete().where(AUDIT.c.id == 5))
    result = _verify(chained)
    assert not result.ok and result.first_bad_id == 5 and result.checked == 4
    assert "entry 5 is missing" in (result.reason or "")


def test_a_deleted_and_renumbered_entry_is_found(engine: Engine, chained: sessionmaker[Session]) -> None:
    _append(chained, 10)
    _tamper(engine, "audit_log", AUDIT.delete().where(AUDIT.c.id == 5),
            update(AUDIT).where(AUDIT.c.id > 5).values(id=AUDIT.c.id - 1))
    result = _verify(chained)
    assert not result.ok and result.first_bad_id == 5  # entry 6, now numbered 5, does not link to entry 4


@pytest.mark.parametrize("with_hashes", [True, False])
def test_swapped_entries_are_named(engine: Engine, chained: sessionmaker[Session], with_hashes: bool) -> None:
    _append(chained, 10)
    with engine.connect() as conn:
        rows = {row.id: dict(row._mapping) for row in conn.execute(select(AUDIT).where(AUDIT.c.id.in_((3, 4))))}
    kept = {"id"} if with_hashes else {"id", "prev_hash", "entry_hash"}
    moved = [column.name for column in AUDIT.columns if column.name not in kept]
    _tamper(engine, "audit_log",
            update(AUDIT).where(AUDIT.c.id == 3).values({c: rows[4][c] for c in moved}),
            update(AUDIT).where(AUDIT.c.id == 4).values({c: rows[3][c] for c in moved}))
    result = _verify(chained)
    assert not result.ok and result.first_bad_id == 3 and result.checked == 2


def test_a_deleted_last_entry_is_found_through_the_head(engine: Engine, chained: sessionmaker[Session]) -> None:
    _append(chained, 10)
    _tamper(engine, "audit_log", AUDIT.delete().where(AUDIT.c.id == 10))
    result = _verify(chained)
    assert not result.ok and result.first_bad_id == 10 and result.checked == 9
    assert "ends at entry 9 but its head records entry 10" in (result.reason or "")


def test_an_empty_log_with_a_head_is_found(engine: Engine, chained: sessionmaker[Session]) -> None:
    _append(chained, 3)
    _tamper(engine, "audit_log", AUDIT.delete())
    result = _verify(chained)
    assert not result.ok and result.first_bad_id == 1 and "is empty" in (result.reason or "")


def _forge(engine: Engine, key: bytes, entry_id: int, prev_hash: str, **values: Any) -> str:
    """An entry `entry_id` with a recomputed hash under `key`; returns that hash."""
    content: dict[str, Any] = {"id": entry_id, "at": utcnow(), "actor": "forger", "actor_roles": [],
                               "action": "consultation", "resource": "evidence", "resource_id": None,
                               "case_id": None, "person": None, "purpose_case": None, "justification": None,
                               "recipients": [], "outcome": "ok", "detail": {}}
    content.update(values)
    forged = audit.entry_hash(key, prev_hash, content)
    content.update(prev_hash=prev_hash, entry_hash=forged)
    with engine.connect() as conn:
        exists = conn.scalar(select(func.count()).select_from(AUDIT).where(AUDIT.c.id == entry_id))
    write = update(AUDIT).where(AUDIT.c.id == entry_id).values(content) if exists else AUDIT.insert().values(content)
    _tamper(engine, "audit_log", write)
    return forged


def test_forged_entries_with_the_wrong_key_are_found(engine: Engine, chained: sessionmaker[Session]) -> None:
    _append(chained, 10)
    with engine.connect() as conn:
        hashes = dict(conn.execute(select(AUDIT.c.id, AUDIT.c.entry_hash)).all())
    # An appended entry, with the head moved on as Locard would.
    forged = _forge(engine, OTHER_KEY, 11, hashes[10], person="85.07.30-033.61")
    with engine.begin() as conn:
        conn.execute(update(HEADS).where(HEADS.c.name == "audit").values(last_id=11, last_hash=forged))
    result = _verify(chained)
    assert not result.ok and result.first_bad_id == 11 and "entry 11 was altered" in (result.reason or "")
    # A replaced entry in the middle, linked correctly.
    _forge(engine, OTHER_KEY, 6, hashes[5], actor="examiner-1")
    assert _verify(chained).first_bad_id == 6
    # The same forgery with the right key is, by design, accepted up to the next entry, which no longer links.
    _forge(engine, KEY, 6, hashes[5], actor="examiner-1")
    result = _verify(chained)
    assert result.first_bad_id == 7 and "does not link to entry 6" in (result.reason or "")


def test_rows_added_past_the_head_are_found(engine: Engine, chained: sessionmaker[Session]) -> None:
    _append(chained, 4)
    with engine.connect() as conn:
        last = conn.scalar(select(AUDIT.c.entry_hash).where(AUDIT.c.id == 4))
    _forge(engine, KEY, 5, last)  # correctly chained, but written around Locard: the head was not moved
    result = _verify(chained)
    assert not result.ok and result.first_bad_id == 5 and "added outside Locard" in (result.reason or "")


def test_verification_reads_in_batches(engine: Engine, chained: sessionmaker[Session]) -> None:
    _append(chained, 23)
    assert _verify(chained, batch_size=5).to_dict()["checked"] == 23
    assert _verify(chained, batch_size=23).ok and _verify(chained, batch_size=1).ok
    _tamper(engine, "audit_log", AUDIT.delete().where(AUDIT.c.id == 16))  # first of a batch of 5
    result = _verify(chained, batch_size=5)
    assert result.first_bad_id == 16 and result.checked == 15


# --- custody ---------------------------------------------------------------------------------------------------


def _ingest(factory: sessionmaker[Session], reference: str) -> str:
    """The sample photo as evidence of case `reference` (custody: received and stored, or duplicate_received)."""
    path = bus_jpg_path()
    data = path.read_bytes()
    with transaction(factory) as session:
        case = session.scalar(select(Case).where(Case.reference == reference)) or records.create_case(
            session, reference=reference, title="t", description="", created_by="examiner-1")
        result = intake.ingest_file(session, MemoryObjectStore(), case=case, path=path,
                                    sha256=hashlib.sha256(data).hexdigest(), size=len(data), filename=path.name,
                                    declared_media_type="image/jpeg", actor="examiner-1")
    return result.evidence.id


def _verify_all(factory: sessionmaker[Session]) -> list[audit.VerifyResult]:
    with factory() as session:
        return audit.verify_all(session, key=KEY)


def test_custody_tampering_is_found_for_one_case(engine: Engine, chained: sessionmaker[Session]) -> None:
    first = _ingest(chained, "2026-0001")
    second = _ingest(chained, "2026-0002")
    _ingest(chained, "2026-0001")  # a duplicate: one more custody event for the first case
    with chained() as session:
        events = {e.id: (e.evidence_id, e.action) for e in session.scalars(select(CustodyEvent))}
    assert sorted(events) == [1, 2, 3, 4, 5]
    assert events[3] == (second, "received") and events[5] == (first, "duplicate_received")
    assert all(r.ok for r in _verify_all(chained))

    # An examiner's reception moved to another day in case 2026-0002 ...
    with engine.connect() as conn:
        received_at = conn.scalar(select(CUSTODY.c.at).where(CUSTODY.c.id == 3))
    _tamper(engine, "custody_events",
            update(CUSTODY).where(CUSTODY.c.id == 3).values(at=received_at - dt.timedelta(days=1)))
    result = _verify(chained, chain="custody")
    assert not result.ok and result.first_bad_id == 3 and result.checked == 2
    assert "entry 3 was altered" in (result.reason or "")
    assert _verify(chained).ok  # the audit log is a chain of its own
    # ... and put back exactly as it was: sound again.
    _tamper(engine, "custody_events", update(CUSTODY).where(CUSTODY.c.id == 3).values(at=received_at))
    assert _verify(chained, chain="custody").ok

    # The duplicate reception of case 2026-0001, the last event, erased: found through the head.
    _tamper(engine, "custody_events", CUSTODY.delete().where(CUSTODY.c.id == 5))
    result = _verify(chained, chain="custody")
    assert not result.ok and result.first_bad_id == 5 and "head records entry 5" in (result.reason or "")


def test_a_deleted_custody_event_is_named(engine: Engine, chained: sessionmaker[Session]) -> None:
    evidence_id = _ingest(chained, "2026-0001")
    for n in range(3):
        with transaction(chained) as session:
            records.add_custody(session, evidence_id=evidence_id, actor="examiner-1", action="downloaded",
                                detail={"n": n})
    _tamper(engine, "custody_events", CUSTODY.delete().where(CUSTODY.c.id == 4))
    result = _verify(chained, chain="custody")
    assert not result.ok and result.first_bad_id == 4 and "entry 4 is missing" in (result.reason or "")


def test_custody_recorded_before_the_chain_stays_unchained(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        config = alembic_config(database_url)
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO cases (id, reference, title, description, created_at, created_by) "
                              "VALUES ('c1', 'OLD-1', 't', '', :now, 'x')"), {"now": utcnow()})
            conn.execute(text("INSERT INTO evidence (id, case_id, sha256, size, media_type, bucket, object_key, "
                              "source, received_at, received_by) VALUES ('e1', 'c1', :sha, 1, 'image/jpeg', "
                              "'b', 'k', 'api', :now, 'x')"), {"sha": "a" * 64, "now": utcnow()})
            for action in ("received", "stored", "analysed"):
                conn.execute(text("INSERT INTO custody_events (evidence_id, at, actor, action, detail) "
                                  "VALUES ('e1', :now, 'x', :action, '{}')"), {"now": utcnow(), "action": action})
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")
        chained = session_factory(engine, chain_key=KEY)
        assert _verify(chained, chain="custody").to_dict() == {
            "chain": "custody", "ok": True, "checked": 0, "unchained": 3, "first_bad_id": None, "reason": None,
            "checkpoint": None}
        for n in range(2):
            with transaction(chained) as session:
                records.add_custody(session, evidence_id="e1", actor="examiner-1", action="downloaded",
                                    detail={"n": n})
        with chained() as session:
            ids = [(e.id, e.entry_hash is not None) for e in records.custody_of(session, evidence_id="e1")]
        assert ids == [(1, False), (2, False), (3, False), (4, True), (5, True)]
        result = _verify(chained, chain="custody")
        assert result.ok and (result.checked, result.unchained) == (2, 3)

        # The first chained event deleted: the next one no longer starts the chain.
        _tamper(engine, "custody_events", CUSTODY.delete().where(CUSTODY.c.id == 4))
        result = _verify(chained, chain="custody")
        assert not result.ok and result.first_bad_id == 4 and result.unchained == 3
        # A chained event stripped of its hashes is not taken for an old, unchained one.
        _tamper(engine, "custody_events", update(CUSTODY).where(CUSTODY.c.id == 5).values(prev_hash=None,
                                                                                         entry_hash=None))
        result = _verify(chained, chain="custody")
        assert not result.ok and result.first_bad_id == 5 and "stripped of their hashes" in (result.reason or "")
    finally:
        engine.dispose()


def test_migration_downgrades_and_upgrades_keeping_custody_append_only(engine: Engine,
                                                                       chained: sessionmaker[Session]) -> None:
    evidence_id = _ingest(chained, "2026-0001")
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO custody_events (evidence_id, at, actor, action, detail) "
                          "VALUES (:e, :now, 'x', 'analysed', '{}')"), {"e": evidence_id, "now": utcnow()})
        assert conn.scalar(text("SELECT MAX(id) FROM custody_events")) == 3
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM custody_events"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    with transaction(chained) as session:
        records.add_custody(session, evidence_id=evidence_id, actor="x", action="downloaded", detail={})
    result = _verify(chained, chain="custody")
    assert result.ok and (result.checked, result.unchained) == (1, 3)
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE custody_events SET actor = 'y'"))


# --- the database itself --------------------------------------------------------------------------------------


def test_the_database_refuses_updates_and_deletes(chained: sessionmaker[Session]) -> None:
    _append(chained, 3)
    _ingest(chained, "2026-0001")
    with pytest.raises(DBAPIError, match="append-only"), transaction(chained) as session:
        session.execute(update(AuditEntry).where(AuditEntry.id == 2).values(actor="someone-else"))
    with pytest.raises(DBAPIError, match="append-only"), transaction(chained) as session:
        entry = session.get_one(AuditEntry, 2)
        entry.outcome = "denied"
    with pytest.raises(DBAPIError, match="append-only"), transaction(chained) as session:
        session.delete(session.get_one(AuditEntry, 3))
    with pytest.raises(DBAPIError, match="append-only"), transaction(chained) as session:
        session.execute(AUDIT.delete())
    with pytest.raises(DBAPIError, match="append-only"), transaction(chained) as session:
        session.execute(CUSTODY.delete())
    with pytest.raises(DBAPIError, match="append-only"), transaction(chained) as session:
        session.execute(update(CUSTODY).values(entry_hash=None))
    with transaction(chained) as session:  # the heads stay writable (they move with every append)
        session.execute(update(HEADS).where(HEADS.c.name == "audit").values(updated_at=utcnow()))
    assert [r.checked for r in _verify_all(chained) if r.ok] == [3, 2]


# --- concurrency and speed ---------------------------------------------------------------------------------


def test_concurrent_writers_make_one_linear_chain(chained: sessionmaker[Session]) -> None:
    evidence_id = _ingest(chained, "2026-0001")  # custody events 1 and 2
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            start.wait()
            for n in range(25):
                with transaction(chained) as session:
                    # Half the writers touch custody first, half the audit log first: no deadlock either way.
                    if number % 2:
                        records.add_custody(session, evidence_id=evidence_id, actor=f"w{number}",
                                            action="downloaded", detail={"n": n})
                        session.flush()
                    audit.record(session, actor=f"w{number}", roles=[], action="consultation",
                                 resource="evidence", detail={"n": n})
                    if number % 2 == 0:
                        session.flush()
                        records.add_custody(session, evidence_id=evidence_id, actor=f"w{number}",
                                            action="downloaded", detail={"n": n})
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(number,)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    with chained() as session:
        audit_ids = session.scalars(select(AuditEntry.id).order_by(AuditEntry.id)).all()
        custody_ids = session.scalars(select(CustodyEvent.id).order_by(CustodyEvent.id)).all()
        per_writer = {actor: count for actor, count in session.execute(
            select(AuditEntry.actor, func.count()).group_by(AuditEntry.actor))}
    assert audit_ids == list(range(1, 101)) and custody_ids == list(range(1, 103))
    assert per_writer == {"w0": 25, "w1": 25, "w2": 25, "w3": 25}
    results = {r.chain: r for r in _verify_all(chained)}
    assert results["audit"].ok and results["audit"].checked == 100
    assert results["custody"].ok and results["custody"].checked == 102


def test_verifying_while_entries_are_appended(chained: sessionmaker[Session]) -> None:
    _append(chained, 5)
    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            _append(chained, 1)

    thread = threading.Thread(target=writer)
    thread.start()
    try:  # at least 20 verifications, and on until one sees the writer's entries (bounded, not timed)
        results = [_verify(chained, batch_size=4) for _ in range(20)]
        deadline = time.monotonic() + 60
        while results[-1].checked <= 5 and time.monotonic() < deadline:
            results.append(_verify(chained, batch_size=4))
    finally:
        stop.set()
        thread.join(timeout=60)
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    assert results[-1].checked > 5
    assert _verify(chained).ok


def test_verifying_20000_entries(chained: sessionmaker[Session], engine: Engine,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    total = 20_000
    started = time.perf_counter()
    for block in range(4):
        with transaction(chained) as session:
            for n in range(total // 4):
                audit.record(session, actor=f"examiner-{n % 7}", roles=["examiner"], action="consultation",
                             resource="GET /api/v1/evidence/{evidence_id}", resource_id=f"ev-{block}-{n}",
                             case_id=f"case-{n % 13}", person=f"person-{n % 101}", detail={"n": n})
    written = time.perf_counter() - started
    started = time.perf_counter()
    result = _verify(chained)
    took = time.perf_counter() - started
    assert result.ok and result.checked == total
    with capsys.disabled():
        print(f"\n[{engine.dialect.name}] wrote {total} audit entries in {written:.1f} s "
              f"({total / written:,.0f}/s); verified in {took:.2f} s ({total / took:,.0f} entries/s)")


# --- query -------------------------------------------------------------------------------------------------


def test_query_filters_by_actor_case_person_and_period(chained: sessionmaker[Session]) -> None:
    base = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    rows = [("alice", "case-a", "p-1", "consultation", 0), ("bob", "case-a", "p-2", "disclosure", 1),
            ("alice", "case-b", "p-2", "consultation", 2), ("carol", None, None, "authentication", 3),
            ("alice", "case-a", "p-1", "erasure", 4)]
    with transaction(chained) as session:
        for actor, case_id, person, action, day in rows:
            entry = audit.record(session, actor=actor, roles=["examiner"], action=action, resource="evidence",
                                 case_id=case_id, person=person)
            entry.at = base + dt.timedelta(days=day)

    def ids(**filters: Any) -> list[int]:
        with chained() as session:
            return [entry.id for entry in audit.query(session, **filters)]

    assert ids() == [1, 2, 3, 4, 5]
    assert ids(actor="alice") == [1, 3, 5]
    assert ids(case_id="case-a") == [1, 2, 5]
    assert ids(person="p-2") == [2, 3]
    assert ids(actor="alice", case_id="case-a", person="p-1") == [1, 5]
    assert ids(since=base + dt.timedelta(days=1)) == [2, 3, 4, 5]
    assert ids(until=base + dt.timedelta(days=2)) == [1, 2]
    assert ids(since=base + dt.timedelta(days=1), until=base + dt.timedelta(days=3, hours=1)) == [2, 3, 4]
    assert ids(action="consultation") == [1, 3]
    assert ids(actor="nobody") == []
    assert ids(offset=1, limit=2) == [2, 3]
    assert _verify(chained).ok  # `at` set before the flush is hashed as stored

