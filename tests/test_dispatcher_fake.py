"""The dispatcher's job handling on the fake runtime: leases, retries, abandoned leases, lost workers, budgets.

Real analyzer workers run in this process (`tests.worker_helpers.MemoryWorker`) on an in-memory object store,
with the real record stores; the runtime's failures are scripted (`workers.fakes.FakeRuntime`) and the
dispatcher's clock is moved by the test, so nothing here waits. What needs real processes (a worker that really
dies, a stuck worker really killed) is tested on Ray in test_dispatcher.py and test_resource_bounds.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import jobs
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.settings import Settings
from storage.tables import AnalysisRun, Job, utcnow
from tests.worker_helpers import (
    FakeClock,
    expire_leases,
    fake_dispatcher,
    findings_of,
    ingest,
    make_due,
    new_case,
    settle,
)
from workers.analyzers.base import AnalysisLimits, Analyzer, EvidenceFile, FindingData
from workers.dispatcher import Dispatcher
from workers.fakes import FakeActor, FakeRuntime

LEASE = 30.0


class Tiny(Analyzer):
    """Reports the item's name; runs out of memory on an item named 'hog'."""

    name, version = "tiny", "1"
    accepts, produces = frozenset({"image/*"}), frozenset({"test.seen"})

    def analyze(self, item: EvidenceFile, limits: AnalysisLimits) -> list[FindingData]:
        if "hog" in (item.filename or ""):
            raise MemoryError
        return [FindingData(kind="test.seen", label=item.filename, data={})]


@dataclass
class Rig:
    settings: Settings
    factory: sessionmaker[Session]
    store: MemoryObjectStore
    runtime: FakeRuntime
    clock: FakeClock
    dispatcher: Dispatcher
    tmp_path: Path

    def item(self, name: str) -> str:
        """Ingest a small, distinct image named `name`; returns its evidence id."""
        seed = sum(name.encode())
        pixels = np.random.default_rng(seed).integers(0, 255, (8, 12, 3), dtype=np.uint8)
        path = self.tmp_path / name
        Image.fromarray(pixels).save(path, "PNG")
        return ingest(self.factory, self.store, new_case(self.factory, f"2026-{seed:04d}"), path)

    def reconfigure(self, **settings: object) -> None:
        """Change settings: the dispatcher is made again (on the same runtime and clock)."""
        self.settings = self.settings.model_copy(update=settings)
        self.dispatcher = fake_dispatcher(self.settings, self.factory, self.store, {"tiny": Tiny}, self.runtime,
                                          self.clock)

    def other_dispatcher(self) -> Dispatcher:
        """A second dispatcher (another owner, its own runtime) on the same record and object stores."""
        return fake_dispatcher(self.settings, self.factory, self.store, {"tiny": Tiny}, FakeRuntime(), FakeClock())


@pytest.fixture
def rig(factory: sessionmaker[Session], tmp_path: Path) -> Rig:
    settings = Settings(_env_file=None, home=tmp_path / "home", job_lease_seconds=LEASE,  # type: ignore[call-arg]
                        job_max_attempts=3, worker_restart_seconds=3.0, worker_max_losses=3,
                        analyzer_time_budgets={"tiny": 10 * LEASE})
    store, runtime, clock = MemoryObjectStore(), FakeRuntime(), FakeClock()
    dispatcher = fake_dispatcher(settings, factory, store, {"tiny": Tiny}, runtime, clock)
    return Rig(settings, factory, store, runtime, clock, dispatcher, tmp_path)


def _job(factory: sessionmaker[Session], evidence_id: str) -> Job:
    with factory() as session:
        return session.scalars(select(Job).where(Job.evidence_id == evidence_id, Job.kind == "analysis")).one()


def _runs(factory: sessionmaker[Session], evidence_id: str) -> list[AnalysisRun]:
    with factory() as session:
        return list(session.scalars(select(AnalysisRun).where(AnalysisRun.evidence_id == evidence_id)
                                    .order_by(AnalysisRun.attempt)))


def _backoff(job: Job) -> float:
    """Seconds the job waits before it may be claimed again (set with its last end)."""
    return round((job.available_at - job.updated_at).total_seconds(), 1)


def _requeued_backoffs(rig: Rig, evidence_id: str, *, tries: int) -> list[float]:
    """Step `tries` times, each ending with the job queued again; the backoff of each requeue."""
    backoffs = []
    for _ in range(tries):
        rig.dispatcher.step()
        job = _job(rig.factory, evidence_id)
        assert job.state == "queued"
        backoffs.append(_backoff(job))
        make_due(rig.factory)
    return backoffs


