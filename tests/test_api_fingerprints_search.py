"""Case API: declaring a fingerprint at upload, search and fingerprint routes, and their clear errors."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import create_app
from storage import analysis, jobs
from storage.db import make_engine, session_factory, transaction
from storage.messages import HeldTemplate, ReportedFinding, RunOutcome
from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from storage.tables import Job, MatchRequest
from tests.api_helpers import log_in, purpose
from tests.media_samples import bus_jpg_path
from tests.test_api import V1, _problem

WHY = purpose("2026-0042")


@pytest.fixture
def client(settings: Settings, s3_store: S3ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store=s3_store)) as test_client:
        yield log_in(test_client)


@pytest.fixture
def case_id(client: TestClient) -> str:
    return str(client.post(f"{V1}/cases", json={"reference": "2026-0042", "title": "Burglary, Namur"}).json()["id"])


def _upload(client: TestClient, case_id: str, data: bytes, **fields: str) -> dict:
    response = client.post(
        f"{V1}/cases/{case_id}/evidence", files={"file": ("print.png", data, "image/png")}, data=fields
    )
    assert response.status_code in (200, 201), response.text
    return dict(response.json()["evidence"])


def _record_template(settings: Settings, evidence_id: str, iso: bytes) -> None:
    factory = session_factory(make_engine(settings.effective_database_url))
    with transaction(factory) as session:
        plan = session.scalar(select(Job).where(Job.evidence_id == evidence_id, Job.kind == "plan"))
        assert plan is not None
        jobs.enqueue(
            session,
            kind="analysis",
            dedupe_key=f"analysis:{evidence_id}:fingerprints",
            evidence_id=evidence_id,
            analyzer="fingerprints",
        )
    claimed = jobs.claim(factory, kinds=["analysis"], owner="t", lease_seconds=30, limit=10)
    job = next(job for job in claimed if job.evidence_id == evidence_id)
    finding = ReportedFinding(
        kind="fingerprint.template", data={"minutiae": 2}, held=HeldTemplate(iso=iso, minutiae=2, nfiq2=55)
    )
    with transaction(factory) as session:
        assert (
            analysis.record_outcome(
                session,
                job_id=job.id,
                owner="t",
                attempt=1,
                outcome=RunOutcome(
                    analyzer="fingerprints", analyzer_version="1", status="succeeded", findings=[finding]
                ),
            )
            is not None
        )


def test_upload_declares_a_fingerprint_and_its_resolution(client: TestClient, case_id: str) -> None:
    data = bus_jpg_path().read_bytes()
    item = _upload(client, case_id, data, evidence_kind="fingerprint", ppi="1000")
    assert (item["declared_kind"], item["declared_ppi"]) == ("fingerprint", 1000.0)
    custody = client.get(f"{V1}/evidence/{item['id']}").json()["custody"]
    assert custody[0]["detail"]["declared_kind"] == "fingerprint" and custody[0]["detail"]["declared_ppi"] == 1000.0
    for fields, title in (
        ({"evidence_kind": "tattoo"}, "Unknown evidence kind"),
        ({"ppi": "lots"}, "Invalid"),
        ({"ppi": "20"}, "Invalid"),
        ({"ppi": "nan"}, "Invalid"),
    ):
        response = client.post(
            f"{V1}/cases/{case_id}/evidence", files={"file": ("x.jpg", data[:1000] + b"x")}, data=fields
        )
        assert _problem(response, 422)["title"].startswith(title)
    presigned = client.post(
        f"{V1}/cases/{case_id}/evidence/presigned-upload",
        json={"filename": "left thumb.wsq", "evidence_kind": "fingerprint"},
    ).json()
    assert "/fingerprints/left_thumb.wsq" in presigned["key"]


def test_fingerprint_requests_are_queued_and_explained(client: TestClient, case_id: str, settings: Settings) -> None:
    probe = _upload(client, case_id, b"probe-bytes", evidence_kind="fingerprint")["id"]
    other = _upload(client, case_id, b"other-bytes", evidence_kind="fingerprint")["id"]
    body = {"probe_evidence_id": probe, "candidate_evidence_id": other}
    assert (
        "no fingerprint template"
        in _problem(client.post(f"{V1}/fingerprints/verifications", json=body, headers=WHY), 409)["title"].lower()
    )
    _problem(
        client.post(f"{V1}/fingerprints/verifications", json={**body, "candidate_evidence_id": "nope"}, headers=WHY),
        404,
    )
    _problem(
        client.post(f"{V1}/fingerprints/searches", json={"probe_evidence_id": probe, "limit": 0}, headers=WHY), 422
    )
    _problem(client.get(f"{V1}/evidence/{probe}/fingerprint-template"), 404)
    _record_template(settings, probe, b"FMR\x00 20\x00probe")
    _record_template(settings, other, b"FMR\x00 20\x00other")
    template = client.get(f"{V1}/evidence/{probe}/fingerprint-template")
    assert template.status_code == 200 and template.content == b"FMR\x00 20\x00probe"
    queued = client.post(f"{V1}/fingerprints/verifications", json=body, headers=WHY)
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    search = client.post(f"{V1}/fingerprints/searches", json={"probe_evidence_id": probe, "limit": 5}, headers=WHY)
    assert search.status_code == 202 and search.json()["parameters"] == {"limit": 5, "purpose_case": "2026-0042"}
    read = client.get(f"{V1}/fingerprints/requests/{search.json()['id']}", headers=WHY).json()
    assert read["kind"] == "fingerprint_search" and read["requested_by"]
    _problem(client.get(f"{V1}/fingerprints/requests/unknown", headers=WHY), 404)
    _problem(client.get(f"{V1}/fingerprints/requests/{search.json()['id']}"), 403)  # reading needs a purpose
    factory = session_factory(make_engine(settings.effective_database_url))
    with factory() as session:
        match_jobs = session.scalars(select(Job).where(Job.kind == "match")).all()
        assert sorted(job.payload["request_id"] for job in match_jobs) == sorted(
            session.scalars(select(MatchRequest.id)).all()
        )


def test_search_validates_its_query(client: TestClient, case_id: str) -> None:
    _problem(client.get(f"{V1}/search", params={"q": "niets"}), 403)  # across cases: a purpose is required
    assert client.get(f"{V1}/search", params={"q": "niets"}, headers=WHY).json() == []
    assert client.get(f"{V1}/cases/{case_id}/search", params={"q": '"a phrase" AND *'}).json() == []
    _problem(client.get(f"{V1}/search", params={"q": ""}, headers=WHY), 422)
    _problem(client.get(f"{V1}/search", params={"q": "x" * 501}, headers=WHY), 422)
    _problem(client.get(f"{V1}/cases/nope/search", params={"q": "x"}), 404)
