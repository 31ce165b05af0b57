"""API uploads racing the bucket sweep and bucket intake, on real SeaweedFS and both record stores.

Every content uploaded becomes exactly one evidence item, recorded by its uploader (never by the sweep), with one
`received` custody entry and one plan job; every stored object version is accounted for; no request fails.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from storage.db import make_engine, session_factory
from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from storage.tables import CustodyEvent, Evidence, EvidenceObject, Job
from tests.api_helpers import account, log_in
from workers.dispatcher import Dispatcher

V1 = "/api/v1"
CONTENTS = 10  # distinct files ...
COPIES = 3  # ... each uploaded this many times at once, by different people
UPLOADERS = ("examiner-a", "examiner-b", "examiner-c")


@pytest.fixture
def client(settings: Settings, s3_store: S3ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store=s3_store), raise_server_exceptions=False) as test_client:
        yield log_in(test_client)


@pytest.fixture
def factory(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.effective_database_url)
    yield session_factory(engine, chain_key=settings.chain_key)
    engine.dispose()


def _content(index: int) -> bytes:
    """A distinct, reproducible file of ~256 KiB (large enough that storing it takes a moment)."""
    seed = hashlib.sha256(f"locard race {index}".encode()).digest()
    return (seed * (256 * 1024 // len(seed)))[: 256 * 1024 - index]


def _intake_rounds(dispatcher: Dispatcher, stop: threading.Event) -> None:
    """The dispatcher's intake half (sweep, then the intake jobs) in a loop, as fast as it goes."""
    while not stop.is_set():
        dispatcher.sweep()
        dispatcher.take_intake()


def test_uploads_racing_the_sweep_give_one_item_per_content_recorded_by_its_uploader(
        client: TestClient, settings: Settings, s3_store: S3ObjectStore, factory: sessionmaker[Session]) -> None:
    case = client.post(f"{V1}/cases", json={"reference": "2026-0900", "title": "Concurrent intake"})
    assert case.status_code == 201, case.text
    case_id = case.json()["id"]
    headers = {name: account(client, name) for name in UPLOADERS}
    files = [_content(i) for i in range(CONTENTS)]
    answers: list[tuple[int, str, httpx.Response]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(CONTENTS * COPIES + 2, timeout=60)

    def upload(index: int, uploader: str) -> None:
        try:
            start.wait()
            response = client.post(f"{V1}/cases/{case_id}/evidence", headers=headers[uploader],
                                   files={"file": (f"item-{index}.bin", files[index], "application/octet-stream")})
            answers.append((index, uploader, response))
        except BaseException as exc:
            errors.append(exc)

    def intake_loop(dispatcher: Dispatcher) -> None:
        start.wait()
        _intake_rounds(dispatcher, stop)

    stop = threading.Event()
    dispatchers = [Dispatcher(settings, factory, s3_store, {}, actor_factory=lambda name: object()) for _ in range(2)]
    sweepers = [threading.Thread(target=intake_loop, args=(d,)) for d in dispatchers]
    uploads = [threading.Thread(target=upload, args=(i, UPLOADERS[c])) for i in range(CONTENTS) for c in range(COPIES)]
    for thread in sweepers + uploads:
        thread.start()
    for thread in uploads:
        thread.join()
    stop.set()
    for thread in sweepers:
        thread.join()
    for _ in range(3):  # whatever the last rounds enqueued is taken in now
        dispatchers[0].sweep()
        while dispatchers[0].take_intake():
            pass

    assert not errors
    assert len(answers) == CONTENTS * COPIES
    failed = [(r.status_code, r.text) for _, _, r in answers if r.status_code not in (200, 201)]
    assert not failed, failed
    by_content: dict[int, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for index, uploader, response in answers:
        body = response.json()
        assert (response.status_code == 201) == body["created"]
        by_content[index].append((uploader, body))
    creators: dict[str, str] = {}
    for index, results in by_content.items():
        ids = {body["evidence"]["id"] for _, body in results}
        assert len(ids) == 1, f"content {index} became {len(ids)} items"
        created = [uploader for uploader, body in results if body["created"]]
        assert len(created) == 1, f"content {index}: {len(created)} requests answered created"
        assert results[0][1]["evidence"]["sha256"] == hashlib.sha256(files[index]).hexdigest()
        creators[ids.pop()] = created[0]

    with factory() as session:
        evidence = session.scalars(select(Evidence)).all()
        assert {e.id for e in evidence} == set(creators)
        for item in evidence:
            assert item.source == "api" and item.received_by == creators[item.id]
            received = session.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == item.id,
                                                                  CustodyEvent.action == "received")).all()
            assert [(e.actor, e.detail["source"]) for e in received] == [(creators[item.id], "api")]
            plans = session.scalar(select(func.count()).select_from(Job).where(Job.kind == "plan",
                                                                               Job.evidence_id == item.id))
            assert plans == 1
        failed_intake = session.scalars(select(Job.last_error).where(Job.kind == "intake",
                                                                     Job.state != "succeeded")).all()
        assert not failed_intake
        recorded = {(o.object_key, o.version_id): o for o in session.scalars(select(EvidenceObject))}
    stored = {(v.key, v.version_id) for v in s3_store.list_versions(s3_store.evidence_bucket)}
    assert stored == set(recorded)  # every stored version is recorded, as the item or as a duplicate of it
    assert sorted(o.outcome for o in recorded.values()).count("original") == CONTENTS
    assert all(o.evidence_id in creators for o in recorded.values())
    assert not os.listdir(client.app.state.spool)  # type: ignore[attr-defined]


