"""Intake rules on both record stores, with the in-memory object store: idempotent on version and on SHA-256."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from storage import intake, records, s3events
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.tables import Case, CustodyEvent, Evidence, EvidenceObject, Job
from tests.media_samples import bus_jpg_path

ACTOR = "examiner-1"


@pytest.fixture
def store() -> MemoryObjectStore:
    return MemoryObjectStore()


@pytest.fixture
def case(factory: sessionmaker[Session]) -> Case:
    with transaction(factory) as session:
        return records.create_case(session, reference="2026-0042", title="Burglary", description="",
                                   created_by=ACTOR)


def _ingest(factory: sessionmaker[Session], store: MemoryObjectStore, case: Case, path: Path) -> intake.IntakeResult:
    data = path.read_bytes()
    with transaction(factory) as session:
        return intake.ingest_file(session, store, case=case, path=path, sha256=hashlib.sha256(data).hexdigest(),
                                  size=len(data), filename=path.name, declared_media_type="image/jpeg", actor=ACTOR)


def _count(factory: sessionmaker[Session], model: type) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_same_content_twice_is_one_evidence_item(factory: sessionmaker[Session], store: MemoryObjectStore,
                                                 case: Case) -> None:
    first = _ingest(factory, store, case, bus_jpg_path())
    second = _ingest(factory, store, case, bus_jpg_path())
    assert first.created and not second.created and first.evidence.id == second.evidence.id
    assert _count(factory, Evidence) == 1 and len(store.objects) == 1
    with factory() as session:
        actions = [e.action for e in records.custody_of(session, evidence_id=first.evidence.id)]
        plan_jobs = session.scalars(select(Job).where(Job.kind == "plan")).all()
    assert actions == ["received", "stored", "duplicate_received"]
    assert len(plan_jobs) == 1
    assert first.evidence.media_type == "image/jpeg"


def test_received_custody_holds_a_minio_format_event(factory: sessionmaker[Session], store: MemoryObjectStore,
                                                     case: Case) -> None:
    result = _ingest(factory, store, case, bus_jpg_path())
    with factory() as session:
        received = session.scalars(select(CustodyEvent).where(CustodyEvent.action == "received")).one()
    record = received.detail["s3_event"]
    assert record["eventName"] == "s3:ObjectCreated:Put"
    assert s3events.parse_object_created(record) == (store.evidence_bucket, result.evidence.object_key,
                                                   result.evidence.version_id, result.evidence.size)


def test_bucket_object_becomes_evidence_once(factory: sessionmaker[Session], store: MemoryObjectStore,
                                             case: Case) -> None:
    data = bus_jpg_path().read_bytes()
    stored = store.put_raw(f"cases/{case.reference}/scene/bus.jpg", data)
    record = s3events.object_created_record(bucket=stored.bucket, key=stored.key, version_id=stored.version_id,
                                          size=stored.size, principal="minio-user", source="minio")
    with transaction(factory) as session:
        assert intake.record_object_event(session, evidence_bucket=store.evidence_bucket, record=record)
        assert intake.record_object_event(session, evidence_bucket=store.evidence_bucket, record=record) \
            is not None  # same job again, not a new one
    assert _count(factory, Job) == 1
    for _ in range(2):  # at-least-once delivery: processing twice changes nothing
        with transaction(factory) as session:
            result = intake.process_intake(session, store, record=record, actor="intake", inbox_reference="INBOX",
                                           max_bytes=10**8)
            assert result is not None
    with factory() as session:
        evidence = session.scalars(select(Evidence)).one()
        assert evidence.case_id == case.id and evidence.source == "bucket"
        assert evidence.sha256 == hashlib.sha256(data).hexdigest()
    with transaction(factory) as session:  # once recorded, an event for that version queues nothing
        assert intake.record_object_event(session, evidence_bucket=store.evidence_bucket, record=record) is None


def test_same_content_in_the_bucket_is_recorded_as_duplicate(factory: sessionmaker[Session],
                                                             store: MemoryObjectStore, case: Case) -> None:
    original = _ingest(factory, store, case, bus_jpg_path())
    copy = store.put_raw(f"cases/{case.reference}/copy.jpg", bus_jpg_path().read_bytes())
    record = s3events.object_created_record(bucket=copy.bucket, key=copy.key, version_id=copy.version_id,
                                          size=copy.size, principal="someone")
    with transaction(factory) as session:
        result = intake.process_intake(session, store, record=record, actor="intake", inbox_reference="INBOX",
                                       max_bytes=10**8)
    assert result is not None and not result.created and result.evidence.id == original.evidence.id
    assert _count(factory, Evidence) == 1
    with factory() as session:
        outcomes = sorted(session.scalars(select(EvidenceObject.outcome)).all())
    assert outcomes == ["duplicate", "original"]


def test_unknown_case_key_goes_to_the_inbox(factory: sessionmaker[Session], store: MemoryObjectStore) -> None:
    stored = store.put_raw("dropbox/photo.jpg", bus_jpg_path().read_bytes())
    record = s3events.object_created_record(bucket=stored.bucket, key=stored.key, version_id=stored.version_id,
                                          size=stored.size, principal="p")
    with transaction(factory) as session:
        result = intake.process_intake(session, store, record=record, actor="intake", inbox_reference="INBOX",
                                       max_bytes=10**8)
        assert result is not None
        assert session.get_one(Case, result.evidence.case_id).reference == "INBOX"


def test_sweep_finds_only_unseen_versions(factory: sessionmaker[Session], store: MemoryObjectStore,
                                          case: Case) -> None:
    _ingest(factory, store, case, bus_jpg_path())  # known through the API
    store.put_raw(f"cases/{case.reference}/a.bin", b"first")
    store.put_raw(f"cases/{case.reference}/a.bin", b"second version, same key")
    with transaction(factory) as session:
        assert intake.sweep(session, store, principal="sweep") == 2
    with transaction(factory) as session:
        assert intake.sweep(session, store, principal="sweep") == 0


def test_other_events_and_buckets_are_ignored(factory: sessionmaker[Session], store: MemoryObjectStore) -> None:
    record = s3events.object_created_record(bucket="elsewhere", key="k", version_id="v", size=1, principal="p")
    removed = dict(record, eventName="s3:ObjectRemoved:Delete")
    with transaction(factory) as session:
        assert intake.record_object_event(session, evidence_bucket=store.evidence_bucket, record=record) is None
        assert intake.record_object_event(session, evidence_bucket=store.evidence_bucket, record=removed) is None


def test_object_keys_with_spaces_round_trip() -> None:
    record = s3events.object_created_record(bucket="b", key="cases/X/my photo+1.jpg", version_id="v", size=3,
                                          principal="p")
    assert s3events.parse_object_created(record) == ("b", "cases/X/my photo+1.jpg", "v", 3)


def test_custody_is_append_only_in_the_database(factory: sessionmaker[Session], store: MemoryObjectStore,
                                                case: Case) -> None:
    from sqlalchemy import delete, update
    from sqlalchemy.exc import DBAPIError

    _ingest(factory, store, case, bus_jpg_path())
    for statement in (update(CustodyEvent).values(actor="someone else"), delete(CustodyEvent)):
        with pytest.raises(DBAPIError, match="append-only"), transaction(factory) as session:
            session.execute(statement)
    assert _count(factory, CustodyEvent) == 2


def test_simultaneous_uploads_of_the_same_content_give_one_item(factory: sessionmaker[Session], case: Case) -> None:
    import threading

    class RacingStore(MemoryObjectStore):
        """Holds every writer in put_evidence until all have passed the duplicate check."""

        barrier = threading.Barrier(3, timeout=30)

        def put_evidence(self, key: str, path: Path, *, sha256: str, content_type: str) -> Any:
            self.barrier.wait()
            return super().put_evidence(key, path, sha256=sha256, content_type=content_type)

    store = RacingStore()
    results: list[intake.IntakeResult] = []
    path = bus_jpg_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()

    def upload() -> None:  # as the API does: no transaction is open while the object is stored
        results.append(intake.ingest_upload(factory, store, case=case, path=path, sha256=digest,
                                            size=path.stat().st_size, filename=path.name,
                                            declared_media_type="image/jpeg", actor=ACTOR))

    threads = [threading.Thread(target=upload) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 3 and len({r.evidence.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert _count(factory, Evidence) == 1 and len(store.objects) == 3
    with factory() as session:  # the two extra stored copies were recorded as duplicates by their uploads
        outcomes = sorted(session.scalars(select(EvidenceObject.outcome)).all())
    assert outcomes == ["duplicate", "duplicate", "original"]
    with transaction(factory) as session:  # so the sweep has nothing left to take in
        assert intake.sweep(session, store, principal="sweep") == 0
