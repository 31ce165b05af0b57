"""Matching on matcher actors (`workers.matcher_worker`), leased by the dispatcher, on the fake runtime.

The matcher actors are real `MatcherWorker`s in this process (`workers.fakes.FakeRuntime`), on the real record
stores; what the runtime does to them (a worker that dies) is scripted, and nothing waits. The same actors run
on real Ray in test_crossmatch_e2e.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from storage import jobs, matches
from storage.db import transaction
from storage.fakes import MemoryObjectStore
from storage.messages import MatchWork
from storage.settings import Settings
from storage.tables import CustodyEvent, Job, MatchRequest
from tests import match_samples as samples
from tests.worker_helpers import FakeClock, settle
from workers import crossmatch
from workers.dispatcher import Dispatcher
from workers.fakes import FakeRuntime
from workers.matcher_worker import MatcherWorker

STOLEN = "1-ABC-234"


@dataclass
class Rig:
    settings: Settings
    factory: sessionmaker[Session]
    runtime: FakeRuntime
    dispatcher: Dispatcher


@pytest.fixture
def rig(factory: sessionmaker[Session], tmp_path: Path) -> Rig:
    settings = Settings(_env_file=None, home=tmp_path / "home", job_lease_seconds=30.0,  # type: ignore[call-arg]
                        job_max_attempts=3, worker_restart_seconds=3.0, matcher_actors=2)
    store, runtime = MemoryObjectStore(), FakeRuntime()
    dispatcher = Dispatcher(
        settings, factory, store, {}, runtime=runtime, clock=FakeClock(), actor_factory=lambda name: None,
        matcher_factory=lambda: runtime.spawn(MatcherWorker, settings, fingerprints=False, factory=factory,
                                              store=store, num_cpus=0.25))
    return Rig(settings, factory, runtime, dispatcher)


def _plate_items(factory: sessionmaker[Session], count: int, *, registered: bool = True) -> list[str]:
    """`count` items in different cases, each with the stolen car's plate read, their cross-matching queued (and
    the car in the register when `registered`)."""
    with transaction(factory) as session:
        if registered:
            samples.vehicle(session, STOLEN, status="stolen")
        ids = []
        for number in range(count):
            evidence = samples.item(session, f"2026-W{number}")
            samples.record(session, evidence, "plates", "2.1.0", [samples.plate(STOLEN)])
            assert crossmatch.enqueue(session, evidence_id=evidence.id, max_attempts=3)
            ids.append(evidence.id)
    return ids


def _matches(factory: sessionmaker[Session], evidence_id: str) -> list[matches.Match]:
    with factory() as session:
        return list(matches.matches_of(session, evidence_id=evidence_id))


def test_cross_matching_runs_on_the_matcher_actors_spread_over_all_of_them(rig: Rig) -> None:
    items = _plate_items(rig.factory, 4)
    settle(rig.dispatcher, rig.factory)
    workers = [actor for actor in rig.runtime.actors if actor.cls is MatcherWorker]
    assert len(workers) == 2 and rig.dispatcher.local_matcher is None
    per_actor = [sum(1 for call in rig.runtime.calls if call.actor is actor and call.method == "work"
                     and call.args[0].kind == "crossmatch") for actor in workers]
    assert sum(per_actor) == 4 and min(per_actor) >= 1
    for evidence_id in items:
        found = _matches(rig.factory, evidence_id)
        assert sum(1 for match in found if match.target_kind == "vehicle") == 1
        assert sum(1 for match in found if match.target_kind == "finding") == 3  # the three other items, once each
    with rig.factory() as session:
        states = set(session.scalars(select(Job.state).where(Job.kind == "crossmatch")))
    assert states == {"succeeded"}


def test_a_matcher_that_dies_is_replaced_and_its_job_runs_again(rig: Rig) -> None:
    evidence_id, _ = _plate_items(rig.factory, 2, registered=False)
    rig.runtime.script("die", method="work")
    settle(rig.dispatcher, rig.factory)
    died = rig.runtime.calls[0].args[0]
    assert died.evidence_id == evidence_id and rig.runtime.calls[0].error is not None
    with rig.factory() as session:
        job = session.get_one(Job, died.job_id)
        custody = session.scalars(select(CustodyEvent).where(CustodyEvent.evidence_id == evidence_id,
                                                             CustodyEvent.action == "cross_matched")).all()
    assert (job.state, job.attempts) == ("succeeded", 2)
    assert len(custody) == 1 and len(_matches(rig.factory, evidence_id)) == 1
    assert sum(actor.restarts for actor in rig.runtime.actors) == 1


def test_a_job_whose_lease_has_passed_records_nothing(rig: Rig, factory: sessionmaker[Session]) -> None:
    [evidence_id] = _plate_items(factory, 1)
    [claimed] = jobs.claim(factory, kinds=["crossmatch"], owner="dispatcher:other", lease_seconds=30.0,
                           limit=1)
    worker = MatcherWorker(rig.settings, fingerprints=False, factory=factory, store=MemoryObjectStore())
    done = worker.work(MatchWork(job_id=claimed.id, kind="crossmatch", owner="dispatcher:late",
                                 evidence_id=evidence_id, payload={}, attempt=1, max_attempts=3))
    assert done.state == "lost"
    assert _matches(factory, evidence_id) == []
    with factory() as session:
        assert session.get_one(Job, claimed.id).state == "running"  # still the other dispatcher's


def test_a_request_out_of_attempts_is_answered_with_the_error(rig: Rig, factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        evidence = samples.item(session, "2026-R")
        request = MatchRequest(kind="fingerprint_search", probe_evidence_id=evidence.id, requested_by="t")
        session.add(request)
        session.flush()
        request_id = request.id
        jobs.enqueue(session, kind="match", dedupe_key=f"match:{request_id}", evidence_id=evidence.id,
                     payload={"request_id": request_id}, max_attempts=1)
    settle(rig.dispatcher, rig.factory)  # these matchers hold no fingerprint index: the answer says so
    with factory() as session:
        request = session.get_one(MatchRequest, request_id)
        assert (request.status, request.error) == ("failed", "fingerprint matching is not deployed")


def test_two_actors_matching_a_pair_at_once_record_it_once(factory: sessionmaker[Session]) -> None:
    """Both items' keys are committed before either looks (as the actors do), then both match: one pair."""
    with transaction(factory) as session:
        first, second = samples.item(session, "2026-X1"), samples.item(session, "2026-X2")
        samples.record(session, first, "plates", "2.1.0", [samples.plate("2-XYZ-789")])
        samples.record(session, second, "plates", "2.1.0", [samples.plate("2XYZ789")])
    for evidence in (first, second):
        with transaction(factory) as session:
            crossmatch.index_keys(session, evidence_id=evidence.id)
    results = []
    for evidence in (first, second):
        with transaction(factory) as session:
            results.append(crossmatch.crossmatch(session, evidence_id=evidence.id))
    assert [result.new for result in results] == [1, 0]  # the first found the second through its keys
    [match] = _matches(factory, first.id)
    assert match.pair_key == matches.pair_key(modality="plate", finding_id=match.target_id, target_kind="finding",
                                              target_id=match.finding_id)


def test_the_record_store_refuses_a_pair_recorded_in_both_directions(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        first, second = samples.item(session, "2026-Y1"), samples.item(session, "2026-Y2")
        [a] = samples.record(session, first, "plates", "2.1.0", [samples.plate("3-DEF-456")])
        [b] = samples.record(session, second, "plates", "2.1.0", [samples.plate("3-DEF-456")])
    def row(side_a: str, side_b: str, evidence_id: str, case_id: str) -> matches.Match:
        return matches.Match(modality="plate", finding_id=side_a, finding_kind="plates.plate", evidence_id=evidence_id,
                             case_id=case_id, analyzer="plates", analyzer_version="2.1.0", target_kind="finding",
                             target_id=side_b, target_analyzer="plates", score=1.0, threshold=0.5, method="exact",
                             matcher="plates", matcher_version="1", detail={},
                             pair_key=matches.pair_key(modality="plate", finding_id=side_a, target_kind="finding",
                                                       target_id=side_b))
    with transaction(factory) as session:
        session.add(row(a, b, first.id, first.case_id))
    with pytest.raises(IntegrityError), transaction(factory) as session:
        session.add(row(b, a, second.id, second.case_id))
        session.flush()
