"""The durable job queue on SQLite and PostgreSQL: dedupe, exclusive claims, fenced completion, lease expiry."""

from __future__ import annotations

import datetime as dt
import threading

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from storage import jobs
from storage.db import transaction
from storage.tables import Job


def _enqueue(factory: sessionmaker[Session], count: int) -> None:
    with transaction(factory) as session:
        for index in range(count):
            jobs.enqueue(session, kind="intake", dedupe_key=f"intake:k{index}", payload={"n": index})


def test_enqueue_is_idempotent_on_dedupe_key(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        first, new_first = jobs.enqueue(session, kind="intake", dedupe_key="intake:a")
        second, new_second = jobs.enqueue(session, kind="intake", dedupe_key="intake:a")
    assert new_first and not new_second and first.id == second.id
    with factory() as session:
        assert len(session.scalars(select(Job)).all()) == 1


def test_concurrent_claims_never_share_a_job(factory: sessionmaker[Session]) -> None:
    _enqueue(factory, 40)
    taken: dict[str, list[int]] = {}

    def worker(owner: str) -> None:
        mine: list[int] = []
        while batch := jobs.claim(factory, kinds=["intake"], owner=owner, lease_seconds=30, limit=3):
            mine.extend(job.id for job in batch)
        taken[owner] = mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    claimed = [job_id for ids in taken.values() for job_id in ids]
    assert len(claimed) == 40 and len(set(claimed)) == 40


def test_finish_is_fenced_by_the_lease(factory: sessionmaker[Session]) -> None:
    _enqueue(factory, 1)
    [job] = jobs.claim(factory, kinds=["intake"], owner="a", lease_seconds=30, limit=1)
    with transaction(factory) as session:
        assert not jobs.finish(session, job_id=job.id, owner="intruder", state="succeeded")
        assert jobs.finish(session, job_id=job.id, owner="a", state="succeeded")
        assert not jobs.finish(session, job_id=job.id, owner="a", state="succeeded")  # only once
    with factory() as session:
        assert session.get_one(Job, job.id).state == "succeeded"


def test_expired_lease_is_requeued_then_failed_when_attempts_are_spent(factory: sessionmaker[Session]) -> None:
    with transaction(factory) as session:
        jobs.enqueue(session, kind="intake", dedupe_key="intake:x", max_attempts=2)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
    for attempt in (1, 2):
        [job] = jobs.claim(factory, kinds=["intake"], owner=f"dead-{attempt}", lease_seconds=1, limit=1)
        assert job.attempt == attempt
        with transaction(factory) as session:
            [stale] = jobs.expired(session, now=later)
            failed = jobs.release_expired(session, stale, reason="holder died")
        assert failed is (attempt == 2)
    with factory() as session:
        row = session.scalars(select(Job)).one()
        assert row.state == "failed" and row.last_error == "holder died" and row.attempts == 2


def test_retry_in_requeues_with_delay(factory: sessionmaker[Session]) -> None:
    _enqueue(factory, 1)
    [job] = jobs.claim(factory, kinds=["intake"], owner="a", lease_seconds=30, limit=1)
    with transaction(factory) as session:
        assert jobs.finish(session, job_id=job.id, owner="a", state="failed", error="flaky", retry_in=3600)
    assert jobs.claim(factory, kinds=["intake"], owner="b", lease_seconds=30, limit=1) == []
