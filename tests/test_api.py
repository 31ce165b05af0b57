"""The case API against real SeaweedFS and both record stores: intake, custody, verified download, bad input."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from api.main import create_app
from storage import s3events
from storage.db import make_engine, session_factory, transaction
from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from storage.tables import Evidence, Job
from tests.api_helpers import log_in
from tests.media_samples import bus_jpg_path, pdf_bytes

V1 = "/api/v1"
TOKEN = {"Authorization": "Bearer test-webhook-token-0123456789"}


@pytest.fixture
def client(settings: Settings, s3_store: S3ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store=s3_store)) as test_client:
        yield log_in(test_client)


@pytest.fixture
def case_id(client: TestClient) -> str:
    response = client.post(f"{V1}/cases", json={"reference": "2026-0001", "title": "Armed robbery, Gent"})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _upload(client: TestClient, case_id: str, data: bytes, name: str = "bus.jpg") -> httpx.Response:
    return client.post(f"{V1}/cases/{case_id}/evidence", files={"file": (name, data, "image/jpeg")})


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_cases_create_list_get(client: TestClient, case_id: str) -> None:
    assert [c["id"] for c in client.get(f"{V1}/cases").json()] == [case_id]
    assert client.get(f"{V1}/cases/{case_id}").json()["reference"] == "2026-0001"
    _problem(client.post(f"{V1}/cases", json={"reference": "2026-0001", "title": "again"}), 409)
    _problem(client.get(f"{V1}/cases/no-such-case"), 404)
    _problem(client.post(f"{V1}/cases", json={"reference": "../etc", "title": "x"}), 422)


def test_upload_twice_gives_one_item_with_custody(client: TestClient, case_id: str) -> None:
    data = bus_jpg_path().read_bytes()
    first = _upload(client, case_id, data)
    assert first.status_code == 201, first.text
    evidence = first.json()["evidence"]
    assert first.json()["created"] is True
    assert evidence["sha256"] == hashlib.sha256(data).hexdigest() and evidence["size"] == len(data)
    assert evidence["media_type"] == "image/jpeg" and evidence["version_id"]
    second = _upload(client, case_id, data, name="copy-of-bus.jpg")
    assert second.status_code == 200 and second.json()["created"] is False
    assert second.json()["evidence"]["id"] == evidence["id"]
    assert len(client.get(f"{V1}/cases/{case_id}/evidence").json()) == 1
    detail = client.get(f"{V1}/evidence/{evidence['id']}").json()
    assert [e["action"] for e in detail["custody"]] == ["received", "stored", "duplicate_received"]
    assert detail["custody"][0]["detail"]["s3_event"]["eventName"] == "s3:ObjectCreated:Put"
    status = client.get(f"{V1}/evidence/{evidence['id']}/analysis").json()
    assert status["state"] == "planning"  # the workers are not running in this test


def test_download_is_verified(client: TestClient, case_id: str, settings: Settings) -> None:
    data = bus_jpg_path().read_bytes()
    evidence = _upload(client, case_id, data).json()["evidence"]
    response = client.get(f"{V1}/evidence/{evidence['id']}/content")
    assert response.status_code == 200 and response.content == data
    assert response.headers["x-locard-sha256"] == evidence["sha256"]
    # The record and the stored bytes disagree (tampering on either side): the download is refused.
    engine = make_engine(settings.effective_database_url)
    with transaction(session_factory(engine)) as session:
        session.execute(update(Evidence).where(Evidence.id == evidence["id"]).values(sha256="0" * 64))
    engine.dispose()
    _problem(client.get(f"{V1}/evidence/{evidence['id']}/content"), 409)
    actions = [e["action"] for e in client.get(f"{V1}/evidence/{evidence['id']}").json()["custody"]]
    assert actions[-2:] == ["downloaded", "integrity_failure"]


def test_bad_uploads_get_clear_errors(client: TestClient, case_id: str, settings: Settings) -> None:
    _problem(_upload(client, case_id, b""), 422)
    over = _problem(_upload(client, case_id, b"\0" * (settings.max_upload_bytes + 1)), 413)
    assert "limit" in over["detail"]
    _problem(client.post(f"{V1}/cases/{case_id}/evidence", content=b"raw", headers={"content-type": "image/jpeg"}),
             415)
    _problem(client.post(f"{V1}/cases/{case_id}/evidence", data={"note": "no file"}, files={"other": ("a", b"x")}),
             422)
    malformed = client.post(f"{V1}/cases/{case_id}/evidence", content=b"--xyz\r\nnot a multipart body",
                            headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert malformed.status_code in (400, 422)
    _problem(_upload(client, "no-such-case", b"x"), 404)
    assert client.get(f"{V1}/cases/{case_id}/evidence").json() == []  # nothing half-recorded
    assert client.get(f"{V1}/health").json() == {"status": "ok"}  # and the service keeps serving


def test_pdf_named_jpg_is_sniffed_as_pdf(client: TestClient, case_id: str) -> None:
    evidence = _upload(client, case_id, pdf_bytes(), name="holiday.jpg").json()["evidence"]
    assert evidence["media_type"] == "application/pdf" and evidence["declared_media_type"] == "image/jpeg"


def test_webhook_requires_the_token_and_a_well_formed_event(client: TestClient, s3_store: S3ObjectStore,
                                                           settings: Settings) -> None:
    record = s3events.object_created_record(bucket=s3_store.evidence_bucket, key="cases/2026-0001/a.jpg",
                                          version_id="v1", size=10, principal="minio", source="minio")
    body = {"EventName": "s3:ObjectCreated:Put", "Key": f"{s3_store.evidence_bucket}/cases/2026-0001/a.jpg",
            "Records": [record]}
    url = f"{V1}/intake/minio-events"
    _problem(client.post(url, json=body), 401)
    _problem(client.post(url, json=body, headers={"Authorization": "Bearer wrong"}), 401)
    _problem(client.post(url, json={"Records": "nope"}, headers=TOKEN), 400)
    _problem(client.post(url, json={"Records": [{"eventName": "s3:ObjectCreated:Put"}]}, headers=TOKEN), 400)
    _problem(client.post(url, content=b"{not json", headers={**TOKEN, "content-type": "application/json"}), 422)
    assert client.post(url, json=body, headers=TOKEN).json() == {"records": 1, "queued": 1}
    assert client.post(url, json=body, headers=TOKEN).json() == {"records": 1, "queued": 1}  # same job again
    engine = make_engine(settings.effective_database_url)
    with session_factory(engine)() as session:
        assert session.query(Job).filter(Job.kind == "intake").count() == 1
    engine.dispose()


def test_presigned_upload_lands_in_the_evidence_bucket(client: TestClient, case_id: str,
                                                       s3_store: S3ObjectStore) -> None:
    answer = client.post(f"{V1}/cases/{case_id}/evidence/presigned-upload", json={"filename": "cctv still.jpg"})
    assert answer.status_code == 201, answer.text
    target = answer.json()
    assert target["key"].startswith("cases/2026-0001/uploads/") and target["key"].endswith("cctv_still.jpg")
    data = bus_jpg_path().read_bytes()
    put = httpx.put(target["url"], content=data, timeout=30)
    assert put.status_code == 200, put.text
    keys = [v.key for v in s3_store.list_versions(s3_store.evidence_bucket)]
    assert target["key"] in keys


def test_findings_filter_and_openapi(client: TestClient, case_id: str) -> None:
    assert client.get(f"{V1}/cases/{case_id}/findings", params={"kind": "hash.*"}).json() == []
    paths = client.get(f"{V1}/openapi.json").json()["paths"]
    assert f"{V1}/evidence/{{evidence_id}}/content" in paths and f"{V1}/intake/minio-events" in paths