def _lease_left(job: Job) -> float:
    assert job.lease_expires_at is not None
    expires = job.lease_expires_at
    now = utcnow() if expires.tzinfo else utcnow().replace(tzinfo=None)
    return (expires - now).total_seconds()


def test_a_job_is_leased_to_an_actor_and_its_outcome_recorded(rig: Rig) -> None:
    evidence = rig.item("bus.png")
    rig.dispatcher.step()
    job = _job(rig.factory, evidence)
    assert (job.state, job.attempts, job.lease_owner) == ("succeeded", 1, None)
    [run] = _runs(rig.factory, evidence)
    assert (run.status, run.analyzer, run.attempt) == ("succeeded", "tiny", 1)
    assert [finding.label for finding in findings_of(rig.factory, evidence, "tiny")] == ["bus.png"]
    [call] = [call for call in rig.runtime.calls if call.method == "run"]
    assert call.actor is rig.dispatcher.pools["tiny"][0] and call.args[0].id == evidence


def test_leases_of_work_in_flight_are_renewed_every_third_of_a_lease(rig: Rig) -> None:
    evidence = rig.item("slow.png")
    rig.runtime.script("hang")
    rig.dispatcher.step()
    job = _job(rig.factory, evidence)
    assert (job.state, job.lease_owner) == ("running", rig.dispatcher.owner)
    assert LEASE - 10 < _lease_left(job) <= LEASE
    with transaction(rig.factory) as session:  # most of the lease has gone by
        session.get_one(Job, job.id).lease_expires_at = utcnow() + dt.timedelta(seconds=2)

    rig.clock.advance(LEASE / 3 - 1)
    rig.dispatcher.step()
    assert _lease_left(_job(rig.factory, evidence)) <= 2  # not yet a third of a lease since the last renewal
    rig.clock.advance(1)
    rig.dispatcher.step()
    assert _lease_left(_job(rig.factory, evidence)) > LEASE - 10  # renewed

    [hanging] = rig.runtime.hanging()
    rig.runtime.finish(hanging)
    rig.dispatcher.step()
    assert _job(rig.factory, evidence).state == "succeeded"


def test_failed_calls_are_retried_with_a_doubling_backoff_until_attempts_run_out(rig: Rig) -> None:
    evidence = rig.item("flaky.png")
    rig.runtime.script("raise", "raise", "raise")
    backoffs = _requeued_backoffs(rig, evidence, tries=2)
    rig.dispatcher.step()
    assert backoffs == [2.0, 4.0]
    job = _job(rig.factory, evidence)
    assert (job.state, job.attempts) == ("failed", 3)
    runs = _runs(rig.factory, evidence)
    assert [(run.attempt, run.status) for run in runs] == [(1, "failed"), (2, "failed"), (3, "failed")]
    assert all("runtime error" in (run.error or "") for run in runs)


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_an_abandoned_lease_is_closed_as_a_failed_run_and_the_job_queued_again(rig: Rig, max_attempts: int) -> None:
    rig.reconfigure(job_max_attempts=max_attempts)
    evidence = rig.item("orphan.png")
    rig.runtime.script("hang")
    rig.dispatcher.step()  # the first dispatcher holds the job, then stops renewing its lease (it died)
    expire_leases(rig.factory)

    second = rig.other_dispatcher()
    second.step()
    first_run = _runs(rig.factory, evidence)[0]
    assert first_run.status == "failed" and "its lease ran out" in (first_run.error or "")
    assert rig.dispatcher.owner in (first_run.error or "")
    if max_attempts == 1:
        assert (_job(rig.factory, evidence).state, len(_runs(rig.factory, evidence))) == ("failed", 1)
        return
    settle(second, rig.factory)
    job = _job(rig.factory, evidence)
    assert (job.state, job.attempts) == ("succeeded", 2)

    # The first dispatcher's answer comes in late: its lease is gone, so it records nothing.
    [late] = rig.runtime.hanging()
    rig.runtime.finish(late)
    rig.dispatcher.step()
    assert [run.status for run in _runs(rig.factory, evidence)] == ["failed", "succeeded"]
    assert len(findings_of(rig.factory, evidence, "tiny")) == 1


