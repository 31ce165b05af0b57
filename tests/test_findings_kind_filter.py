"""The findings `kind` filter: only a trailing ".*" is a prefix; `%` and `_` are literal characters. And the
one scan-resolution rule shared by the API and the fingerprint analyzer."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from models import fingerprints
from storage import analysis, jobs, records
from storage.db import transaction
from storage.media import PRINT_MAX_PPI, PRINT_MIN_PPI
from storage.messages import ReportedFinding, RunOutcome
from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from storage.tables import Evidence
from tests.api_helpers import log_in
from tests.media_samples import bus_jpg_path
from tests.test_api import V1

KINDS = ["objects.detection", "objects.crop", "hash.pdq", "hash.cryptographic", "text.page"]


def _record(factory: sessionmaker[Session]) -> str:
    with transaction(factory) as session:
        case = records.create_case(session, reference="2026-K1", title="t", description="", created_by="test")
        evidence = Evidence(case_id=case.id, sha256="a" * 64, size=1, media_type="image/jpeg", bucket="b",
                            object_key="k/1", source="api", received_by="test")
        session.add(evidence)
        session.flush()
        evidence_id = evidence.id
        jobs.enqueue(session, kind="analysis", dedupe_key=f"analysis:{evidence_id}:x:{uuid.uuid4()}",
                     evidence_id=evidence_id, analyzer="x")
    [job] = jobs.claim(factory, kinds=["analysis"], owner="w", lease_seconds=30, limit=1)
    with transaction(factory) as session:
        assert analysis.record_outcome(session, job_id=job.id, owner="w", attempt=1, outcome=RunOutcome(
            analyzer="x", analyzer_version="1", status="succeeded",
            findings=[ReportedFinding(kind=kind) for kind in KINDS])) is not None
    return evidence_id


@pytest.mark.parametrize(("kind", "expected"), [
    ("objects.*", {"objects.detection", "objects.crop"}),
    ("hash.pdq", {"hash.pdq"}),
    ("%.*", set()), ("_bjects.*", set()), ("%", set()), ("hash%", set()), ("h_sh.pdq", set()),
    ("hash.*", {"hash.pdq", "hash.cryptographic"}), ("hash*", set()), (None, set(KINDS)),
])
def test_kind_filter(factory: sessionmaker[Session], kind: str | None, expected: set[str]) -> None:
    evidence_id = _record(factory)
    with factory() as session:
        found = records.list_findings(session, evidence_id=evidence_id, kind=kind)
        assert {finding.kind for finding in found} == expected


def test_the_engine_and_the_api_share_one_resolution_range() -> None:
    assert (fingerprints.MIN_PPI, fingerprints.MAX_PPI) == (PRINT_MIN_PPI, PRINT_MAX_PPI)


@pytest.fixture
def client(settings: Settings, s3_store: S3ObjectStore) -> Iterator[TestClient]:
    with TestClient(create_app(settings, store=s3_store)) as test_client:
        yield log_in(test_client)


def test_the_api_accepts_exactly_the_resolutions_the_analyzer_processes(client: TestClient) -> None:
    case_id = client.post(f"{V1}/cases", json={"reference": "2026-PPI", "title": "prints"}).json()["id"]
    data = bus_jpg_path().read_bytes()
    for ppi, accepted in ((PRINT_MIN_PPI - 1, False), (PRINT_MIN_PPI, True), (PRINT_MAX_PPI, True),
                          (PRINT_MAX_PPI + 1, False), (5000, False), (100, False)):
        content = data + str(ppi).encode()  # distinct content each time
        response = client.post(f"{V1}/cases/{case_id}/evidence", files={"file": ("print.jpg", content)},
                               data={"evidence_kind": "fingerprint", "ppi": str(ppi)})
        assert (response.status_code in (200, 201)) is accepted, (ppi, response.text)
        if not accepted:
            assert response.status_code == 422 and f"{PRINT_MAX_PPI:g}" in response.json()["detail"]
