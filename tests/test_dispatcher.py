"""Analysis on real local Ray, SeaweedFS and both record stores: findings, failures with reasons, a real death.

The dispatcher's bookkeeping (leases, retries, lost workers, budgets) is tested on the fake runtime in
test_dispatcher_fake.py; these tests prove it end to end on Ray.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from storage import intake, records, s3events
from storage.db import transaction
from storage.messages import EvidenceMessage, RunOutcome
from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from storage.tables import AnalysisRun, Case, Evidence, Finding, Job
from tests.api_helpers import log_in
from tests.media_samples import bomb_png, bus_jpg_path, jpeg_with_exif, pdf_bytes, truncated_copy
from workers.actor import AnalyzerWorker
from workers.analyzers import registry
from workers.dispatcher import Dispatcher
from workers.runtime import RayRuntime, init_ray
from workers.service import ray_actor_factory

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    init_ray(Settings(_env_file=None, ray_num_cpus=2))  # type: ignore[call-arg]
    yield
    RayRuntime().shutdown()


def _case(factory: sessionmaker[Session]) -> Case:
    with transaction(factory) as session:
        return records.create_case(session, reference="2026-0100", title="Fraud", description="", created_by="t")


def _ingest(factory: sessionmaker[Session], store: S3ObjectStore, case: Case, path: Path, name: str) -> str:
    data = path.read_bytes()
    with transaction(factory) as session:
        result = intake.ingest_file(session, store, case=case, path=path, sha256=hashlib.sha256(data).hexdigest(),
                                    size=len(data), filename=name, declared_media_type=None, actor="t")
        return result.evidence.id


def _run_until_settled(dispatcher: Dispatcher, factory: sessionmaker[Session], timeout: float = 120) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run, args=(stop,), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            time.sleep(0.3)
            with factory() as session:
                open_jobs = session.scalar(select(func.count()).select_from(Job)
                                           .where(Job.state.in_(("queued", "running"))))
                total = session.scalar(select(func.count()).select_from(Job).where(Job.kind == "analysis"))
            if open_jobs == 0 and total:
                return
        raise AssertionError("analysis did not settle in time")
    finally:
        stop.set()
        thread.join(timeout=30)


def _findings(factory: sessionmaker[Session], evidence_id: str) -> dict[str, list[dict[str, Any]]]:
    with factory() as session:
        rows = session.scalars(select(Finding).where(Finding.evidence_id == evidence_id)).all()
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        found.setdefault(row.kind, []).append(row.data)
    return found


def _runs(factory: sessionmaker[Session], evidence_id: str) -> dict[str, list[AnalysisRun]]:
    with factory() as session:
        rows = session.scalars(select(AnalysisRun).where(AnalysisRun.evidence_id == evidence_id)).all()
    runs: dict[str, list[AnalysisRun]] = {}
    for row in rows:
        runs.setdefault(row.analyzer, []).append(row)
    return runs


def test_evidence_is_analysed_and_bad_input_fails_with_reasons(
        ray_cluster: None, settings: Settings, factory: sessionmaker[Session], s3_store: S3ObjectStore,
        tmp_path: Path) -> None:
    case = _case(factory)
    photo = _ingest(factory, s3_store, case, jpeg_with_exif(tmp_path / "exif.jpg"), "IMG_0001.jpg")
    truncated = _ingest(factory, s3_store, case, truncated_copy(bus_jpg_path(), tmp_path / "t.jpg", 0.5), "t.jpg")
    bomb = _ingest(factory, s3_store, case, bomb_png(tmp_path / "bomb.png"), "bomb.png")
    (tmp_path / "doc.jpg").write_bytes(pdf_bytes())
    pdf = _ingest(factory, s3_store, case, tmp_path / "doc.jpg", "doc.jpg")
    # An empty object written straight into the bucket, announced twice (at-least-once delivery) and swept.
    empty_key = f"cases/{case.reference}/direct/empty.jpg"
    version = s3_store.client.put_object(s3_store.evidence_bucket, empty_key, io.BytesIO(b""), 0).version_id
    record = s3events.object_created_record(bucket=s3_store.evidence_bucket, key=empty_key, version_id=version or "",
                                          size=0, principal="minio", source="minio")
    with transaction(factory) as session:
        intake.record_object_event(session, evidence_bucket=s3_store.evidence_bucket, record=record)
        intake.record_object_event(session, evidence_bucket=s3_store.evidence_bucket, record=record)

    analyzers = registry.select(["hashes", "media_probe"])
    dispatcher = Dispatcher(settings, factory, s3_store, analyzers,
                            actor_factory=ray_actor_factory(settings, analyzers))
    _run_until_settled(dispatcher, factory)

    found = _findings(factory, photo)
    assert found["hash.cryptographic"][0]["sha256"] == hashlib.sha256(
        (tmp_path / "exif.jpg").read_bytes()).hexdigest()
    assert len(found["hash.pdq"][0]["pdq"]) == 64
    exif = found["media.exif"][0]
    assert exif["make"] == "Canon" and abs(exif["gps"]["latitude"] - 48.858200) < 1e-4
    probe = found["media.probe"][0]
    assert (probe["upright_width"], probe["upright_height"]) == (1080, 810)  # orientation 6 applied
    assert probe["artifacts"][0]["bucket"] == s3_store.derived_bucket

    truncated_runs = _runs(factory, truncated)
    assert truncated_runs["media_probe"][0].status == "failed"
    assert "truncated" in (truncated_runs["media_probe"][0].error or "")
    assert truncated_runs["hashes"][0].status == "succeeded"

    bomb_runs = _runs(factory, bomb)
    assert bomb_runs["media_probe"][0].status == "failed" and "pixels" in (bomb_runs["media_probe"][0].error or "")
    assert "hash.pdq" not in _findings(factory, bomb)

    assert _findings(factory, pdf)["media.probe"][0]["extension_mismatch"] is True

    with factory() as session:
        empty = session.scalars(select(Evidence).where(Evidence.object_key == empty_key)).one()
        assert session.scalar(select(func.count()).select_from(Evidence)) == 5
        # every analysis ended in exactly one run (no retries were needed), none left open
        assert session.scalar(select(func.count()).select_from(AnalysisRun)) == 10
    empty_runs = _runs(factory, empty.id)
    assert "empty" in (empty_runs["media_probe"][0].error or "")
    assert all(len(runs) == 1 for evidence in (photo, truncated, bomb, pdf, empty.id)
               for runs in _runs(factory, evidence).values())

    # Through the case API: the findings, and the thumbnail the probe stored as a derived artifact.
    with TestClient(create_app(settings, store=s3_store)) as client:
        log_in(client)
        listed = client.get(f"/api/v1/evidence/{photo}/findings").json()
        assert {"hash.cryptographic", "hash.pdq", "media.probe", "media.exif"} <= {f["kind"] for f in listed}
        [probe_finding] = [f for f in listed if f["kind"] == "media.probe"]
        thumbnail = client.get(f"/api/v1/findings/{probe_finding['id']}/artifacts/0")
        assert thumbnail.status_code == 200 and thumbnail.content[:3] == b"\xff\xd8\xff"
        assert client.get(f"/api/v1/findings/{probe_finding['id']}/artifacts/3").status_code == 404
        status = client.get(f"/api/v1/evidence/{bomb}/analysis").json()
        assert status["state"] == "done" and {r["status"] for r in status["runs"]} == {"succeeded", "failed"}


class CrashingWorker(AnalyzerWorker):
    """An analyzer worker whose process dies on the first item it sees (the marker file says it did)."""

    def __init__(self, analyzer_name: str, settings: Settings, marker: str) -> None:
        super().__init__(analyzer_name, settings)
        self.marker = Path(marker)

    def run(self, evidence: EvidenceMessage) -> RunOutcome:
        if not self.marker.exists():
            self.marker.touch()
            os._exit(1)
        return super().run(evidence)


def test_a_dying_worker_is_recorded_and_retried(ray_cluster: None, settings: Settings,
                                                factory: sessionmaker[Session], s3_store: S3ObjectStore,
                                                tmp_path: Path) -> None:
    case = _case(factory)
    evidence_id = _ingest(factory, s3_store, case, bus_jpg_path(), "bus.jpg")
    settings = settings.model_copy(update={"job_lease_seconds": 120.0})  # the death, not a lease, must end it
    analyzers = registry.select(["hashes"])
    marker = str(tmp_path / "crashed")
    runtime = RayRuntime()
    dispatcher = Dispatcher(settings, factory, s3_store, analyzers, runtime=runtime,
                            actor_factory=lambda name: runtime.spawn(CrashingWorker, name, settings, marker,
                                                                     num_cpus=0.25))
    _run_until_settled(dispatcher, factory)
    runs = sorted(_runs(factory, evidence_id)["hashes"], key=lambda r: r.attempt)
    # The first try dies with its worker (Ray reports it as dead, or as unreachable); Ray restarts the actor and
    # the job waits that out, longer each time the actor is still restarting under load. None of those tries is
    # charged as an attempt: exactly one success, however slow the restart.
    assert [r.attempt for r in runs] == list(range(1, len(runs) + 1))
    assert [r.status for r in runs] == ["failed"] * (len(runs) - 1) + ["succeeded"] and len(runs) >= 2
    assert re.search(r"worker (died|stopped answering)", runs[0].error or ""), runs[0].error
    assert all("not counted as an attempt" in (r.error or "") for r in runs[:-1])
    with factory() as session:
        job = session.scalars(select(Job).where(Job.evidence_id == evidence_id, Job.analyzer == "hashes")).one()
    assert job.state == "succeeded" and job.attempts - job.payload["worker_losses"] == 1
    assert len(_findings(factory, evidence_id)["hash.cryptographic"]) == 1
