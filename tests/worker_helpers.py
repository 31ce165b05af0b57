"""Helpers for tests that run the dispatcher: evidence in, the dispatcher run until the queue is empty, runs out."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from storage import intake, records
from storage.db import transaction
from storage.objectstore import ObjectStore
from storage.tables import AnalysisRun, Case, Finding, Job
from workers.dispatcher import Dispatcher


def new_case(factory: sessionmaker[Session], reference: str) -> Case:
    with transaction(factory) as session:
        return records.create_case(session, reference=reference, title="t", description="", created_by="t")


def ingest(factory: sessionmaker[Session], store: ObjectStore, case: Case, path: Path,
           name: str | None = None) -> str:
    data = path.read_bytes()
    with transaction(factory) as session:
        result = intake.ingest_file(session, store, case=case, path=path, sha256=hashlib.sha256(data).hexdigest(),
                                    size=len(data), filename=name or path.name, declared_media_type=None,
                                    actor="t")
        return result.evidence.id


def open_jobs(factory: sessionmaker[Session]) -> int:
    with factory() as session:
        return session.scalar(select(func.count()).select_from(Job).where(Job.state.in_(("queued", "running")))) or 0


def step_until_settled(dispatcher: Dispatcher, factory: sessionmaker[Session], timeout: float = 120) -> None:
    """Run the dispatcher's loop in this thread until every job has ended (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = dispatcher.step()
        if not dispatcher.in_flight and open_jobs(factory) == 0:
            return
        if not busy:
            time.sleep(0.02)
    raise AssertionError("the jobs did not settle in time")


def runs_of(factory: sessionmaker[Session], evidence_id: str, analyzer: str) -> list[AnalysisRun]:
    with factory() as session:
        return list(session.scalars(select(AnalysisRun).where(AnalysisRun.evidence_id == evidence_id,
                                                              AnalysisRun.analyzer == analyzer)
                                    .order_by(AnalysisRun.finished_at)))


def jobs_of(factory: sessionmaker[Session], evidence_id: str, analyzer: str) -> list[Job]:
    with factory() as session:
        return list(session.scalars(select(Job).where(Job.evidence_id == evidence_id, Job.analyzer == analyzer)
                                    .order_by(Job.id)))


def findings_of(factory: sessionmaker[Session], evidence_id: str, analyzer: str) -> list[Finding]:
    with factory() as session:
        return list(session.scalars(select(Finding).where(Finding.evidence_id == evidence_id,
                                                          Finding.analyzer == analyzer)))