def _take_in(dispatcher: Dispatcher) -> None:
    dispatcher.sweep()
    while dispatcher.take_intake():
        pass


def test_a_presigned_grant_takes_in_one_object_version(client: TestClient, settings: Settings,
                                                       s3_store: S3ObjectStore,
                                                       factory: sessionmaker[Session]) -> None:
    case = client.post(f"{V1}/cases", json={"reference": "2026-0901", "title": "Presigned"}).json()
    grant = client.post(f"{V1}/cases/{case['id']}/evidence/presigned-upload", headers=account(client, "uploader-p"),
                        json={"filename": "cctv.bin"})
    assert grant.status_code == 201, grant.text
    url, key = grant.json()["url"], grant.json()["key"]
    dispatcher = Dispatcher(settings, factory, s3_store, {}, actor_factory=lambda name: object())
    first, second = _content(1), _content(2)
    assert httpx.put(url, content=first, timeout=30).status_code == 200
    _take_in(dispatcher)
    assert httpx.put(url, content=second, timeout=30).status_code == 200  # the URL is still valid ...
    _take_in(dispatcher)
    versions = [v for v in s3_store.list_versions(s3_store.evidence_bucket) if v.key == key]
    assert len(versions) == 2  # ... and object lock keeps both versions
    with factory() as session:
        items = session.scalars(select(Evidence)).all()  # ... but only the first is evidence
        assert [(e.sha256, e.object_key) for e in items] == [(hashlib.sha256(first).hexdigest(), key)]
        custody = session.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == items[0].id)
                                  .order_by(CustodyEvent.id)).all()
        outcomes = sorted(session.scalars(select(EvidenceObject.outcome)).all())
    assert [e.action for e in custody] == ["received", "second_version_refused"]
    assert custody[0].detail["uploader"] == "uploader-p"
    refused = custody[1].detail
    assert refused["sha256"] == hashlib.sha256(second).hexdigest() and refused["granted_to"] == "uploader-p"
    assert outcomes == ["original", "rejected"]
    failures = client.get(f"{V1}/intake/failures").json()
    assert len(failures) == 1 and "single-use presigned upload grant" in failures[0]["last_error"]
    assert failures[0]["dedupe_key"].endswith(refused["version_id"])
    _take_in(dispatcher)  # nothing is taken in again
    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Evidence)) == 1