@pytest.mark.parametrize(("behaviour", "said"), [("die", "died"), ("restarting", "stopped answering")])
def test_a_lost_worker_is_waited_out_and_not_charged_as_an_attempt(rig: Rig, behaviour: str, said: str) -> None:
    evidence = rig.item("unlucky.png")
    rig.runtime.script(behaviour, behaviour)  # type: ignore[arg-type]
    backoffs = _requeued_backoffs(rig, evidence, tries=2)
    assert backoffs == [3.0, 6.0]  # the restart time, doubled while the worker keeps being lost
    settle(rig.dispatcher, rig.factory)

    runs = _runs(rig.factory, evidence)
    assert [run.status for run in runs] == ["failed", "failed", "succeeded"]
    assert all(f"worker {said}" in (run.error or "") and "not counted as an attempt" in (run.error or "")
               for run in runs[:2])
    job = _job(rig.factory, evidence)
    assert job.attempts - job.payload[jobs.LOSSES_KEY] == 1
    assert rig.dispatcher.pools["tiny"][0].restarts == 2 and not rig.runtime.killed  # restarted, not replaced


def test_a_file_that_kills_its_worker_every_time_ends_in_a_failed_run(rig: Rig) -> None:
    evidence = rig.item("poison.png")
    rig.runtime.script("die", "die", "die")
    settle(rig.dispatcher, rig.factory)

    runs = _runs(rig.factory, evidence)
    assert [run.status for run in runs] == ["failed"] * 3
    assert all("not counted as an attempt" in (run.error or "") for run in runs[:-1])
    assert "the worker died 3 times on this item" in (runs[-1].error or "")
    job = _job(rig.factory, evidence)
    assert job.state == "failed" and job.attempts - job.payload[jobs.LOSSES_KEY] == 1


def test_a_job_past_its_time_budget_is_failed_and_its_worker_replaced(rig: Rig) -> None:
    rig.reconfigure(analyzer_time_budgets={"tiny": 4.0})
    hung = rig.item("hang.png")
    after = rig.item("after.png")
    rig.runtime.script("hang")
    first = rig.dispatcher.pools["tiny"][0]
    rig.dispatcher.step()  # both on the one actor: the first runs (and hangs), the second waits behind it
    rig.clock.advance(3.5)
    rig.dispatcher.step()
    assert _job(rig.factory, hung).state == "running"  # within its budget of 4 s
    rig.clock.advance(1)
    rig.dispatcher.step()

    [run] = _runs(rig.factory, hung)
    assert run.status == "failed" and "exceeded its time budget of 4 s" in (run.error or "")
    assert (_job(rig.factory, hung).state, _job(rig.factory, hung).attempts) == ("failed", 1)  # not retried
    assert rig.runtime.killed == [first] and rig.dispatcher.pools["tiny"][0] is not first
    settle(rig.dispatcher, rig.factory)
    # The item that waited behind it ran on the fresh worker; the wait (longer than the budget) cost it nothing.
    after_runs = _runs(rig.factory, after)
    assert [run.status for run in after_runs] == ["failed", "succeeded"]
    assert "its worker was replaced (a job ran past its time budget)" in (after_runs[0].error or "")
    after_job = _job(rig.factory, after)
    assert after_job.attempts - after_job.payload[jobs.LOSSES_KEY] == 1
    [last] = [call for call in rig.runtime.calls if call.method == "run" and call.done][-1:]
    assert last.actor is rig.dispatcher.pools["tiny"][0] and last.args[0].id == after


def test_a_worker_that_asks_to_be_replaced_is_replaced_after_its_answers_are_in(rig: Rig) -> None:
    hog = rig.item("hog.png")
    calm = rig.item("calm.png")
    first = rig.dispatcher.pools["tiny"][0]
    settle(rig.dispatcher, rig.factory)

    [run] = _runs(rig.factory, hog)
    assert run.status == "failed" and "ran out of memory" in (run.error or "")
    assert _job(rig.factory, hog).state == "failed"  # not retried
    assert [run.status for run in _runs(rig.factory, calm)] == ["succeeded"]  # answered before the replacement
    assert rig.runtime.killed == [first]
    replacement = rig.dispatcher.pools["tiny"][0]
    assert isinstance(replacement, FakeActor) and replacement is not first and not replacement.killed


def test_a_job_for_an_analyzer_that_is_not_deployed_fails_at_once(rig: Rig) -> None:
    evidence = rig.item("bus.png")
    with transaction(rig.factory) as session:
        jobs.enqueue(session, kind="analysis", dedupe_key=f"analysis:{evidence}:ghost", evidence_id=evidence,
                     analyzer="ghost", max_attempts=3)
    settle(rig.dispatcher, rig.factory)
    with rig.factory() as session:
        ghost = session.scalars(select(Job).where(Job.analyzer == "ghost")).one()
        [run] = session.scalars(select(AnalysisRun).where(AnalysisRun.analyzer == "ghost")).all()
    assert (ghost.state, ghost.attempts) == ("failed", 1)
    assert run.status == "failed" and run.error == "analyzer 'ghost' is not deployed"
    assert len([call for call in rig.runtime.calls if call.method == "run"]) == 1  # the deployed analyzer's job
