"""Helpers for tests that run the dispatcher: evidence in, the dispatcher run until the queue is empty, runs out.

For the dispatcher on the fake runtime (`workers.fakes.FakeRuntime`): real analyzer workers on an in-memory
object store (`MemoryWorker`), a clock the test moves (`FakeClock`), and the record store's time moved by hand
(`make_due`, `expire_leases`), so nothing waits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from pathlib import Path

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from storage import intake, records
from storage.db import transaction
from storage.objectstore import ObjectStore
from storage.settings import Settings
from storage.tables import AnalysisRun, Case, Finding, Job, utcnow
from workers.actor import AnalyzerWorker
from workers.analyzers.base import Analyzer
from workers.dispatcher import Dispatcher
from workers.fakes import FakeRuntime


class MemoryWorker(AnalyzerWorker):
    """A real analyzer worker that reads evidence from an in-memory object store (for the fake runtime)."""

    def __init__(self, analyzer_name: str, settings: Settings, *, analyzer: Analyzer, store: ObjectStore) -> None:
        super().__init__(analyzer_name, settings, analyzer=analyzer)
        self.store = store  # type: ignore[assignment]


class FakeClock:
    """The dispatcher's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def fake_dispatcher(settings: Settings, factory: sessionmaker[Session], store: ObjectStore,
                    analyzers: dict[str, type[Analyzer]], runtime: FakeRuntime, clock: FakeClock) -> Dispatcher:
    """A dispatcher whose actors are `MemoryWorker`s on the fake runtime, each with a fresh analyzer."""
    return Dispatcher(settings, factory, store, analyzers, runtime=runtime, clock=clock,
                      actor_factory=lambda name: runtime.spawn(MemoryWorker, name, settings, num_cpus=1.0,
                                                               analyzer=analyzers[name](), store=store))


def make_due(factory: sessionmaker[Session]) -> None:
    """Queued jobs waiting out a backoff become due now (as if that time had passed)."""
    with transaction(factory) as session:
        session.execute(update(Job).where(Job.state == "queued").values(available_at=utcnow()))


def expire_leases(factory: sessionmaker[Session]) -> None:
    """Every lease held runs out (as if its holder had stopped renewing it long ago)."""
    with transaction(factory) as session:
        session.execute(update(Job).where(Job.state == "running")
                        .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1)))


def settle(dispatcher: Dispatcher, factory: sessionmaker[Session], *, max_steps: int = 60) -> None:
    """Step the dispatcher, with every backoff cut short, until every job has ended (bounded in steps)."""
    for _ in range(max_steps):
        make_due(factory)
        dispatcher.step()
        if not dispatcher.in_flight and open_jobs(factory) == 0:
            return
    raise AssertionError(f"the jobs did not settle in {max_steps} steps")


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
