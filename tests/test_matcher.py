"""The fingerprint matcher (without Ray): gallery catch-up, 1:1 and 1:N answers, case scope, vanished templates."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from models.fingerprint_index import FingerprintIndex
from storage import analysis, jobs, matching, records
from storage.db import make_engine, migrate, session_factory, transaction
from storage.messages import HeldTemplate, ReportedFinding, RunOutcome
from storage.settings import Settings
from storage.tables import Case, Evidence
from tests.conftest import TEST_AUDIT_KEY, TEST_TOKEN_SECRET
from tests.fingerprint_samples import extracted_iso
from workers.matcher import FingerprintMatcher


def _print(factory: sessionmaker[Session], case: Case, iso: bytes | None) -> str:
    """An evidence item whose fingerprints run recorded `iso` as its template (or found no print: None)."""
    with transaction(factory) as session:
        evidence = Evidence(case_id=case.id, sha256=uuid.uuid4().hex * 2, size=1, media_type="image/png",
                            bucket="b", object_key=f"k/{uuid.uuid4()}", source="api", received_by="t",
                            declared_kind="fingerprint")
        session.add(evidence)
        session.flush()
        evidence_id = evidence.id
        jobs.enqueue(session, kind="analysis", dedupe_key=f"analysis:{evidence_id}:{uuid.uuid4()}",
                     evidence_id=evidence_id, analyzer="fingerprints")
    [job] = [j for j in jobs.claim(factory, kinds=["analysis"], owner="t", lease_seconds=30, limit=50)
             if j.evidence_id == evidence_id]
    findings = [] if iso is None else [ReportedFinding(kind="fingerprint.template",
                                                       held=HeldTemplate(iso=iso, minutiae=40, nfiq2=60))]
    with transaction(factory) as session:
        analysis.record_outcome(session, job_id=job.id, owner="t", attempt=1, outcome=RunOutcome(
            analyzer="fingerprints", analyzer_version="1", status="succeeded", findings=findings))
    return evidence_id


def _request(factory: sessionmaker[Session], kind: str, probe: str, candidate: str | None = None,
             **parameters: object) -> str:
    with transaction(factory) as session:
        request = matching.request_match(
            session, kind=kind, probe=session.get_one(Evidence, probe),
            candidate=session.get_one(Evidence, candidate) if candidate else None, parameters=parameters,
            requested_by="t")
        return request.id


def test_matcher_answers_verifications_and_searches(factory: sessionmaker[Session], settings: Settings) -> None:
    with transaction(factory) as session:
        here = records.create_case(session, reference="2026-0700", title="t", description="", created_by="t")
        there = records.create_case(session, reference="2024-0011", title="t", description="", created_by="t")
    probe = _print(factory, here, extracted_iso(11, 1))
    mate = _print(factory, there, extracted_iso(11, 0))
    others = [_print(factory, here, extracted_iso(finger, 0)) for finger in (12, 13, 14)]
    matcher = FingerprintMatcher(settings)
    assert matcher.gallery_size() == 5

    verified = matcher.run(_request(factory, matching.VERIFICATION, probe, mate)).result
    rejected = matcher.run(_request(factory, matching.VERIFICATION, probe, others[0])).result
    assert verified["probable_match"] and verified["score"] > 2 * max(rejected["score"], 10)

    late = _print(factory, there, extracted_iso(11, 2))  # analysed after the matcher started
    found = matcher.run(_request(factory, matching.SEARCH, probe, limit=3)).result
    assert found["gallery_size"] == 6
    assert [c["evidence_id"] for c in found["candidates"][:2]] in ([mate, late], [late, mate])
    assert found["candidates"][0]["case_reference"] == "2024-0011" and found["candidates"][0]["rank"] == 1
    assert probe not in {c["evidence_id"] for c in found["candidates"]}
    scoped = matcher.run(_request(factory, matching.SEARCH, probe, limit=3, case_ids=[here.id])).result
    assert {c["evidence_id"] for c in scoped["candidates"]} <= set(others)

    _reanalysed = _print(factory, there, None)
    with transaction(factory) as session:  # the mate is analysed again and no print is found this time
        jobs.enqueue(session, kind="analysis", dedupe_key=f"again:{mate}", evidence_id=mate,
                     analyzer="fingerprints")
    [job] = [j for j in jobs.claim(factory, kinds=["analysis"], owner="t", lease_seconds=30, limit=50)
             if j.evidence_id == mate]
    with transaction(factory) as session:
        analysis.record_outcome(session, job_id=job.id, owner="t", attempt=1, outcome=RunOutcome(
            analyzer="fingerprints", analyzer_version="1", status="succeeded", findings=[]))
    again = matcher.run(_request(factory, matching.SEARCH, probe, limit=3)).result
    assert mate not in {c["evidence_id"] for c in again["candidates"]} and again["gallery_size"] == 5
    # A verification queued before the mate's template vanished is answered with the reason, not a crash.
    with transaction(factory) as session:
        stale_request = matching.request_match(session, kind=matching.VERIFICATION,
                                               probe=session.get_one(Evidence, probe),
                                               candidate=session.get_one(Evidence, late), parameters={},
                                               requested_by="t").id
        late_template = matching.template_of(session, evidence_id=late)
        assert late_template is not None
        session.delete(late_template)
    assert "has no fingerprint template" in matcher.run(stale_request).error
    assert "does not exist" in matcher.run(str(uuid.uuid4())).error



def test_building_the_gallery_does_not_hold_writers_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite (where a transaction can hold the one write lock; PostgreSQL readers never block writers): the gallery
    is read without the write lock, so uploads and the audit log go on while a large gallery is indexed.
    Mid-build, another connection must get the write lock without waiting."""
    path = tmp_path / "locard.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    factory = session_factory(engine, chain_key=TEST_AUDIT_KEY.encode())
    settings = Settings(_env_file=None, environment="test", home=tmp_path,  # type: ignore[call-arg]
                        database_url=f"sqlite:///{path}", token_secret=TEST_TOKEN_SECRET, audit_key=TEST_AUDIT_KEY)
    with transaction(factory) as session:
        case = records.create_case(session, reference="2026-0701", title="t", description="", created_by="t")
    _print(factory, case, extracted_iso(11, 0))
    took_lock: list[bool] = []
    original = FingerprintIndex.add

    def add_and_write(index: FingerprintIndex, template_id: str, iso: bytes) -> None:
        other = sqlite3.connect(str(path), timeout=0.5, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" while the matcher's read holds the lock
            other.execute("ROLLBACK")
            took_lock.append(True)
        finally:
            other.close()
        original(index, template_id, iso)

    monkeypatch.setattr(FingerprintIndex, "add", add_and_write)
    matcher = FingerprintMatcher(settings)
    assert matcher.gallery_size() == 1 and took_lock == [True]
    engine.dispose()
