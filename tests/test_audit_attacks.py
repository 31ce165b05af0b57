"""Attacks on the audit and custody chains by someone with full database rights but without the audit key and
without delete rights on the checkpoint bucket, on both record stores; and the signed checkpoints that expose them.

Tampering is done as a database administrator would: in SQL, with the append-only triggers dropped (SQLite) or
disabled (PostgreSQL). Checkpoints live in a locked bucket on the real SeaweedFS, or in an operator's file.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import io
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from minio.error import S3Error
from pydantic import SecretStr
from sqlalchemy import Engine, Table, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from locard import cli
from storage import audit, checkpoints, records
from storage.audit import CHAINS, GENESIS_HASH, AuditEntry, ChainHead, ChainOrigin
from storage.checkpoints import BucketCheckpoints, Checkpoint, CheckpointSink, FileCheckpoints
from storage.db import session_factory, transaction
from storage.objectstore import S3ObjectStore
from storage.settings import Settings, get_settings
from storage.tables import Case, CustodyEvent, Evidence

KEY = b"test-audit-attack-key-0123456789-abcdef"
OTHER_KEY = b"an-attackers-guess-at-the-key-98765432"
TABLES: dict[str, Table] = {"audit": AuditEntry.__table__, "custody": CustodyEvent.__table__}  # type: ignore[dict-item]
HEADS: Table = ChainHead.__table__  # type: ignore[assignment]
ORIGINS: Table = ChainOrigin.__table__  # type: ignore[assignment]


@dataclasses.dataclass
class World:
    engine: Engine
    factory: sessionmaker[Session]
    evidence_id: str

    def append(self, chain: str, count: int) -> None:
        """`count` entries of `chain`, a few per transaction, written by Locard."""
        for start in range(0, count, 5):
            with transaction(self.factory) as session:
                for n in range(start, min(start + 5, count)):
                    if chain == "audit":
                        audit.record(session, actor=f"examiner-{n % 3}", roles=["examiner"],
                                     action="consultation", resource="evidence", resource_id=self.evidence_id,
                                     person=f"85.07.30-033.{n % 100:02d}", detail={"n": n})
                    else:
                        records.add_custody(session, evidence_id=self.evidence_id, actor=f"examiner-{n % 3}",
                                            action="downloaded", detail={"n": n})

    def hash_of(self, chain: str, entry_id: int) -> str:
        table = TABLES[chain]
        with self.engine.connect() as conn:
            return str(conn.scalar(select(table.c.entry_hash).where(table.c.id == entry_id)))

    def tamper(self, *statements: Any) -> None:
        """Run `statements` past the append-only triggers of every chained table."""
        sqlite = self.engine.dialect.name == "sqlite"
        with self.engine.begin() as conn:
            for table in ("audit_log", "custody_events", "chain_origins"):
                if sqlite:
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_update"))
                    conn.execute(text(f"DROP TRIGGER IF EXISTS {table}_no_delete"))
                else:
                    conn.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
            for statement in statements:
                conn.execute(text(statement) if isinstance(statement, str) else statement)
            if not sqlite:
                for table in ("audit_log", "custody_events", "chain_origins"):
                    conn.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))

    def set_head(self, chain: str, last_id: int, last_hash: str) -> Any:
        return update(HEADS).where(HEADS.c.name == chain).values(last_id=last_id, last_hash=last_hash)

    def checkpoint(self, *sinks: CheckpointSink, **kwargs: Any) -> list[Checkpoint]:
        with self.factory() as session:
            return checkpoints.checkpoint(session, chain_key=KEY, sinks=sinks, **kwargs)

    def verify(self, *sinks: CheckpointSink) -> dict[str, audit.VerifyResult]:
        with self.factory() as session:
            return {r.chain: r for r in checkpoints.verify(session, chain_key=KEY, sinks=sinks, batch_size=7)}

    def unanchored(self, chain: str) -> audit.VerifyResult:
        with self.factory() as session:
            return audit.verify(session, chain=chain, key=KEY, batch_size=7)


@pytest.fixture
def world(engine: Engine) -> World:
    factory = session_factory(engine, chain_key=KEY)
    with transaction(factory) as session:
        case = Case(reference="2026-0900", title="Burglary series", created_by="examiner-1")
        session.add(case)
        session.flush()
        evidence = Evidence(case_id=case.id, sha256="ab" * 32, size=1, media_type="image/jpeg", bucket="evidence",
                            object_key="cases/2026-0900/a.jpg", source="api", received_by="examiner-1")
        session.add(evidence)
    return World(engine, factory, evidence.id)


def _bucket(store: S3ObjectStore) -> BucketCheckpoints:
    sink = BucketCheckpoints(store, f"checkpoints-{uuid.uuid4().hex[:10]}")
    sink.ensure()
    return sink


@pytest.fixture(params=["bucket", "file"])
def sink(request: pytest.FixtureRequest, tmp_path: Path) -> CheckpointSink:
    """Where checkpoints are kept: a locked bucket on SeaweedFS, or a file the operator keeps."""
    if request.param == "file":
        return FileCheckpoints(tmp_path / "operator" / "locard-checkpoints.jsonl")
    return _bucket(request.getfixturevalue("s3_store"))


def _names(result: audit.VerifyResult, made: Checkpoint) -> bool:
    """Whether the result names checkpoint `made` as what it was checked against."""
    return f"checkpoint {made.sequence} of" in (result.reason or "") and \
        (result.checkpoint or "").startswith(f"checkpoint {made.sequence} of")


# --- the attacks -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chain", CHAINS)
def test_truncation_with_the_head_rewound_is_found(world: World, sink: CheckpointSink, chain: str) -> None:
    world.append(chain, 50)
    made = {cp.chain: cp for cp in world.checkpoint(sink)}[chain]
    assert (made.sequence, made.last_id, made.last_hash) == (1, 50, world.hash_of(chain, 50))
    table = TABLES[chain]
    world.tamper(table.delete().where(table.c.id > 30), world.set_head(chain, 30, world.hash_of(chain, 30)))
    assert world.unanchored(chain).ok  # consistent: the database alone cannot show it
    results = world.verify(sink)
    result = results[chain]
    assert not result.ok and result.first_bad_id == 31 and _names(result, made)
    assert "ends at entry 30" in (result.reason or "") and "records entry 50" in (result.reason or "")
    assert all(r.ok for name, r in results.items() if name != chain)


def _strip(world: World, chain: str) -> None:
    """Null every hash of `chain` (making the hash columns nullable where they are not) and zero its head."""
    table = TABLES[chain]
    statements: list[Any] = []
    if chain == "audit" and world.engine.dialect.name == "sqlite":
        statements += [f"ALTER TABLE audit_log DROP COLUMN {c}" for c in ("prev_hash", "entry_hash")]
        statements += [f"ALTER TABLE audit_log ADD COLUMN {c} VARCHAR(64)" for c in ("prev_hash", "entry_hash")]
    else:
        if chain == "audit":
            statements.append("ALTER TABLE audit_log ALTER COLUMN prev_hash DROP NOT NULL, "
                              "ALTER COLUMN entry_hash DROP NOT NULL")
        statements.append(update(table).values(prev_hash=None, entry_hash=None))
    with world.engine.connect() as conn:
        count = int(conn.scalar(select(table.c.id).order_by(table.c.id.desc()).limit(1)) or 0)
    world.tamper(*statements, world.set_head(chain, count, GENESIS_HASH))


@pytest.mark.parametrize("chain", CHAINS)
def test_stripped_hashes_and_a_zeroed_head_are_found(world: World, sink: CheckpointSink, chain: str) -> None:
    world.append(chain, 12)
    made = {cp.chain: cp for cp in world.checkpoint(sink)}[chain]
    _strip(world, chain)
    unanchored = world.unanchored(chain)  # fails closed even before any checkpoint is consulted
    assert not unanchored.ok and unanchored.first_bad_id == 1 and unanchored.unchained == 0
    assert "carries no hash" in (unanchored.reason or "")
    result = world.verify(sink)[chain]
    assert not result.ok and result.first_bad_id == 1 and result.checkpoint is not None
    assert result.checkpoint.startswith(f"checkpoint {made.sequence} of")


def test_a_moved_origin_is_found_against_the_checkpoint(world: World, sink: CheckpointSink) -> None:
    world.append("custody", 12)
    world.append("audit", 4)
    made = {cp.chain: cp for cp in world.checkpoint(sink)}
    assert made["custody"].unchained == 0
    _strip(world, "custody")
    # The attacker also claims every custody event predates the chain, and that the audit log starts late.
    world.tamper(update(ORIGINS).where(ORIGINS.c.name == "custody").values(unchained_through=12))
    assert world.unanchored("custody").ok  # all "legacy" now: only the checkpoint can tell
    result = world.verify(sink)["custody"]
    assert not result.ok and _names(result, made["custody"])
    assert "entries up to 0 predate the chain, but the record store now says 12" in (result.reason or "")
    world.tamper(update(ORIGINS).where(ORIGINS.c.name == "audit").values(unchained_through=2))
    unanchored = world.unanchored("audit")
    assert not unanchored.ok and "every audit entry is chained" in (unanchored.reason or "")
    world.tamper(ORIGINS.delete())
    assert "no recorded origin" in (world.unanchored("audit").reason or "")


@pytest.mark.parametrize("chain", CHAINS)
def test_everything_deleted_and_the_head_reset_is_found(world: World, sink: CheckpointSink, chain: str) -> None:
    world.append(chain, 9)
    made = {cp.chain: cp for cp in world.checkpoint(sink)}[chain]
    world.tamper(TABLES[chain].delete(), world.set_head(chain, 0, GENESIS_HASH))
    assert world.unanchored(chain).ok  # an empty chain with a genesis head: fine for the database alone
    result = world.verify(sink)[chain]
    assert not result.ok and result.first_bad_id == 1 and _names(result, made)
    assert "is empty" in (result.reason or "") and "records entry 9" in (result.reason or "")


@pytest.mark.parametrize("chain", CHAINS)
def test_an_older_copy_of_the_record_store_replayed_is_found(world: World, sink: CheckpointSink,
                                                             chain: str) -> None:
    table = TABLES[chain]
    world.append(chain, 30)
    with world.engine.connect() as conn:  # the attacker's backup
        backup = [dict(row._mapping) for row in conn.execute(select(table).order_by(table.c.id))]
        head = conn.execute(select(HEADS.c.last_id, HEADS.c.last_hash).where(HEADS.c.name == chain)).one()
    world.append(chain, 20)
    made = {cp.chain: cp for cp in world.checkpoint(sink)}[chain]
    world.tamper(table.delete(), table.insert().values(backup), world.set_head(chain, head.last_id, head.last_hash))
    assert world.unanchored(chain).ok  # a consistent, older state
    result = world.verify(sink)[chain]
    assert not result.ok and result.first_bad_id == 31 and _names(result, made)
    assert "older copy of the record store" in (result.reason or "")
    with pytest.raises(checkpoints.ChainBroken):  # the replayed state is never checkpointed ...
        world.checkpoint(sink)
    world.append(chain, 25)  # ... and Locard writing on past the checkpointed length does not hide it
    result = world.verify(sink)[chain]
    assert not result.ok and result.first_bad_id == 50 and _names(result, made)
    assert "entry 50 differs from checkpoint" in (result.reason or "")


# --- the checkpoints themselves ----------------------------------------------------------------------------------


def test_a_forged_checkpoint_in_the_bucket_is_refused(world: World, s3_store: S3ObjectStore) -> None:
    sink = _bucket(s3_store)
    world.append("audit", 10)
    genuine = {cp.chain: cp for cp in world.checkpoint(sink)}["audit"]
    assert all(r.ok for r in world.verify(sink).values())
    # A newer checkpoint, signed with a guessed key, that would excuse truncating the log to 3 entries.
    forged = dataclasses.replace(genuine, sequence=2, last_id=3, last_hash=world.hash_of("audit", 3))
    key = sink.key(forged)
    s3_store.client.put_object(sink.bucket, key, *_stream(forged.to_bytes(OTHER_KEY)))
    results = world.verify(sink)
    assert not results["audit"].ok and "signature does not verify" in (results["audit"].reason or "")
    assert key in (results["audit"].reason or "") and "refused" in (results["audit"].reason or "")
    assert results["custody"].ok
    with pytest.raises(checkpoints.ForgedCheckpoint):  # nor is it written over
        world.checkpoint(sink)
    # Signed with the audit key itself rather than the checkpoint key: refused as well.
    payload = json.loads(forged.to_bytes(KEY))
    del payload["signature"]
    message = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    payload["signature"] = hmac.new(KEY, message, hashlib.sha256).hexdigest()
    s3_store.client.put_object(sink.bucket, key, *_stream(json.dumps(payload).encode()))
    assert "signature does not verify" in (world.verify(sink)["audit"].reason or "")


def _stream(data: bytes) -> tuple[Any, int]:
    return io.BytesIO(data), len(data)


def test_a_checkpoint_object_cannot_be_deleted_or_overwritten(world: World, s3_store: S3ObjectStore) -> None:
    sink = _bucket(s3_store)
    world.append("custody", 20)
    made = {cp.chain: cp for cp in world.checkpoint(sink)}["custody"]
    key = sink.key(made)
    [version] = [v for v in s3_store.list_versions(sink.bucket, key)]
    original = s3_store.read_bytes(sink.bucket, key, version.version_id, max_bytes=4096)
    with pytest.raises(S3Error) as refused:
        s3_store.client.remove_object(sink.bucket, key, version_id=version.version_id)
    assert refused.value.code == "AccessDenied"
    s3_store.client.remove_object(sink.bucket, key)  # only adds a delete marker
    table = TABLES["custody"]
    world.tamper(table.delete().where(table.c.id > 5), world.set_head("custody", 5, world.hash_of("custody", 5)))
    result = world.verify(sink)["custody"]  # the checkpoint is still read, behind its delete marker
    assert not result.ok and result.first_bad_id == 6 and _names(result, made)
    # Overwriting only adds a version: the original stays as it was, and the new one is refused.
    lowered = dataclasses.replace(made, last_id=5, last_hash=world.hash_of("custody", 5))
    s3_store.client.put_object(sink.bucket, key, *_stream(lowered.to_bytes(OTHER_KEY)))
    assert s3_store.read_bytes(sink.bucket, key, version.version_id, max_bytes=4096) == original
    result = world.verify(sink)["custody"]
    assert not result.ok and "signature does not verify" in (result.reason or "")


def test_a_forged_or_edited_line_in_the_operators_file_is_refused(world: World, tmp_path: Path) -> None:
    sink = FileCheckpoints(tmp_path / "checkpoints.jsonl")
    world.append("audit", 6)
    genuine = {cp.chain: cp for cp in world.checkpoint(sink)}["audit"]
    lines = sink.path.read_bytes().splitlines()
    assert len(lines) == 2 and all(r.ok for r in world.verify(sink).values())
    edited = lines[0].replace(b'"last_id":6', b'"last_id":2')
    assert edited != lines[0]
    sink.path.write_bytes(b"\n".join([edited, lines[1]]) + b"\n")
    assert "signature does not verify" in (world.verify(sink)["audit"].reason or "")
    forged = dataclasses.replace(genuine, sequence=9, last_id=1, last_hash=world.hash_of("audit", 1))
    sink.path.write_bytes(b"\n".join([*lines, forged.to_bytes(OTHER_KEY)]) + b"\n")
    results = world.verify(sink)
    assert not results["audit"].ok and not results["custody"].ok  # every line read must be genuine
    assert "line 1 from the end" in (results["audit"].reason or "")
    sink.path.write_bytes(b"\n".join([*lines, b"x" * 200_000]) + b"\n")
    assert "refused" in (world.verify(sink)["audit"].reason or "")


def test_a_broken_chain_is_not_checkpointed(world: World, sink: CheckpointSink) -> None:
    world.append("audit", 8)
    world.checkpoint(sink)
    world.append("audit", 4)
    table = TABLES["audit"]
    world.tamper(update(table).where(table.c.id == 10).values(actor="someone-else"))
    with pytest.raises(checkpoints.ChainBroken, match="entry 10 was altered"):
        world.checkpoint(sink)
    assert [located.checkpoint.sequence for located in sink.newest("audit", KEY)] == [1]


def test_an_untampered_chain_verifies_while_it_grows_and_is_checkpointed(world: World, sink: CheckpointSink) -> None:
    world.append("audit", 5)
    world.append("custody", 5)
    stop, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            while not stop.is_set():
                world.append("audit", 3)
                world.append("custody", 2)
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    threads = [threading.Thread(target=writer),
               threading.Thread(target=checkpoints.run_periodically, args=(world.factory,),
                                kwargs={"chain_key": KEY, "sinks": [sink], "interval": 0.01, "stop": stop})]
    for thread in threads:
        thread.start()
    results: list[audit.VerifyResult] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until the chains have been checkpointed a few times while growing
            results += world.verify(sink).values()
            newest = sink.newest("audit", KEY)
            if newest and newest[0].checkpoint.sequence >= 4:
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    assert done.is_set() and not errors, errors
    assert all(r.ok for r in results), [r.reason for r in results if not r.ok]
    assert any(r.checkpoint is not None and r.checked > 0 for r in results)
    final = world.verify(sink)
    last = sink.newest("audit", KEY)[0].checkpoint
    assert last.sequence >= 4 and all(r.ok for r in final.values())
    assert final["audit"].checkpoint is not None and final["audit"].checkpoint.startswith(
        f"checkpoint {last.sequence} of")
    world.checkpoint(sink)  # the newest state, then nothing new to checkpoint
    assert world.checkpoint(sink, only_if_moved=True) == []


# --- the CLI and the API -----------------------------------------------------------------------------------------


def test_locard_audit_checkpoint_and_verify(world: World, s3_store: S3ObjectStore, settings: Settings,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    bucket = f"checkpoints-{uuid.uuid4().hex[:10]}"
    environment = {"LOCARD_HOME": str(tmp_path / "home"), "LOCARD_DATABASE_URL": settings.database_url,
                   "LOCARD_S3_ENDPOINT": settings.s3_endpoint, "LOCARD_S3_ACCESS_KEY": settings.s3_access_key,
                   "LOCARD_S3_SECRET_KEY": settings.s3_secret_key.get_secret_value(),
                   "LOCARD_AUDIT_KEY": KEY.decode(), "LOCARD_CHECKPOINT_BUCKET": bucket,
                   "LOCARD_CHECKPOINT_FILE": str(tmp_path / "operator.jsonl")}
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    try:
        world.append("audit", 15)
        assert cli.main(["audit", "checkpoint"]) == 0
        assert "audit    checkpoint 1 at entry 15" in capsys.readouterr().out
        assert cli.main(["audit", "verify"]) == 0
        out = capsys.readouterr().out
        assert "audit    15 entries checked: intact; against checkpoint 1 of" in out
        assert f"s3://{bucket}/checkpoints/audit/" in out or "operator.jsonl" in out
        table = TABLES["audit"]
        world.tamper(table.delete().where(table.c.id > 10), world.set_head("audit", 10, world.hash_of("audit", 10)))
        assert cli.main(["audit", "verify"]) == 1
        assert "BROKEN at entry 11" in capsys.readouterr().out
        assert cli.main(["audit", "checkpoint"]) == 1
        assert "no checkpoint written" in capsys.readouterr().out
    finally:
        get_settings.cache_clear()


def test_the_verify_endpoint_checks_the_newest_checkpoint(settings: Settings, s3_store: S3ObjectStore) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app
    from storage.roles import AUDITOR
    from tests.api_helpers import V1, account, log_in

    settings = settings.model_copy(update={"checkpoint_bucket": f"checkpoints-{uuid.uuid4().hex[:10]}"})
    with TestClient(create_app(settings, store=s3_store)) as client:
        log_in(client)
        for n in range(4):
            client.post(f"{V1}/cases", json={"reference": f"2026-07{n:02d}", "title": "x"})
        auditor = account(client, "aud", (AUDITOR,))
        factory = client.app.state.session_factory  # type: ignore[attr-defined]
        with factory() as session:
            made = checkpoints.checkpoint(session, chain_key=settings.chain_key,
                                          sinks=checkpoints.sinks_for(settings, s3_store, create=True))
        audit_made = {cp.chain: cp for cp in made}["audit"]
        results = {r["chain"]: r for r in client.get(f"{V1}/audit/verify", headers=auditor).json()}
        assert results["audit"]["ok"] and results["audit"]["checkpoint"].startswith("checkpoint 1 of")
        assert settings.checkpoint_bucket in results["audit"]["checkpoint"]
        engine = factory.kw["bind"]
        keep = audit_made.last_id - 3
        with engine.connect() as conn:
            keep_hash = conn.scalar(select(TABLES["audit"].c.entry_hash).where(TABLES["audit"].c.id == keep))
        World(engine, factory, "").tamper(TABLES["audit"].delete().where(TABLES["audit"].c.id > keep),
                                          update(HEADS).where(HEADS.c.name == "audit")
                                          .values(last_id=keep, last_hash=keep_hash))
        response = client.get(f"{V1}/audit/verify", headers=auditor)
        assert response.status_code == 200
        results = {r["chain"]: r for r in response.json()}
        assert not results["audit"]["ok"] and results["audit"]["first_bad_id"] == keep + 1
        assert f"records entry {audit_made.last_id}" in results["audit"]["reason"]


def test_checkpoint_records_are_exactly_what_is_signed() -> None:
    made = Checkpoint("audit", 3, 41, "ab" * 32, 0, dt.datetime(2026, 12, 1, 15, 0, tzinfo=dt.UTC))
    data = made.to_bytes(KEY)
    assert Checkpoint.parse(data, KEY, "here") == made
    with pytest.raises(checkpoints.ForgedCheckpoint, match="signature does not verify"):
        Checkpoint.parse(data, OTHER_KEY, "here")
    for broken in (b"", b"[]", b'{"format": "x"}', data.replace(b'"sequence":3', b'"sequence":-3')):
        with pytest.raises(checkpoints.ForgedCheckpoint, match="refused"):
            Checkpoint.parse(broken, KEY, "here")


def test_the_worker_services_checkpointer_creates_its_bucket_and_writes(world: World, settings: Settings,
                                                                        s3_store: S3ObjectStore) -> None:
    settings = settings.model_copy(update={"checkpoint_bucket": f"checkpoints-{uuid.uuid4().hex[:10]}",
                                           "audit_key": SecretStr(KEY.decode()),
                                           "checkpoint_interval_seconds": 0.05})
    assert not s3_store.bucket_exists(settings.checkpoint_bucket)
    world.append("audit", 7)
    stop = threading.Event()
    thread = checkpoints.start_periodic(settings, world.factory, s3_store, stop)
    sink = BucketCheckpoints(s3_store, settings.checkpoint_bucket)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not sink.newest("custody", KEY):
            stop.wait(0.05)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    [made] = sink.newest("audit", KEY)
    assert (made.checkpoint.last_id, made.checkpoint.last_hash) == (7, world.hash_of("audit", 7))


def test_the_cli_takes_the_embedded_stacks_audit_key_and_s3_identity(tmp_path: Path) -> None:
    """`locard audit verify` on an embedded stack needs no LOCARD_AUDIT_KEY: it reads the stack's own."""
    from locard.stack import StackState, with_stack_identity

    home = tmp_path / "home"
    home.mkdir()
    state = StackState(api_url="http://127.0.0.1:1", api_port=1, webhook_token="w" * 32, s3_endpoint="127.0.0.1:2",
                       audit_key="stack-audit-key-" + uuid.uuid4().hex)
    state.save(home)
    bare = Settings(_env_file=None, home=home, environment="development",  # type: ignore[call-arg]
                    audit_key="", s3_access_key="")
    completed = with_stack_identity(bare)
    assert completed.chain_key == state.audit_key.encode()
    assert completed.s3_access_key and completed.s3_secret_key.get_secret_value()
