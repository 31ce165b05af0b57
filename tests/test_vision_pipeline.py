"""Every analyzer on real local Ray, through the case API: findings with model provenance, in dependency order."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from storage import intake, records
from storage.db import transaction
from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from storage.tables import Case
from tests.api_helpers import log_in
from tests.media_samples import bus_jpg_path, truncated_copy
from tests.test_dispatcher import _run_until_settled, ray_cluster  # noqa: F401 - a module-scoped fixture
from tests.test_plates import plate_photo
from workers.analyzers import registry
from workers.dispatcher import Dispatcher
from workers.service import ray_actor_factory

pytestmark = [pytest.mark.timeout(600), pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]
V1 = "/api/v1"
VISION = ("objects", "plates", "faces", "similarity")


def _ingest(factory: sessionmaker[Session], store: S3ObjectStore, case: Case, path: Path) -> str:
    data = path.read_bytes()
    with transaction(factory) as session:
        return intake.ingest_file(session, store, case=case, path=path, sha256=hashlib.sha256(data).hexdigest(),
                                  size=len(data), filename=path.name, declared_media_type="image/jpeg",
                                  actor="t").evidence.id


def test_all_analyzers_through_the_api(ray_cluster: None, settings: Settings,  # noqa: F811
                                       factory: sessionmaker[Session], s3_store: S3ObjectStore,
                                       tmp_path: Path) -> None:
    with transaction(factory) as session:
        case = records.create_case(session, reference="2026-0300", title="Hit and run", description="",
                                   created_by="t")
    photo = _ingest(factory, s3_store, case, plate_photo("BE", tmp_path)[0])
    broken = _ingest(factory, s3_store, case, truncated_copy(bus_jpg_path(), tmp_path / "cut.jpg", 0.3))
    analyzers = registry.load_all()
    assert set(VISION) <= set(analyzers)
    settings = settings.model_copy(update={"job_lease_seconds": 120.0})
    dispatcher = Dispatcher(settings, factory, s3_store, analyzers,
                            actor_factory=ray_actor_factory(settings, analyzers))
    dispatcher.warm_up()
    _run_until_settled(dispatcher, factory, timeout=300)

    with TestClient(create_app(settings, store=s3_store)) as client:

        log_in(client)
        found = client.get(f"{V1}/evidence/{photo}/findings").json()
        by_kind: dict[str, list[dict]] = {}
        for finding in found:
            by_kind.setdefault(finding["kind"], []).append(finding)
        classes = [f["data"]["class"] for f in by_kind["objects.detection"]]
        assert "bus" in classes and classes.count("person") >= 4
        assert [f["data"]["text"] for f in by_kind["plates.plate"]] == ["1-ABC-234"]
        assert by_kind["plates.plate"][0]["data"]["vehicle_source"] == "objects"
        faces = by_kind["faces.face"]
        assert faces and all(f["data"]["search"] == "person-regions" for f in faces)  # where objects saw people
        assert any(f["data"]["embedding"] and len(f["data"]["embedding"]["vector"]) == 128 for f in faces)
        assert len(by_kind["similarity.embedding"][0]["data"]["vector"]) == by_kind["similarity.embedding"][0][
            "data"]["dimension"]
        assert by_kind["similarity.keypoints"][0]["data"]["count"] > 100

        status = client.get(f"{V1}/evidence/{photo}/analysis").json()
        runs = {run["analyzer"]: run for run in status["runs"]}
        assert status["state"] == "done" and all(run["status"] == "succeeded" for run in runs.values())
        for name in VISION:  # provenance: every model-backed run names its weights by SHA-256
            assert "sha256" in str(runs[name]["models"]), name
        assert runs["plates"]["started_at"] >= runs["objects"]["finished_at"]  # after the objects it reuses
        assert runs["faces"]["started_at"] >= runs["objects"]["finished_at"]

        broken_runs = client.get(f"{V1}/evidence/{broken}/analysis").json()["runs"]
        failed = {run["analyzer"]: run["error"] for run in broken_runs if run["status"] == "failed"}
        for name in (*VISION, "media_probe"):
            assert "truncated" in (failed.get(name) or ""), (name, failed.get(name))
