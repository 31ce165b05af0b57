"""Stopping the workers (and their Ray) mid-analysis and starting again: nothing lost, nothing duplicated."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from storage import intake, records
from storage.db import transaction
from storage.objectstore import S3ObjectStore
from storage.settings import Settings
from storage.tables import AnalysisRun, Evidence, Finding, Job

pytestmark = pytest.mark.timeout(400)
ITEMS = 16


def _service_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "LOCARD_HOME": str(settings.home), "LOCARD_DATABASE_URL": settings.effective_database_url,
        "LOCARD_S3_ENDPOINT": settings.s3_endpoint, "LOCARD_S3_ACCESS_KEY": settings.s3_access_key,
        "LOCARD_S3_SECRET_KEY": settings.s3_secret_key.get_secret_value(),
        "LOCARD_EVIDENCE_BUCKET": settings.evidence_bucket, "LOCARD_DERIVED_BUCKET": settings.derived_bucket,
        "LOCARD_JOB_LEASE_SECONDS": "4", "LOCARD_RAY_NUM_CPUS": "2", "LOCARD_ANALYZERS": "hashes,media_probe",
    })
    return env


def _start(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    settings.home.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "workers.service"], env=_service_env(settings), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _counts(factory: sessionmaker[Session]) -> tuple[int, int, int]:
    with factory() as session:
        runs = session.scalar(select(func.count()).select_from(AnalysisRun)) or 0
        open_jobs = session.scalar(select(func.count()).select_from(Job).where(Job.state.in_(("queued", "running"))))
        analysis = session.scalar(select(func.count()).select_from(Job).where(Job.kind == "analysis"))
    return runs, open_jobs or 0, analysis or 0


def _photos(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(7)
    base = rng.integers(0, 255, size=(1080 // 8, 1920 // 8, 3), dtype=np.uint8)
    paths = []
    for index in range(ITEMS):
        image = Image.fromarray(base).resize((1920, 1080), Image.Resampling.BICUBIC)
        image.putpixel((index, 0), (index, 0, 0))  # distinct content, same size
        path = tmp_path / f"still-{index:02d}.jpg"
        image.save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def test_killing_workers_mid_analysis_then_restarting(settings: Settings, factory: sessionmaker[Session],
                                                      s3_store: S3ObjectStore, tmp_path: Path) -> None:
    with transaction(factory) as session:
        case = records.create_case(session, reference="2026-0200", title="CCTV", description="", created_by="t")
    for path in _photos(tmp_path):
        data = path.read_bytes()
        with transaction(factory) as session:
            intake.ingest_file(session, s3_store, case=case, path=path, sha256=hashlib.sha256(data).hexdigest(),
                               size=len(data), filename=path.name, declared_media_type=None, actor="t")
    log = tmp_path / "worker.log"
    first = _start(settings, log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        runs, open_jobs, analysis = _counts(factory)
        if runs >= 2 and open_jobs > 0:
            break
        assert first.poll() is None, log.read_text()[-3000:]
        time.sleep(0.05)
    else:
        raise AssertionError(f"the worker service never got going: {log.read_text()[-3000:]}")
    os.killpg(first.pid, signal.SIGKILL)  # the dispatcher and the Ray it started die mid-analysis
    first.wait(timeout=30)
    runs_at_kill, open_at_kill, _ = _counts(factory)
    assert open_at_kill > 0

    second = _start(settings, log)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs, open_jobs, analysis = _counts(factory)
            if open_jobs == 0 and analysis == 2 * ITEMS:
                break
            assert second.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        else:
            raise AssertionError(f"analysis did not finish after the restart: {log.read_text()[-3000:]}")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=60)

    with factory() as session:
        assert session.scalar(select(func.count()).select_from(Evidence)) == ITEMS
        jobs = session.scalars(select(Job).where(Job.kind == "analysis")).all()
        assert all(job.state == "succeeded" for job in jobs), [(j.analyzer, j.state, j.last_error) for j in jobs]
        for evidence in session.scalars(select(Evidence)):
            runs = session.scalars(select(AnalysisRun).where(AnalysisRun.evidence_id == evidence.id)).all()
            succeeded = sorted(r.analyzer for r in runs if r.status == "succeeded")
            assert succeeded == ["hashes", "media_probe"], evidence.original_filename
            kinds = sorted(session.scalars(select(Finding.kind).where(Finding.evidence_id == evidence.id)))
            assert kinds == ["hash.cryptographic", "hash.pdq", "media.probe"]  # once each, never twice
        abandoned = session.scalars(select(AnalysisRun).where(AnalysisRun.status == "failed")).all()
    assert all("lease ran out" in (run.error or "") for run in abandoned)
    assert runs_at_kill < 2 * ITEMS
